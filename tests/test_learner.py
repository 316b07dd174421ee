"""The learner's and the samplers' rules that a reader could get wrong: Q-values are not clipped unless asked; the
samplers' step size cannot pass their eta."""

import importlib

import pytest
import torch
import tyro
from test_long_runs import SAC_SCRIPTS, small_learner


def critic_above(value: float, script: str, *flags: str):
    """A learner whose critics all predict about `value`, with rewards of 10 in its buffer, and learn() run 5 times:
    its critic parameters before and after."""
    learner = small_learner(script, *flags)
    with torch.no_grad():
        for net in (learner.critic, learner.target_critic):
            heads = getattr(net.net, "heads", net.net)  # MOORE's heads are a network of their own
            heads.biases[-1].fill_(value)
        learner.rb.rewards.fill_(10.0)
    before = [p.detach().clone() for p in learner.critic.parameters()]
    for _ in range(5):
        learner.learn()
    return before, [p.detach() for p in learner.critic.parameters()]


@pytest.mark.parametrize("script", SAC_SCRIPTS)
def test_the_critic_still_learns_where_q_is_above_5000(script):
    # a Q-value near 6000 (a critic that has diverged, or larger rewards): the TD error is about 50, and the
    # critic must follow it; a clip at 5000 would clamp Q and its target alike and stop the gradient
    before, after = critic_above(6000.0, script)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_max_q_value_when_set_clips_and_stops_the_gradient_where_it_binds():
    before, after = critic_above(6000.0, "uniform_sac", "--max-q-value", "5000")
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize(
    "script, prefix", [("drats_sac", "drats"), ("drats_ppo", "drats"), ("lp_sac", "lp"), ("lp_ppo", "lp")]
)
def test_a_step_size_above_eta_is_refused(script, prefix, capsys):
    # 1 - step_size / eta < 0 would weigh log q negatively in the update: q would oscillate
    module = importlib.import_module(script)
    flags = ["--tasks", "reach-v3", "push-v3", f"--{prefix}-eta", "2", f"--{prefix}-step-size", "3", "--run-name", "s"]
    with pytest.raises(SystemExit) as stop:
        module.resolve_args(tyro.cli(module.Args, args=flags))
    assert str(stop.value).startswith(f"error: --{prefix}-step-size must not exceed --{prefix}-eta (2.0), got 3.0")


@pytest.mark.parametrize("flags, expected", [([], -3.0), (["--target-entropy", "-1.5"], -1.5)])
def test_the_target_entropy_is_minus_the_action_dimension_unless_set(flags, expected):
    import uniform_sac

    argv = ["--tasks", "reach-v3", "push-v3", "--hidden-dims", "8", "8", "--no-cuda", "--run-name", "t", *flags]
    args = uniform_sac.resolve_args(tyro.cli(uniform_sac.Args, args=argv))
    uniform_sac.make_learner(args, 39 + 2, 3, 2, torch.device("cpu"))  # a three-dimensional action
    assert args.target_entropy == expected
