# Before and after: updates/s of uniform_sac.py's `learn` in two checkouts of this repository, timed in turns in one
# run (each turn a fresh process that builds the learner, warms it up and times a window), so that both see the same
# machine load. Prints each checkout's median and the ratio new / old.
#   git worktree add /tmp/old <commit>
#   python benchmark/compare_update.py --old /tmp/old --new . --config mt10-small --modes fp32 compile+bf16
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

import tyro

# one turn: build the checkout's learner at speed.py's configuration and mode, and time it
TURN = """
import json, sys, time
sys.path.insert(0, {checkout!r})
sys.path.insert(0, {checkout!r} + "/benchmark")
import torch
import speed
args = speed.learner_args({config!r}, {mode!r}, torch.device("cpu"))
k = speed.CONFIGS[{config!r}][-1]
# older checkouts: every configuration is uniform_sac.py's, and make_learner returns a tuple
make_learner = speed.script_module({config!r}).make_learner if hasattr(speed, "script_module") else speed.make_learner
torch.manual_seed(0)
learner = make_learner(args, speed.OBS_DIM + k, speed.ACT_DIM, k, torch.device("cpu"))
rb, learn = (learner.rb, learner.learn) if hasattr(learner, "rb") else (learner[5], learner[6])
for buffer in (rb.obs, rb.next_obs, rb.actions, rb.rewards):
    buffer.normal_()
rb.size.fill_(rb.capacity)
for _ in range({warmup}):
    learn()
start = time.perf_counter()
for _ in range({updates}):
    learn()
print(json.dumps({{"updates_per_s": {updates} / (time.perf_counter() - start)}}))
"""


@dataclass
class Args:
    old: str
    """the checkout before the change"""
    new: str = "."
    """the checkout after the change"""
    config: Literal["mt10", "mt50", "mt10-small", "small", "mt10-moore", "mt10-small-moore"] = "mt10-small"
    """speed.py's configuration"""
    modes: tuple[Literal["fp32", "bf16", "compile", "compile+bf16"], ...] = ("fp32", "compile+bf16")
    """speed.py's modes (CPU)"""
    turns: int = 3
    """turns per checkout and mode, alternating old and new"""
    updates: int = 200
    """timed updates per turn"""
    warmup: int = 20
    """untimed updates first in each turn (compilation happens here)"""


def turn(checkout: str, args: Args, mode: str) -> float:
    code = TURN.format(
        checkout=os.path.abspath(checkout), config=args.config, mode=mode, warmup=args.warmup, updates=args.updates
    )
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"error: {checkout} ({mode}): {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["updates_per_s"]


def main(args: Args):
    print(f"{args.config}, {args.turns} turns of {args.updates} updates each, OMP_NUM_THREADS=1 unless set")
    for mode in args.modes:
        rates = {"old": [], "new": []}
        for _ in range(args.turns):
            rates["old"].append(turn(args.old, args, mode))
            rates["new"].append(turn(args.new, args, mode))
        old, new = statistics.median(rates["old"]), statistics.median(rates["new"])
        print(f"{mode:>13}: old {old:7.1f} updates/s, new {new:7.1f} updates/s, new / old {new / old:.3f}")


if __name__ == "__main__":
    main(tyro.cli(Args))
