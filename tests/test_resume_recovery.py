"""``Trainer.fit(resume=...)`` when checkpoints are damaged.

A run of the tiny task (tests/train_scripts/tiny_task.py: dropout, EMA and noise augmentation
from the global RNG) crashes after step 5, leaving checkpoints at steps 2 and 4. One file of
the newest checkpoint is then damaged; ``resume="latest"`` must warn, resume from step 2,
rewrite step 4 and end bitwise equal to an uninterrupted run. If nothing is usable, or the
user names a damaged checkpoint, the error must say which file and what to do, and leave the
trainer untouched.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from faults import truncate
from test_trainer import _assert_same_weights

from mmgen.checkpoint import save_state_dict
from mmgen.train import TrainConfig, Trainer

sys.path.insert(0, str(Path(__file__).parent / "train_scripts"))
from tiny_task import TinyRegression, mse_objective, tiny_mlp  # noqa: E402

DATA = TinyRegression(n=64, augment=0.1)


class _Crash(Exception):
    """Stands for a kill of the training process."""


def _config(out: Path, **overrides) -> TrainConfig:
    base = dict(steps=6, batch_size=8, lr=1e-2, grad_clip=0.0, out_dir=str(out), log_every=1,
                ckpt_every=2, keep_checkpoints=3, ema_decay=0.9, seed=3)
    return TrainConfig(**{**base, **overrides})


def _crash_at(step: int) -> Callable:
    def callback(trainer: Trainer, done: int, logs: dict) -> None:
        if done == step:
            raise _Crash
    return callback


def _crashed_run(out: Path) -> Path:
    """A run killed during step 5: checkpoints at steps 2 and 4. Returns its checkpoints dir."""
    trainer = Trainer(tiny_mlp(), mse_objective, DATA, _config(out), callbacks=[_crash_at(5)])
    with pytest.raises(_Crash):
        trainer.fit()
    root = out / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step_00000002", "step_00000004"]
    return root


def _resume(out: Path, resume="latest", **overrides) -> Trainer:
    """Continue the run in ``out`` with a differently initialised model."""
    trainer = Trainer(tiny_mlp(seed=99), mse_objective, DATA, _config(out, **overrides))
    trainer.fit(resume=resume)
    return trainer


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    Trainer(tiny_mlp(), mse_objective, DATA, _config(out)).fit()
    return out


def _fallback_warning(root: Path, broken: str, file: str, reason: str = "",
                      used: str = "step_00000002") -> str:
    """The pattern of the warning about skipping ``root/broken`` because of ``file``
    (``reason``: a pattern of what is wrong with it)."""
    return (f"checkpoint {re.escape(str(root / broken))} is unusable "
            f"\\({re.escape(file)}.*{reason}.*\\); resuming from the older checkpoint {used} "
            "instead")


# ---------------------------------------------------------------------------------------------
# ways to damage a checkpoint file
# ---------------------------------------------------------------------------------------------

def _empty(file: Path) -> None:
    file.write_bytes(b"")


def _foreign_dict(file: Path) -> None:
    torch.save({"step": "x"}, file)


def _step_of_wrong_type(file: Path) -> None:
    state = torch.load(file, weights_only=True)
    torch.save({**state, "step": "x"}, file)


def _other_architecture(file: Path) -> None:
    save_state_dict(tiny_mlp(hidden=16).state_dict(), file)


@pytest.mark.parametrize("file, damage, reason", [
    pytest.param("model.safetensors", truncate, "is not a readable safetensors file",
                 id="model-truncated"),
    pytest.param("model.safetensors", _other_architecture, "the weights do not fit",
                 id="model-of-another-architecture"),
    pytest.param("ema.safetensors", truncate, "is not a readable safetensors file",
                 id="ema-truncated"),
    pytest.param("train_state.pt", truncate, "is truncated or damaged", id="state-truncated"),
    pytest.param("train_state.pt", _empty, "is truncated or damaged", id="state-empty"),
    pytest.param("train_state.pt", _foreign_dict, "train_state has no 'sampler' entry",
                 id="state-foreign-dict"),
    pytest.param("train_state.pt", _step_of_wrong_type,
                 "train_state\\['step'\\] is a str, expected int", id="state-step-is-str"),
    pytest.param("rng_rank0.pt", truncate, "is truncated or damaged", id="rng-truncated"),
    pytest.param("rng_rank0.pt", _foreign_dict, "does not hold RNG states written by mmgen",
                 id="rng-foreign-dict"),
])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(
        uninterrupted, tmp_path, file, damage, reason):
    out = tmp_path / "run"
    root = _crashed_run(out)
    damage(root / "step_00000004" / file)
    with pytest.warns(UserWarning, match=_fallback_warning(root, "step_00000004", file, reason)):
        trainer = _resume(out)
    assert trainer.step == 6
    _assert_same_weights(uninterrupted, out)
    # Step 4 was trained again and its checkpoint rewritten over the damaged one.
    _assert_same_weights(uninterrupted / "checkpoints" / "step_00000004", root / "step_00000004")
    assert sorted(p.name for p in root.iterdir()) == [
        "step_00000002", "step_00000004", "step_00000006"]


def test_checkpoints_written_before_reaching_the_broken_step_are_kept(uninterrupted, tmp_path):
    # Resumed with a checkpoint every step and only one kept, the step-3 checkpoint must not
    # be pruned in favour of the damaged (newer) step 4: a second crash resumes from step 3.
    out = tmp_path / "run"
    root = _crashed_run(out)
    truncate(root / "step_00000004" / "model.safetensors")
    again = dict(ckpt_every=1, keep_checkpoints=1)
    trainer = Trainer(tiny_mlp(seed=99), mse_objective, DATA, _config(out, **again),
                      callbacks=[_crash_at(4)])  # crashes before step 4 is checkpointed
    with pytest.warns(UserWarning, match="resuming from the older checkpoint step_00000002"):
        with pytest.raises(_Crash):
            trainer.fit(resume="latest")
    assert sorted(p.name for p in root.iterdir()) == ["step_00000003", "step_00000004"]
    with pytest.warns(UserWarning, match=_fallback_warning(
            root, "step_00000004", "model.safetensors", used="step_00000003")):
        _resume(out, **again)
    assert sorted(p.name for p in root.iterdir()) == ["step_00000006"]
    _assert_same_weights(uninterrupted, out)


def test_no_usable_checkpoint_is_an_error_that_changes_nothing(tmp_path):
    out = tmp_path / "run"
    root = _crashed_run(out)
    truncate(root / "step_00000002" / "model.safetensors")
    _empty(root / "step_00000004" / "train_state.pt")
    trainer = Trainer(tiny_mlp(seed=99), mse_objective, DATA, _config(out))
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    rng = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning when there is nothing to fall to
        with pytest.raises(ValueError, match="found no usable checkpoint") as err:
            trainer.fit(resume="latest")
    message = str(err.value)
    assert "step_00000004: train_state.pt is truncated or damaged" in message
    assert "step_00000002: model.safetensors is not a readable safetensors file" in message
    assert f"delete {root} (or use a new out_dir)" in message
    assert "repair or restore the damaged files" in message
    assert "\n" not in message
    assert trainer.step == 0 and trainer.optimizers[0].state_dict()["state"] == {}
    assert all(torch.equal(v, weights[k]) for k, v in trainer.model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert sorted(p.name for p in root.iterdir()) == ["step_00000002", "step_00000004"]


def test_explicit_damaged_checkpoint_is_an_error_naming_the_file(tmp_path):
    out = tmp_path / "run"
    root = _crashed_run(out)
    broken = root / "step_00000004" / "ema.safetensors"
    truncate(broken)
    trainer = Trainer(tiny_mlp(seed=99), mse_objective, DATA, _config(out))
    with pytest.raises(ValueError, match=f"cannot resume from .*{re.escape(str(broken))} is not "
                                         "a readable safetensors file.*resume='latest'"):
        trainer.fit(resume=root / "step_00000004")
    assert trainer.step == 0
