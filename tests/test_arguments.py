"""Every argument of every script checked: a value outside its domain stops the script at once, with one line that
names the argument, before anything is built or written; --resume refuses another script's run."""

import dataclasses
import importlib.util
import json
import os
import sys
import types
import typing
from unittest import mock

import run_utils

import pytest
from conftest import ROOT, run_script

SCRIPTS = [
    "uniform_sac.py",
    "drats_sac.py",
    "baselines/lp_sac.py",
    "baselines/smt_sac.py",
    "baselines/moore_sac.py",
    "baselines/drats_moore_sac.py",
    "baselines/uniform_ppo.py",
    "baselines/drats_ppo.py",
    "baselines/lp_ppo.py",
    "baselines/smt_ppo.py",
]
BASE = ["--tasks", "reach-v3", "push-v3", "--max-episode-steps", "50"]
MAY_BE_ZERO = {
    "seed",
    "ent_coef",
    "vf_coef",
    "drats_step_size",
    "lp_step_size",
    "gamma",
    "gae_lambda",
    "drats_eps",
    "drats_success_threshold",
    "lp_solved_threshold",
    "smt_eps",
    "smt_stage1_share",
    "target_entropy",
    "smt_low_threshold",
}
MAY_BE_NEGATIVE = {"target_entropy", "smt_low_threshold"}


# the inputs that used to run silently wrong, or end in a traceback from deep inside
ISSUE_TABLE = [
    ["--hidden-dims"],
    ["--gamma", "1.5"],
    ["--tau", "2"],
    ["--max-q-value", "-1"],
    ["--num-envs", "0"],
    ["--checkpoint-interval", "0"],
    ["--policy-lr", "-1"],
    ["--initial-alpha", "0"],
    ["--hidden-dims", "0"],
    ["--run-name", "../../x"],
    ["--seed", "1.5"],
]


def load(script):
    spec = importlib.util.spec_from_file_location(f"walk_{script.replace('/', '_')[:-3]}", os.path.join(ROOT, script))
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))  # tyro reads Args' docstrings
    spec.loader.exec_module(module)
    return module


def bad_values(field) -> list[list[str]]:
    """Values no run can mean, by the argument's type, as command-line words: zero, negative, NaN, infinities,
    empty, absurdly large, the wrong type, a path for a name."""
    kind, name = field.type, field.name
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None: an argument that may stay unset
        kind = next(t for t in typing.get_args(kind) if t is not type(None))
    if kind is bool:
        return []  # a switch has no value to get wrong
    if typing.get_origin(kind) is typing.Literal:
        return [["bogus"]]
    if name == "tasks":
        return [["no-such-task-v3"], ["reach-v3", "reach-v3"], ["reach-v3", "push-v3", str(10**30)]]
    if name == "hidden_dims":
        return [[], ["0"], ["64", "-3"], [str(10**30)], ["64", "wide"]]
    if typing.get_origin(kind) is dict:
        return [["reach-v3", "nan"], ["reach-v3", "-inf"], ["reach-v3"], ["no-such-task-v3", "400"]]
    if name == "resume":
        return [["no/such/run"]]
    if kind is str:
        return [["../outside"], ["a/b"], [""]]
    numbers = [["-1"]] if name not in MAY_BE_NEGATIVE else []
    numbers += [["0"]] if name not in MAY_BE_ZERO else []
    if kind is int:
        return [*numbers, [str(10**30)], ["1.5"], ["many"]]
    assert kind is float, (name, kind)
    return [*numbers, ["nan"], ["inf"], ["-inf"], ["many"]]


def refusal(module, argv: list[str]) -> str:
    """What the script's command line says to `argv`: its exit message (it must exit)."""
    with mock.patch.object(sys, "argv", [module.__file__, *argv]), pytest.raises(SystemExit) as stop:
        run_utils.parse_args(module.Args, module.resolve_args)
    return stop.value.code


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_argument_outside_its_domain_is_refused_in_one_line(script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = load(script)
    cases = 0
    for field in dataclasses.fields(module.Args):
        flag = "--" + field.name.replace("_", "-")
        base = BASE[3:] if field.name == "tasks" else BASE
        for words in bad_values(field):
            message = refusal(module, [*base, flag, *words])
            assert isinstance(message, str) and message.startswith("error: ") and "\n" not in message, (
                flag,
                words,
                message,
            )
            assert flag in message, (flag, words, message)
            cases += 1
    assert cases > 4 * len(dataclasses.fields(module.Args)) // 2  # most arguments tried several ways
    flags = {"--" + field.name.replace("_", "-") for field in dataclasses.fields(module.Args)}
    for args in [row for row in ISSUE_TABLE if row[0] in flags]:  # the known bad inputs, in every script that has them
        message = refusal(module, [*BASE, *args])
        assert message.startswith("error: ") and "\n" not in message and args[0] in message, (args, message)
    assert not os.path.exists(tmp_path / "runs")  # nothing built or written


def test_every_argument_of_every_script_has_a_domain():
    from run_args import DOMAIN

    for script in SCRIPTS:
        assert {field.name for field in dataclasses.fields(load(script).Args)} <= set(DOMAIN), script


@pytest.mark.parametrize("args", [ISSUE_TABLE[1], ISSUE_TABLE[6], ISSUE_TABLE[9], ISSUE_TABLE[10]], ids=" ".join)
def test_known_bad_inputs_give_one_line_from_the_real_process(workdir, args):
    # a silent wrong run, a traceback from deep inside, a path for a name, the wrong type (the walk above tries
    # every row in every script, in-process)
    result = run_script("drats_sac.py", *BASE, *args, cwd=workdir, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and args[0] in lines[0], result.stderr
    assert not os.path.exists(os.path.join(workdir, "runs")) and not os.path.exists(os.path.join(workdir, "..", "x"))


def test_resume_refuses_a_run_of_another_script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "runs" / "u"
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.pt").write_bytes(b"")
    (run_dir / "config.json").write_text(json.dumps({"script": "uniform_sac", "exp_name": "uniform_sac"}))
    message = refusal(load("drats_sac.py"), ["--resume", str(run_dir)])
    assert message.startswith("error: --resume:") and "a run of uniform_sac.py" in message, message
    module = load("uniform_sac.py")  # its own script takes it (the checkpoint is read later, by the script)
    with mock.patch.object(sys, "argv", ["uniform_sac.py", "--resume", str(run_dir)]):
        assert run_utils.parse_args(module.Args, module.resolve_args).resume == str(run_dir)


def test_help_still_prints_and_exits_cleanly(capsys):
    module = load("drats_sac.py")
    with mock.patch.object(sys, "argv", ["drats_sac.py", "--help"]), pytest.raises(SystemExit) as stop:
        run_utils.parse_args(module.Args, module.resolve_args)
    assert stop.value.code in (0, None) and "--drats-eta" in capsys.readouterr().out
