# The domain of every argument of every script, in one table to scan: an argument outside its domain stops the run
# before anything is built or written (run_utils.check_common). Checks between arguments are in each script.
import contextlib
import dataclasses
import io
import math
import re
import sys

import tyro


def integer(low: int, high: int, text: str = "") -> tuple:
    return (f"an integer in [{low:,}, {high:,}]{text}", lambda v: low <= v <= high)


# (what is allowed, its test, the arguments). An argument whose default is unset (None) may stay unset. The upper
# limits only catch typos: each is far above any run these scripts are meant for.
DOMAINS = [
    (*integer(1, 10**12), "total_timesteps eval_interval checkpoint_interval drats_window lp_window smt_window"),
    (*integer(0, 10**12), "learning_starts"),
    (*integer(1, 10**9), "buffer_size"),
    (*integer(1, 10**7), "batch_size num_steps num_minibatches"),
    (*integer(1, 10**6), "eval_episodes update_epochs drats_success_window lp_success_window smt_num_active"),
    (*integer(1, 1024, ", each slot an env in memory"), "num_envs"),
    (*integer(1, 64), "num_experts"),
    (*integer(1, 64, ", each an env in memory"), "eval_envs_per_task"),
    (*integer(1, 500, " (Meta-World's limit)"), "max_episode_steps"),
    (*integer(0, 2**32 - 1), "seed"),
    (
        "one to 32 widths, each an integer in [1, 65,536]",
        lambda v: 1 <= len(v) <= 32 and 1 <= min(v) and max(v) <= 65536,
        "hidden_dims",
    ),
    (
        "a finite number > 0",
        lambda v: 0 < v < math.inf,
        "policy_lr q_lr alpha_lr learning_rate adam_eps max_grad_norm "
        "initial_alpha max_q_value clip_coef target_kl drats_eta drats_initial_target lp_eta smt_kappa",
    ),
    ("a finite number >= 0", lambda v: 0 <= v < math.inf, "ent_coef vf_coef drats_step_size lp_step_size"),
    (
        "a number in [0, 1]",
        lambda v: 0 <= v <= 1,
        "gamma gae_lambda drats_eps drats_success_threshold lp_solved_threshold smt_eps smt_stage1_share",
    ),
    ("a number in (0, 1]", lambda v: 0 < v <= 1, "tau lp_eps"),  # LP pins a solved task at lp_eps: 0 would be for good
    ("a finite number", math.isfinite, "target_entropy smt_low_threshold"),
    ("pairs of a task name and a finite number", lambda v: all(map(math.isfinite, v.values())), "smt_high_thresholds"),
    (
        "a plain name (letters, digits, '.', '_', '-')",
        lambda v: re.fullmatch(r"[\w.-]+", v) and v.strip(".") != "",
        "exp_name run_name wandb_project_name wandb_entity",
    ),
    # choices and switches (tyro parses them), task names and --resume (run_utils checks them)
    (
        "anything",
        lambda v: True,
        "env_id tasks vector_strategy resume cuda torch_deterministic bf16 compile cudagraphs "
        "track capture_video checkpoint_buffer norm_adv drats_weighted_updates",
    ),
]
DOMAIN = {name: (allowed, test) for allowed, test, names in DOMAINS for name in names.split()}


def fail(message: str):  # one clear line, and stop
    sys.exit(f"error: {message}")


def read(Args, **kwargs):
    """tyro's command line, with its error box for a value it cannot parse (a wrong type, an unknown choice or
    option) turned into one line (--help passes through)."""
    box = io.StringIO()
    try:
        with contextlib.redirect_stderr(box):
            return tyro.cli(Args, **kwargs)
    except SystemExit as stop:
        if not stop.code:
            raise
        lines = [line.strip("│╭╮╰╯ ") for line in box.getvalue().splitlines()[1:]]
        message = " ".join(
            line for line in lines[: next(i for i, line in enumerate(lines + ["─"]) if line.startswith("─"))]
        )
        fail(f"{(message or ' '.join(box.getvalue().split())).removeprefix('Error parsing ')} (see --help)")


def check(args):
    """Each argument of the dataclass `args` in its domain, or one line naming the first one outside it."""
    for field in dataclasses.fields(args):
        (allowed, test), value = DOMAIN[field.name], getattr(args, field.name)
        if value is not None and not test(value):
            shown = " ".join(map(str, value)) if isinstance(value, tuple) else str(value)
            fail(f"--{field.name.replace('_', '-')} must be {allowed}, got {shown or 'nothing'}")
