"""Behaviour of mmgen.train.Trainer and mmgen.data.ShardedBatchSampler.

The subprocess tests run tests/train_scripts/train_mlp.py (a tiny MLP with dropout, input
noise augmentation, EMA, grad clipping, warm-up + cosine LR and a shuffling sampler) and
check that a SIGKILLed-then-resumed run is bitwise equal to an uninterrupted one, with one
process and with two (torchrun, gloo), and that two processes follow the single-process loss
curve. The in-process tests use the same tiny task.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import TensorDataset

from mmgen.data import ShardedBatchSampler
from mmgen.train import EMA, TrainConfig, Trainer, lr_factor

SCRIPTS = Path(__file__).parent / "train_scripts"
sys.path.insert(0, str(SCRIPTS))
from tiny_task import TinyRegression, mse_objective, tiny_mlp  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Measured max relative difference of the logged losses, 2 processes vs 1, over 40 steps:
# 1.1e-7 (one optimizer) and 1.7e-7 (two optimizers); the all-reduce averages two half-batch
# means instead of taking one full-batch mean, which changes the float rounding.
TWO_PROCESS_RTOL = 1e-5


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def _command(out: Path, *args: str, nproc: int = 1) -> list[str]:
    script = [str(SCRIPTS / "train_mlp.py"), "--out", str(out), *args]
    if nproc == 1:
        return [sys.executable, *script]
    return [str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={nproc}", *script]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _train(out: Path, *args: str, nproc: int = 1) -> None:
    proc = subprocess.run(_command(out, *args, nproc=nproc), env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _train_and_kill(out: Path, *args: str, nproc: int = 1, kill_after_step: int = 12) -> None:
    """Start a slowed-down run, SIGKILL it (all its processes) once the first checkpoint
    exists and ``kill_after_step`` rows are logged, and check that it did not finish."""
    log = out.with_name(out.name + ".killed.log")
    with open(log, "w") as stderr:
        proc = subprocess.Popen(_command(out, *args, "--sleep", "0.1", nproc=nproc), env=_env(),
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True)  # own process group: kills workers too
    deadline = time.monotonic() + 120
    while not (list((out / "checkpoints").glob("step_*")) and _n_rows(out) >= kill_after_step):
        assert proc.poll() is None, f"run ended before it could be killed: {log.read_text()}"
        assert time.monotonic() < deadline, "timed out waiting for the first checkpoint"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists(), "the killed run must not have finished"


def _n_rows(out: Path) -> int:
    try:
        return len((out / "metrics.csv").read_text().splitlines()) - 1
    except FileNotFoundError:
        return 0


def _rows(out: Path) -> list[dict[str, float]]:
    with open(out / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _assert_same_weights(a: Path, b: Path) -> None:
    for name in ("model.safetensors", "ema.safetensors"):
        wa, wb = load_file(str(a / name)), load_file(str(b / name))
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), f"{name}:{k} differs"


def _assert_resumed_log(uninterrupted: Path, resumed: Path, steps: int) -> None:
    rows_a, rows_b = _rows(uninterrupted), _rows(resumed)
    assert [r["step"] for r in rows_b] == list(range(1, steps + 1))  # one row per logged step
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert ra.keys() == rb.keys()
        for key in ra.keys() - {"time"}:  # losses, lr, grad_norm (per optimizer), ...
            assert ra[key] == rb[key], (key, ra["step"])


# ---------------------------------------------------------------------------------------------
# kill / resume and distributed (subprocesses)
# ---------------------------------------------------------------------------------------------

def test_sigkill_and_resume_is_bitwise_equal(tmp_path):
    _train(tmp_path / "a")
    _train_and_kill(tmp_path / "b")
    _train(tmp_path / "b", "--resume", "latest")
    _assert_same_weights(tmp_path / "a", tmp_path / "b")
    _assert_resumed_log(tmp_path / "a", tmp_path / "b", steps=40)


@pytest.mark.parametrize("family", ["--gan", "--vae"])
def test_gan_and_vae_sigkill_and_resume_is_bitwise_equal(tmp_path, family):
    # GAN: two optimizers, batch norm statistics, EMA, z drawn from the global RNG, and the
    # monitor's log (a killed run's rows are replaced, not repeated). VAE: z ~ q(z | x) drawn
    # from the global RNG.
    _train(tmp_path / "a", family)
    _train_and_kill(tmp_path / "b", family)
    _train(tmp_path / "b", family, "--resume", "latest")
    _assert_same_weights(tmp_path / "a", tmp_path / "b")
    _assert_resumed_log(tmp_path / "a", tmp_path / "b", steps=40)
    if family == "--gan":
        monitor = [(tmp_path / run / "monitor.csv").read_text().splitlines() for run in "ab"]
        assert len(monitor[0]) == 5  # header + steps 10, 20, 30, 40
        assert monitor[0] == monitor[1]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> Path:
    """An uninterrupted 2-process run of the default script (dropout and augmentation on)."""
    out = tmp_path_factory.mktemp("two_proc") / "run"
    _train(out, nproc=2)
    return out


def test_two_process_sigkill_and_resume_is_bitwise_equal(two_process_run, tmp_path):
    _train_and_kill(tmp_path / "b", nproc=2)
    assert (tmp_path / "b" / "checkpoints" / "step_00000010" / "rng_rank1.pt").is_file()
    _train(tmp_path / "b", "--resume", "latest", nproc=2)
    _assert_same_weights(two_process_run, tmp_path / "b")
    _assert_resumed_log(two_process_run, tmp_path / "b", steps=40)


@pytest.mark.parametrize("two_optimizers", [False, True])
def test_two_processes_follow_the_single_process_loss_curve(tmp_path, two_optimizers):
    # Without dropout and augmentation both runs see identical data and compute: only the
    # float summation order of the gradient mean differs. The two-optimizer objective calls
    # a sub-module directly, which DDP must still synchronise.
    args = ["--dropout", "0", "--augment", "0"] + (["--two-optimizers"] if two_optimizers else [])
    _train(tmp_path / "one", *args)
    _train(tmp_path / "two", *args, nproc=2)
    one, two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    keys = ["loss_0", "loss_1"] if two_optimizers else ["loss"]
    assert len(one) == len(two) == 40
    for r1, r2 in zip(one, two, strict=True):
        for k in keys:
            assert math.isclose(r1[k], r2[k], rel_tol=TWO_PROCESS_RTOL), (k, r1, r2)
    assert all(one[-1][k] < one[0][k] for k in keys)


# ---------------------------------------------------------------------------------------------
# in-process behaviour
# ---------------------------------------------------------------------------------------------

def _config(tmp_path: Path, **overrides) -> TrainConfig:
    base = dict(steps=6, batch_size=8, lr=1e-2, grad_clip=0.0, out_dir=str(tmp_path / "run"),
                log_every=1, ckpt_every=0, seed=3)
    return TrainConfig(**{**base, **overrides})


def test_grad_accumulation_matches_one_big_batch(tmp_path):
    weights = []
    for accum in (1, 2):
        model = tiny_mlp(dropout=0.0)
        cfg = _config(tmp_path / f"accum{accum}", grad_accum=accum, grad_clip=1.0)
        Trainer(model, mse_objective, TinyRegression(n=64), cfg).fit()
        weights.append(model.state_dict())
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k], atol=1e-6, rtol=0)


def test_warmup_then_schedules(tmp_path):
    cfg = _config(tmp_path, steps=8, warmup_steps=4, lr=0.1)
    Trainer(tiny_mlp(), mse_objective, TinyRegression(n=64), cfg).fit()
    lrs = [row["lr"] for row in _rows(tmp_path / "run")]
    assert lrs == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1, 0.1], abs=1e-12)

    cos = TrainConfig(steps=12, warmup_steps=2, lr_schedule="cosine")
    lin = TrainConfig(steps=12, warmup_steps=2, lr_schedule="linear")
    assert lr_factor(2, cos) == 1.0 and lr_factor(2, lin) == 1.0  # warm-up done
    assert lr_factor(7, cos) == pytest.approx(0.5) and lr_factor(7, lin) == pytest.approx(0.5)
    assert lr_factor(11, cos) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9)))


def test_run_files_and_checkpoint_pruning(tmp_path):
    cfg = _config(tmp_path, steps=5, ckpt_every=1, keep_checkpoints=2, ema_decay=0.9)
    trainer = Trainer(tiny_mlp(), mse_objective, TinyRegression(n=64), cfg)
    metrics = trainer.fit()
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step_00000004", "step_00000005"]  # no leftover temporary or half-deleted directories
    ckpt = run / "checkpoints" / "step_00000005"
    assert {p.name for p in ckpt.iterdir()} == {
        "model.safetensors", "ema.safetensors", "train_state.pt", "rng_rank0.pt"}
    for name in ("metrics.csv", "loss.png", "model.safetensors", "ema.safetensors"):
        assert (run / name).is_file(), name
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = _rows(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert {"loss", "mae", "grad_norm", "lr", "time"} <= rows[0].keys()
    assert metrics["step"] == 5 and metrics["loss"] == rows[-1]["loss"]
    # The EMA model is a copy holding the averaged weights.
    ema = trainer.ema_model()
    ema_file = load_file(str(run / "ema.safetensors"))
    assert ema is not trainer.model
    assert torch.equal(ema.state_dict()["0.weight"], ema_file["0.weight"])
    assert not torch.equal(ema_file["0.weight"], trainer.model.state_dict()["0.weight"])


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(4, 1)
        self.b = nn.Linear(4, 1)


def _two_head_objective(model: _TwoHeads, batch, opt_idx: int) -> dict:
    x, y = batch
    if opt_idx == 0:  # depends on both heads: b's gradient here must not leak into pass 1
        return {"loss": F.mse_loss(model.a(x) + model.b(x), y)}
    return {"loss": F.mse_loss(model.a(x) * model.b(x), -y), "extra": torch.tensor(2.0)}


def test_two_optimizers_each_step_their_own_parameters(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g))
    model, reference = _TwoHeads(), _TwoHeads()
    opts = [torch.optim.SGD(model.a.parameters(), lr=0.1),
            torch.optim.SGD(model.b.parameters(), lr=0.1)]
    Trainer(model, _two_head_objective, data, _config(tmp_path, steps=1), optimizers=opts).fit()

    # Reference: step head a on loss 0, then head b on loss 1 evaluated after a's update.
    for idx, head in ((0, reference.a), (1, reference.b)):
        reference.zero_grad()
        _two_head_objective(reference, data[:], idx)["loss"].backward()
        with torch.no_grad():
            for p in head.parameters():
                p -= 0.1 * p.grad
    for k, v in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, atol=1e-6, rtol=0)
    row = _rows(tmp_path / "run")[0]
    assert {"loss_0", "loss_1", "extra", "lr_0", "lr_1", "grad_norm_0", "grad_norm_1"} <= row.keys()


def test_bf16_mixed_precision_trains_on_cpu(tmp_path):
    seen = set()

    def objective(model, batch):
        out = mse_objective(model, batch)
        seen.add(model(batch[0]).dtype)
        return out

    model = tiny_mlp(dropout=0.0)
    cfg = _config(tmp_path, steps=40, batch_size=32, log_every=10, mixed_precision="bf16")
    Trainer(model, objective, TinyRegression(n=128), cfg).fit()
    rows = _rows(tmp_path / "run")
    assert seen == {torch.bfloat16}  # the objective ran under autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert rows[-1]["loss"] < 0.7 * rows[0]["loss"]


@pytest.mark.parametrize("native", [True, False])
def test_auto_mixed_precision_is_bf16_only_where_native(tmp_path, monkeypatch, native):
    # Emulated bf16 (a CPU without AVX512-BF16/AMX) is far slower than fp32: "auto" avoids it.
    import mmgen.device

    monkeypatch.setattr(mmgen.device, "cpu_has_bf16", lambda: native)
    seen = set()

    def objective(model, batch):
        seen.add(model(batch[0]).dtype)
        return mse_objective(model, batch)

    cfg = _config(tmp_path, steps=2, batch_size=8, log_every=1, mixed_precision="auto")
    Trainer(tiny_mlp(dropout=0.0), objective, TinyRegression(n=32), cfg).fit()
    assert seen == {torch.bfloat16 if native else torch.float32}


@pytest.mark.parametrize("bad, message", [
    (dict(steps=0), "steps must be an integer >= 1"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(lr_schedule="step"), "lr_schedule='step' is unknown"),
    (dict(mixed_precision="fp8"), "mixed_precision='fp8' is unknown"),
    (dict(grad_accum=0), "grad_accum must be an integer >= 1"),
    (dict(ema_decay=1.0), "ema_decay must be in"),
    (dict(grad_clip=-1.0), "grad_clip"),
])
def test_config_validation(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad)


def test_clear_errors(tmp_path):
    data = TinyRegression(n=64)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="use mixed_precision='bf16'"):
            Trainer(tiny_mlp(), mse_objective, data, _config(tmp_path, mixed_precision="fp16"))
    with pytest.raises(ValueError, match="not divisible by world_size . grad_accum"):
        Trainer(tiny_mlp(), mse_objective, data, _config(tmp_path, batch_size=9, grad_accum=2))
    with pytest.raises(ValueError, match="fewer than one global batch"):
        Trainer(tiny_mlp(), mse_objective, TinyRegression(n=4), _config(tmp_path))
    trainer = Trainer(tiny_mlp(), mse_objective, data, _config(tmp_path))
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        trainer.fit(resume="latest")
    trainer.fit()
    with pytest.raises(FileExistsError, match="resume='latest'"):
        Trainer(tiny_mlp(), mse_objective, data, _config(tmp_path)).fit()
    with pytest.raises(TypeError, match="'loss' entry"):
        Trainer(tiny_mlp(), lambda m, b: {"mse": 1.0}, data, _config(tmp_path / "x")).fit()
    with pytest.raises(RuntimeError, match="EMA is off"):
        trainer.ema_model()


def test_resume_in_process_continues_the_same_run(tmp_path):
    data = TinyRegression(n=64, augment=0.1)
    full = tiny_mlp()
    Trainer(full, mse_objective, data, _config(tmp_path / "full", steps=6)).fit()
    Trainer(tiny_mlp(), mse_objective, data, _config(tmp_path, steps=6, ckpt_every=3)).fit()
    # Resume from the step-3 checkpoint with a fresh model; the result matches bit for bit.
    resumed = tiny_mlp(seed=99)
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000003"
    Trainer(resumed, mse_objective, data, _config(tmp_path, steps=6)).fit(resume=ckpt)
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k


def test_training_fast_path_resumes_the_same_run(tmp_path):
    """channels_last + torch.compile: the checkpoints keep the model's own names, the loss
    follows the eager run's, and resuming from a checkpoint continues bit for bit. (No
    dropout: compiled code draws its dropout masks from another generator.)"""
    data = TinyRegression(n=64, augment=0.1)
    fast = dict(channels_last=True, compile=True)
    eager = tiny_mlp(dropout=0.0)
    Trainer(eager, mse_objective, data, _config(tmp_path / "eager", steps=6)).fit()
    full = tiny_mlp(dropout=0.0)
    Trainer(full, mse_objective, data, _config(tmp_path / "full", steps=6, **fast)).fit()
    Trainer(tiny_mlp(dropout=0.0), mse_objective, data, _config(tmp_path, steps=6, ckpt_every=3,
                                                      **fast)).fit()
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000003"
    assert set(load_file(ckpt / "model.safetensors")) == set(full.state_dict())
    resumed = tiny_mlp(seed=99, dropout=0.0)
    Trainer(resumed, mse_objective, data, _config(tmp_path, steps=6, **fast)).fit(resume=ckpt)
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    losses = [[r["loss"] for r in _rows(tmp_path / name / "run")] for name in ("eager", "full")]
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-4,
                               atol=1e-6)


def test_ema_update_rule():
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.75)
    before = ema.state_dict()["weight"].clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.state_dict()["weight"], 0.75 * before + 0.25 * model.weight)


# ---------------------------------------------------------------------------------------------
# sampler
# ---------------------------------------------------------------------------------------------

def test_sampler_shards_the_same_global_batches():
    def step_samples(world: int, accum: int, steps: int = 7) -> list[list[int]]:
        iters = [iter(ShardedBatchSampler(20, 8, rank=r, world_size=world, grad_accum=accum,
                                          seed=5)) for r in range(world)]
        out = []
        for _ in range(steps):  # one optimizer step = accum micro-batches on every rank
            out.append(sorted(i for it in iters for _ in range(accum) for i in next(it)))
        return out

    assert step_samples(1, 1) == step_samples(2, 2) == step_samples(4, 1) == step_samples(1, 4)


def test_sampler_epochs_resume_and_seed():
    sampler = ShardedBatchSampler(10, 4, seed=1)
    stream = [i for _, batch in zip(range(5), sampler, strict=False) for i in batch]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert stream[:10] != stream[10:20]  # a new permutation every epoch
    resumed = ShardedBatchSampler(10, 4, seed=1)
    resumed.load_state_dict({"offset": 8, "seed": 1})
    assert next(iter(resumed)) == stream[8:12]
    other_seed = ShardedBatchSampler(10, 4, seed=2)
    assert sampler.permutation(0).tolist() != other_seed.permutation(0).tolist()
    with pytest.raises(ValueError, match="use the same seed"):
        resumed.load_state_dict({"offset": 0, "seed": 2})
