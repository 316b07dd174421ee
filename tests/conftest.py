import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# the tiny configuration of the README: seconds on a laptop CPU
TINY = [
    "--max-episode-steps", "50", "--eval-interval", "1000", "--eval-episodes", "2",
    "--hidden-dims", "64", "64", "--learning-starts", "500", "--no-cuda",
]  # fmt: skip


def run_script(script: str, *args: str, cwd: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run one of the project's scripts as a user would, in `cwd` (where runs/ lands)."""
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def workdir(tmp_path):
    return str(tmp_path)
