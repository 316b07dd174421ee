# The domain of every argument of every script, in one table to scan: an argument outside its domain stops the run
# before anything is built or written (run_utils.check_common). Checks between arguments are in each script.
import dataclasses
import math
import re

# (what is allowed, its test, the arguments); an argument whose default is unset (None) may stay unset
DOMAINS = [
    ("an integer >= 1", lambda v: v >= 1, "total_timesteps num_envs batch_size buffer_size num_steps update_epochs "
     "num_minibatches eval_interval eval_episodes eval_envs_per_task checkpoint_interval drats_window "
     "drats_success_window lp_window lp_success_window smt_num_active smt_window"),
    ("a finite number > 0", lambda v: 0 < v < math.inf, "policy_lr q_lr alpha_lr learning_rate adam_eps max_grad_norm "
     "initial_alpha max_q_value clip_coef target_kl drats_eta drats_initial_target lp_eta smt_kappa"),
    ("a finite number >= 0", lambda v: 0 <= v < math.inf, "ent_coef vf_coef drats_step_size lp_step_size"),
    ("a number in [0, 1]", lambda v: 0 <= v <= 1, "gamma gae_lambda drats_eps drats_success_threshold "
     "lp_solved_threshold smt_eps smt_stage1_share"),
    ("a number in (0, 1]", lambda v: 0 < v <= 1, "tau lp_eps"),  # LP pins a solved task at lp_eps: 0 would be for good
    ("a finite number", math.isfinite, "target_entropy smt_low_threshold"),
    ("an integer >= 0", lambda v: v >= 0, "learning_starts"),
    ("an integer in [0, 2^32)", lambda v: 0 <= v < 2**32, "seed"),
    ("an integer in [1, 500] (Meta-World's limit)", lambda v: 1 <= v <= 500, "max_episode_steps"),
    ("one or more widths >= 1", lambda v: len(v) > 0 and min(v) >= 1, "hidden_dims"),
    ("pairs of a task name and a finite number", lambda v: all(map(math.isfinite, v.values())), "smt_high_thresholds"),
    ("a plain name (letters, digits, '.', '_', '-')", lambda v: re.fullmatch(r"[\w.-]+", v) and v.strip(".") != "",
     "exp_name run_name wandb_project_name wandb_entity"),
    # choices, task lists, switches and paths: tyro and the checks below see to these
    ("anything", lambda v: True, "env_id tasks vector_strategy resume cuda torch_deterministic bf16 compile cudagraphs "
     "track capture_video checkpoint_buffer norm_adv drats_weighted_updates"),
]
DOMAIN = {name: (allowed, test) for allowed, test, names in DOMAINS for name in names.split()}


def out_of_domain(args) -> list[tuple[str, str, str]]:
    """(name, what is allowed, the value as given) for every argument of the dataclass `args` outside its domain."""
    bad = []
    for field in dataclasses.fields(args):
        (allowed, test), value = DOMAIN[field.name], getattr(args, field.name)
        if value is not None and not test(value):
            shown = " ".join(map(str, value)) if isinstance(value, tuple) else str(value)
            bad.append((field.name, allowed, shown or "nothing"))
    return bad
