"""What only shows after millions of updates, measured per update on the CPU: the SAC update keeps no
autograd graph alive between updates, and its memory stays flat."""

import importlib
import os
import sys

import pytest
import torch
import tyro
from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "baselines"))

SAC_SCRIPTS = ["uniform_sac", "drats_sac", "lp_sac", "smt_sac", "moore_sac", "drats_moore_sac"]
K, OBS, ACT = 2, 39 + 2, 4


def small_learner(script: str, *flags: str, hidden: int = 32):
    """A two-task learner of `script` (2 x `hidden` networks, batches of 64) with random data in its buffer."""
    module = importlib.import_module(script)
    args = module.resolve_args(
        tyro.cli(
            module.Args,
            args=[
                "--tasks",
                "reach-v3",
                "push-v3",
                "--hidden-dims",
                str(hidden),
                str(hidden),
                "--batch-size",
                "64",
                "--buffer-size",
                "2000",
                "--no-cuda",
                "--run-name",
                "long-run-test",
                *flags,
            ],
        )
    )
    torch.manual_seed(0)
    learner = module.make_learner(args, OBS, ACT, K, torch.device("cpu"))
    rb = learner.rb
    generator = torch.Generator().manual_seed(1)
    for buffer in (rb.obs, rb.next_obs, rb.actions, rb.rewards):
        buffer.copy_(torch.randn(buffer.shape, generator=generator))
    rb.size.fill_(rb.capacity)
    return learner


def resident_bytes() -> int:
    """This process's resident memory now (not its peak), from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("script", SAC_SCRIPTS)
def test_the_target_critic_stays_a_leaf_with_no_graph(script):
    # a Polyak update run with autograd on makes each target parameter a non-leaf whose graph grows by one
    # node per update: after days of updates, gigabytes
    learner = small_learner(script)
    for _ in range(3):
        learner.learn()
    for p in learner.target_critic.parameters():
        assert p.is_leaf and p.grad_fn is None and not p.requires_grad
    for module in (learner.actor, learner.critic):
        assert all(p.is_leaf and p.grad_fn is None for p in module.parameters())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_memory_per_update_stays_flat_over_thousands_of_updates():
    learn = small_learner("uniform_sac").learn
    for _ in range(200):  # the allocator's pools reach the update's working set
        learn()
    before = resident_bytes()
    for _ in range(1000):
        learn()
    growth = resident_bytes() - before
    # with the graph kept alive this grew ~3.7 KB an update; without it, not at all
    assert growth / 1000 < 1000, f"{growth / 1000:.0f} bytes more resident memory per update"
