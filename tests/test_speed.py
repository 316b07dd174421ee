"""The fast paths: --bf16 keeps fp32 master weights (and warns on a CPU without a fast bf16 matmul), --compile
computes the same update as eager, a CPU update reuses freed memory, --cudagraphs is refused without a GPU, and
benchmark/speed.py records the update's matmuls and writes its table."""

import math
import os
import re
import resource
import subprocess
import sys
from functools import partial

import pytest
import torch
import tyro
from conftest import ROOT, TINY, run_script

from uniform_sac import Args, make_learner, resolve_args

K, OBS, ACT = 2, 39 + 2, 4


def build_learner(*flags, device: str = "cpu", hidden: int = 32, batch: int = 64):
    """A learner for two tasks (2 x `hidden` networks, batches of `batch`; small by default) on `device`, its
    replay buffer full of random data."""
    args = resolve_args(
        tyro.cli(
            Args,
            args=[
                "--tasks",
                "reach-v3",
                "push-v3",
                "--hidden-dims",
                str(hidden),
                str(hidden),
                "--batch-size",
                str(batch),
                "--buffer-size",
                "2000",
                "--no-cuda" if device == "cpu" else "--cuda",
                "--run-name",
                "speed-test",
                *flags,
            ],
        )
    )
    torch.manual_seed(0)
    learner = make_learner(args, OBS, ACT, K, torch.device(device))
    rb = learner.rb
    generator = torch.Generator().manual_seed(1)
    for buffer in (rb.obs, rb.next_obs, rb.actions, rb.rewards):
        buffer.copy_(torch.randn(buffer.shape, generator=generator))
    rb.size.fill_(rb.capacity)
    return learner


def test_bf16_trains_fp32_master_weights():
    learner = build_learner("--bf16")
    before = [p.detach().clone() for p in learner.actor.parameters()]
    losses = learner.learn()
    assert torch.isfinite(losses).all() and losses.dtype == torch.float32
    for module in (learner.actor, learner.critic, learner.target_critic):
        assert all(p.dtype == torch.float32 for p in module.parameters())
    for optimizer in (learner.q_optimizer, learner.actor_optimizer, learner.a_optimizer):
        for state in optimizer.state.values():
            assert state["exp_avg"].dtype == torch.float32
    # it did learn something
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.actor.parameters(), strict=True))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_cpu_updates_reuse_freed_memory_instead_of_faulting_in_fresh_pages():
    # each update frees and allocates MB-sized tensors: with glibc's defaults each new one faults in its 4 KB
    # pages afresh (~1,500-4,000 faults an update here), with make_learner's tune_for_cpu() hardly any
    learn = build_learner(hidden=400, batch=1280).learn
    for _ in range(8):  # the heap grows to the update's working set
        learn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        learn()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5
    assert faults < 1000, f"{faults:.0f} page faults an update (one fresh 2 x 1280 x 400 activation alone is 1,000)"


def test_bf16_critic_heads_are_computed_in_fp32():
    # under --bf16 the torso's matmuls run in bfloat16, but the critics' last product must not round Q to
    # bfloat16's 8 significant bits (up to +-16 at Q ~ 3000, more than a step's reward). Small integer inputs
    # and torso weights make the bf16 torso exact, so fp32 gives the reference for the heads alone.
    from uniform_sac import MultiHeadMLP

    generator = torch.Generator().manual_seed(0)
    k, n, hidden = 2, 64, 32
    net = MultiHeadMLP(8, (hidden,), 1, num_tasks=k, ensemble=2)
    with torch.no_grad():
        net.weights[0].copy_(torch.randint(-2, 3, net.weights[0].shape, generator=generator))
        net.weights[1].copy_(torch.rand(net.weights[1].shape, generator=generator) * 40)  # Q of 1000-4000
        net.biases[1].fill_(500.3)
    x = torch.randint(0, 2, (k * n, 8), generator=generator).float()
    task = torch.arange(k)[:, None].expand(k, n)
    reference = net(x, task)
    with torch.autocast("cpu", torch.bfloat16):
        q = net(x, task)
    assert q.dtype == torch.float32 and 1000 < reference.abs().mean() < 4000
    assert (q - reference).abs().max() < 0.05, f"Q off by up to {(q - reference).abs().max():.2f} under bf16"


@pytest.fixture
def two_threads():
    """Two threads while the test runs (pytest-xdist workers have one): the compiler writes other CPU kernels
    for more than one thread (atomic scatters), and users run with more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_compiled_update_matches_eager(two_threads):
    import torch._inductor.config

    eager, compiled = build_learner(), build_learner("--compile")
    for _ in range(3):
        torch.manual_seed(5)
        losses_eager = eager.learn()
        torch.manual_seed(5)
        with torch._inductor.config.patch(fallback_random=True):  # the compiled code draws eager's noise
            losses_compiled = compiled.learn()
        torch.testing.assert_close(losses_compiled, losses_eager, rtol=1e-4, atol=1e-5)
    for module in ("actor", "critic", "target_critic"):
        for a, b in zip(getattr(eager, module).parameters(), getattr(compiled, module).parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_compiled_drats_update_with_weighted_blocks_matches_eager(two_threads):
    # the task weights reach the temperatures' gradient too: as a gather's scatter, the one-graph update
    # did not compile on a CPU (an inductor assertion)
    import torch._inductor.config
    from test_long_runs import small_learner

    def build(*flags):
        learn = small_learner("drats_sac", "--drats-weighted-updates", *flags).learn
        learn.task_weight.copy_(torch.tensor([1.6, 0.4]))
        return learn

    eager, compiled = build(), build("--compile")
    for _ in range(2):
        torch.manual_seed(5)
        logs_eager = eager()
        torch.manual_seed(5)
        with torch._inductor.config.patch(fallback_random=True):
            logs_compiled = compiled()
        torch.testing.assert_close(logs_compiled, logs_eager, rtol=1e-4, atol=1e-5)


def test_compiled_moore_update_matches_eager_and_bf16_keeps_it_close(two_threads):
    # MOORE's experts, Gram-Schmidt and task mixing inside the one-graph update
    import torch._inductor.config
    from test_long_runs import small_learner

    eager, compiled, bf16 = (small_learner("moore_sac", *flags) for flags in ([], ["--compile"], ["--bf16"]))
    for _ in range(2):
        torch.manual_seed(5)
        losses_eager = eager.learn()
        torch.manual_seed(5)
        with torch._inductor.config.patch(fallback_random=True):
            losses_compiled = compiled.learn()
        torch.manual_seed(5)
        losses_bf16 = bf16.learn()
        torch.testing.assert_close(losses_compiled, losses_eager, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(losses_bf16, losses_eager, rtol=5e-2, atol=5e-2)
    for a, b in zip(eager.actor.parameters(), compiled.actor.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_compiled_update_is_one_graph_without_autograd_at_run_time(two_threads):
    # compile_update's fullgraph: a graph break raises; one graph that holds its own backward records no autograd
    # node when it runs (the old split update saved a forward's tensors for a separate backward at every call)
    learn = build_learner("--compile").learn
    learn()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        logs = learn()
    assert saved == [] and not logs.requires_grad, saved


def adam_runs(steps: int = 4, skip_at: int | None = None):
    """Parameters after `steps` Adam steps with clipping: torch's own fused Adam, and run_utils.Adam with
    run_utils.clip_grad_norm_ eager and compiled, on gradients one of which is transposed in memory. Each set of
    parameters is a module's, closed over by its step, as the learner's are (a compiled graph's own inputs would
    not get their .grad from a traced backward). skip_at: run_utils.Adam is told to skip that step (PPO's KL stop),
    and torch's Adam does not take it."""
    import run_utils

    def learner(optimizer_class):
        torch.manual_seed(0)
        params = torch.nn.ParameterList([torch.randn(2, 3, 8), torch.randn(5)])
        optimizer = optimizer_class(params.parameters(), lr=0.1, eps=1e-5)

        def step(x, scale, skip=None):
            optimizer.zero_grad()
            # x @ w.mT: w's gradient comes out of autograd transposed (strides (24, 1, 3))
            loss = (torch.bmm(x, params[0].mT).pow(3).sum() + params[1].pow(2).sum() * scale) * 10
            loss.backward()
            run_utils.clip_grad_norm_(params.parameters(), 1.0)
            if skip is None:
                optimizer.step()
            else:
                optimizer.step(skip=skip)

        return params, step

    xs = torch.randn(steps, 2, 6, 8, generator=torch.Generator().manual_seed(1))
    reference, reference_step = learner(partial(torch.optim.Adam, fused=True))
    eager, eager_step = learner(run_utils.Adam)
    compiled, compiled_step = learner(run_utils.Adam)
    compiled_step = run_utils.compile_update(compiled_step)
    assert not torch.autograd.grad(torch.bmm(xs[0], reference[0].mT).sum(), reference[0])[0].is_contiguous()
    for step in range(steps):
        if step != skip_at:
            reference_step(xs[step], step + 1.0)
        skip = None if skip_at is None else torch.tensor(step == skip_at)
        eager_step(xs[step], step + 1.0, skip)
        compiled_step(xs[step], step + 1.0, skip)
    return list(reference), list(eager), list(compiled)


def check_adam(skip_at: int | None = None):
    torch.set_num_threads(2)
    reference, eager, compiled = adam_runs(skip_at=skip_at)
    assert all(torch.equal(a, b) for a, b in zip(reference, eager, strict=True))
    for a, b in zip(reference, compiled, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert not torch.equal(reference[0], torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(0)))
    if skip_at is not None:  # the skipped step mattered: taking it gives other parameters
        assert not torch.equal(reference[0], adam_runs()[0][0])


@pytest.mark.parametrize("skip_at", [None, 2])
def test_adam_is_torchs_adam_eager_exactly_and_compiled_to_rounding(skip_at):
    # in a fresh process: a process that has compiled a learner's update fails to trace this small step
    # (docs/speed.md, the compiler's traps); a training run compiles one update. skip_at: a step skipped on the
    # device (PPO's KL stop) is a step not taken, eager exactly
    path = [os.path.dirname(os.path.abspath(__file__)), ROOT]
    code = f"import sys; sys.path[:0] = {path!r}; import test_speed; test_speed.check_adam({skip_at})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_compiled_run_trains_to_its_end(workdir):
    """--compile in a real run: the compiled update and policy through warm-up, updates, evaluation and the final
    checkpoint (a non-finite loss would stop it; the update itself is checked against eager above)."""
    result = run_script(
        "uniform_sac.py",
        "--tasks",
        "reach-v3",
        "push-v3",
        *TINY,
        "--total-timesteps",
        "1500",
        "--compile",
        "--run-name",
        "compiled",
        cwd=workdir,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = os.path.join(workdir, "runs", "compiled")
    with open(os.path.join(run, "eval.csv")) as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["1000", "1000", "1500", "1500"]
    assert os.path.exists(os.path.join(run, "checkpoint.pt"))


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_bf16_on_a_cpu_without_a_fast_bf16_matmul_warns(monkeypatch, capsys, fast_bf16):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: fast_bf16)
    resolve_args(tyro.cli(Args, args=["--tasks", "reach-v3", "--no-cuda", "--bf16", "--run-name", "bf16-warning"]))
    warned = "warning: --bf16: this CPU has no AVX-512 or AMX" in capsys.readouterr().err
    assert warned != fast_bf16


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: --cudagraphs is allowed")
def test_cudagraphs_is_refused_without_a_gpu(workdir):
    result = run_script(
        "uniform_sac.py", "--tasks", "reach-v3", "--cudagraphs", "--run-name", "cg", cwd=workdir, timeout=60
    )
    assert (
        result.returncode != 0
        and "--cudagraphs needs a CUDA device" in result.stderr
        and "Traceback" not in result.stderr
    )
    assert not os.path.exists(os.path.join(workdir, "runs", "cg"))


@pytest.mark.parametrize("flags", [(), ("--bf16",)])
def test_speed_benchmark_records_every_matmul_of_the_update(flags):
    """speed.py times the update's matmuls alone from what MatmulRecorder saw: the same FLOPs as FlopCounterMode
    counts, in the dtype the update ran them in, and replayable."""
    sys.path.insert(0, os.path.join(ROOT, "benchmark"))
    import speed
    from torch.utils.flop_counter import FlopCounterMode

    learn = build_learner(*flags).learn
    with FlopCounterMode(display=False) as counter:
        learn()
    with speed.MatmulRecorder() as recorder:
        learn()
    flops = 0
    for _func, args, _ in recorder.calls:
        # the two factors (after a bias)
        a, b = [shape for shape, _, _ in (x for x in args if isinstance(x, tuple))][-2:]
        flops += 2 * math.prod(a) * b[-1]
        assert {dtype for _, _, dtype in (x for x in args if isinstance(x, tuple))} == {
            torch.bfloat16 if flags else torch.float32
        }
    assert flops == counter.get_total_flops() > 0
    assert 0 < speed.matmuls_alone(recorder.calls, torch.device("cpu")) < 1


def test_speed_benchmark_reads_a_chatty_child_without_deadlock(tmp_path):
    # a child that writes more to stderr than a pipe holds (64 KiB) blocked forever when speed.py read its stderr
    # only after waiting for its end; 1 MB, as a long run's progress bar writes
    import threading

    sys.path.insert(0, os.path.join(ROOT, "benchmark"))
    import speed

    result = {}
    command = [sys.executable, "-c", "import sys; sys.stderr.write('x' * 2**20); sys.exit(3)"]
    thread = threading.Thread(target=lambda: result.update(out=speed.run_to_end(command, str(tmp_path))), daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "speed.run_to_end is stuck on a child that fills its stderr pipe"
    status, usage, stderr = result["out"]
    assert os.waitstatus_to_exitcode(status) == 3 and len(stderr) == 2**20 and usage.ru_maxrss > 0


def test_speed_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "speed.md"
    # on the CPU (a GPU's small update rounds to 0% of its peak); bf16 only where torch has a fast bfloat16 matmul
    # (AVX-512 or AMX): elsewhere its peak alone takes minutes
    modes = ["fp32", "bf16"] if torch.ops.mkldnn._is_mkldnn_bf16_supported() else ["fp32"]
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmark", "speed.py"),
            "--configs",
            "small",
            "--modes",
            *modes,
            "--updates",
            "2",
            "--warmup",
            "1",
            "--repeats",
            "3",
            "--window-s",
            "0.2",
            "--no-loop",
            "--no-cuda",
            "--out",
            str(out),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert "matmul peak measured in the same run" in text.lower()
    # each peak names the path and shape that set it, as the console does, and that shape's own rate is the peak
    for precision in modes:
        peak, where, shape = re.search(rf"{precision} ([\d,]+) GFLOP/s \(([^,]+, (\w+))\)", text).groups()
        assert f"matmul peak {precision}: {peak} GFLOP/s ({where})" in result.stdout
        assert re.search(rf"{precision} [^;]*\b{shape} {peak}\b", text), (precision, peak, shape)
    rows = [line for line in text.splitlines() if line.startswith("| small |")]
    assert [row.split(" | ")[1] for row in rows] == modes
    for row in rows:  # the median of the timing windows lies within their range
        median, (low, high) = (
            float(row.split(" | ")[2].replace(",", "")),
            map(float, row.split(" | ")[3].replace(",", "").split("-")),
        )
        assert 0 < low <= median <= high
    gflop = float(rows[0].split(" | ")[5])
    assert 0.01 < gflop < 0.06  # ~0.03 GFLOP: 2 x 64 networks, batch 128, twin critics, forward and backward
    for row in rows:  # the update's matmuls alone run faster than the update does, and take part of its time
        in_update, alone, share = (row.split(" | ")[i] for i in (7, 8, 9))
        assert alone.endswith(in_update.split()[-1]) and int(alone.split("%")[0]) > int(in_update.split("%")[0])
        assert 0 < int(share.rstrip("%")) < 100


def test_speed_benchmark_times_ppo(tmp_path):
    """The PPO rows: the script's own update over a stored rollout, and its second iteration run for real."""
    out = tmp_path / "speed.md"
    command = [sys.executable, os.path.join(ROOT, "benchmark", "speed.py"), "--configs", "small-ppo", "--modes", "fp32"]
    command += ["--repeats", "2", "--no-cuda", "--out", str(out)]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert "matmul peak" not in text.lower()  # no SAC configuration: no SAC table
    (row,) = [line.split(" | ") for line in text.splitlines() if line.startswith("| small-ppo |")]
    seconds, (low, high) = float(row[2]), map(float, row[3].split("-"))
    assert 0 < low <= seconds <= high
    # 10 passes over a rollout of 2 slots x 1,000 steps
    assert float(row[4].replace(",", "")) == pytest.approx(10 * 2000 / seconds, rel=0.05)  # seconds shown rounded
    rollout_rate, rollout_s, ratio, loop_rate = (float(row[i].replace(",", "")) for i in (6, 7, 8, 9))
    assert rollout_s == pytest.approx(2000 / rollout_rate, abs=0.06) and ratio == pytest.approx(
        seconds / rollout_s, rel=0.1
    )
    assert 0 < loop_rate < rollout_rate  # the loop adds the update to the rollout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--modes", "fp32", "--eval-loop", "compile"], "--eval-loop: compile is not among the measured --modes"),
        (["--eval-envs-per-task", "0"], "--eval-envs-per-task must be at least 1"),
        (["--repeats", "0"], "--repeats and --eval-envs-per-task must be at least 1"),
        (["--window-s", "-1"], "--window-s not negative"),
        (["--loop-updates", "150"], "--loop-updates at least 200"),  # fewer gave one speed point: a division by 0
    ],
)
def test_speed_benchmark_refuses_bad_settings_at_once(tmp_path, args, expected):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmark", "speed.py"),
            "--configs",
            "small",
            *args,
            "--out",
            str(tmp_path / "speed.md"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "speed.md").exists()
