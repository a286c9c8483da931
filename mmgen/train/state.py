"""What a training run leaves on disk: checkpoints, RNG states, metrics.csv and the loss plot.

A checkpoint is one directory, ``out_dir/checkpoints/step_{N:08d}/``, created atomically
(written under a temporary name, then renamed), holding::

    model.safetensors     the model's state dict
    ema.safetensors       the fp32 EMA weights (only when EMA is on)
    train_state.pt        step, optimizer/scheduler/grad-scaler states, data position, logs
    rng_rank{r}.pt        python/numpy/torch(/cuda) RNG states of process r, one per process

Everything loads through safetensors or ``torch.load(weights_only=True)``, so RNG states are
stored as tensors, lists and ints only.
"""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mmgen.checkpoint import atomic_path, load_state_dict, safe_torch_load, save_state_dict
from mmgen.checkpoint import torch_save as atomic_torch_save

CHECKPOINT_PREFIX = "step_"


# ---------------------------------------------------------------------------------------------
# RNG states
# ---------------------------------------------------------------------------------------------

def capture_rng() -> dict[str, Any]:
    """The global python, numpy, torch CPU (and CUDA) RNG states of this process."""
    version, internal, gauss_next = random.getstate()
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss_next],
        "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached_gaussian],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set the global RNGs to a state returned by :func:`capture_rng`."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss,
                         cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------
# Checkpoint directories
# ---------------------------------------------------------------------------------------------

def checkpoint_dir(out_dir: str | Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives."""
    return Path(out_dir) / "checkpoints" / f"{CHECKPOINT_PREFIX}{step:08d}"


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary directories are skipped)."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if (p / "train_state.pt").is_file()]
    return sorted(found)  # zero-padded step numbers sort correctly as strings


def write_checkpoint(path: Path, model_state: dict[str, torch.Tensor],
                     ema_state: dict[str, torch.Tensor] | None, train_state: dict[str, Any],
                     rng_states: list[dict[str, Any]]) -> None:
    """Write a whole checkpoint directory atomically (see the module docstring)."""
    with atomic_path(path) as tmp:
        tmp.mkdir()
        save_state_dict(model_state, tmp / "model.safetensors")
        if ema_state is not None:
            save_state_dict(ema_state, tmp / "ema.safetensors")
        for rank, rng in enumerate(rng_states):
            atomic_torch_save(rng, tmp / f"rng_rank{rank}.pt")
        # train_state.pt last: its presence marks a checkpoint as complete.
        atomic_torch_save(train_state, tmp / "train_state.pt")


def read_checkpoint(path: Path, rank: int) -> dict[str, Any]:
    """Load a checkpoint directory for process ``rank``.

    Returns a dict with ``model``, ``ema`` (or None), ``train_state`` and ``rng`` (or None if
    the checkpoint was written by fewer processes than ``rank + 1``).
    """
    if not (path / "train_state.pt").is_file():
        raise FileNotFoundError(
            f"{path} is not a complete checkpoint (no train_state.pt); pass a "
            f"'{CHECKPOINT_PREFIX}NNNNNNNN' directory from out_dir/checkpoints or 'latest'."
        )
    ema = path / "ema.safetensors"
    rng = path / f"rng_rank{rank}.pt"
    return {
        "model": load_state_dict(path / "model.safetensors"),
        "ema": load_state_dict(ema) if ema.is_file() else None,
        "train_state": safe_torch_load(path / "train_state.pt"),
        "rng": safe_torch_load(rng) if rng.is_file() else None,
    }


def prune_checkpoints(out_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (call when no checkpoint is being written).

    Each victim is first renamed to a hidden name (atomic), so an interrupted deletion never
    leaves a half-deleted directory that looks like a checkpoint.
    """
    for old in list_checkpoints(out_dir)[:-keep]:
        trash = old.with_name(f".{old.name}.deleting")
        old.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    # Hidden leftovers of writes or deletions cut short by an earlier kill.
    for stale in (Path(out_dir) / "checkpoints").glob(f".{CHECKPOINT_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# metrics.csv and loss.png
# ---------------------------------------------------------------------------------------------

class MetricsLog:
    """Rows of logged scalars, mirrored to ``metrics.csv`` and plotted to ``loss.png``.

    Args:
        out_dir: directory of the two files.
        enabled: write files (True on the main process only); rows are kept either way.
    """

    def __init__(self, out_dir: str | Path, enabled: bool):
        self.csv_path = Path(out_dir) / "metrics.csv"
        self.png_path = Path(out_dir) / "loss.png"
        self.enabled = enabled
        self.rows: list[dict[str, float]] = []
        self._fields: list[str] = []

    def reset(self) -> None:
        """Start an empty log (a fresh run)."""
        self.rows, self._fields = [], []
        if self.enabled:
            self.csv_path.unlink(missing_ok=True)

    def truncate(self, step: int) -> None:
        """Reload metrics.csv keeping only rows up to ``step`` (drops rows of a killed run)."""
        self.rows, self._fields = [], []
        if self.csv_path.is_file():
            with open(self.csv_path, newline="") as f:
                for raw in csv.DictReader(f):
                    try:
                        row = {k: float(v) for k, v in raw.items() if k and v not in ("", None)}
                    except ValueError:  # a line cut short by a kill
                        continue
                    if "step" in row and row["step"] <= step:
                        self.rows.append(row)
        if self.enabled:
            self._rewrite()

    def append(self, row: dict[str, float]) -> None:
        """Add one row; the file is rewritten only when a new column appears."""
        self.rows.append(row)
        if not self.enabled:
            return
        if any(k not in self._fields for k in row) or not self.csv_path.is_file():
            self._rewrite()
            return
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._fields).writerow(_fmt(row))

    def _rewrite(self) -> None:
        self._fields = []
        for row in self.rows:
            self._fields += [k for k in row if k not in self._fields]
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.csv_path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._fields or ["step"])
            writer.writeheader()
            writer.writerows(_fmt(r) for r in self.rows)

    def plot(self) -> None:
        """Write ``loss.png``: every logged column whose name contains 'loss', against step."""
        if not self.enabled or not self.rows:
            return
        fig = Figure(figsize=(7, 4), layout="tight")
        FigureCanvasAgg(fig)  # attaches a non-interactive canvas; no pyplot global state
        ax = fig.add_subplot()
        keys = [k for k in self._fields if "loss" in k]
        for key in keys:
            points = [(r["step"], r[key]) for r in self.rows if key in r]
            ax.plot(*zip(*points, strict=True), label=key)
        if keys and all(r[k] > 0 for r in self.rows for k in keys if k in r):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if keys:
            ax.legend()
        with atomic_path(self.png_path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)


def _fmt(row: dict[str, float]) -> dict[str, str]:
    # repr() round-trips floats exactly, so two runs' logs can be compared bit for bit.
    return {k: str(int(v)) if k == "step" else repr(float(v)) for k, v in row.items()}
