"""What a training run leaves on disk: checkpoints, RNG states, metrics.csv and the loss plot.

A checkpoint is one directory, ``out_dir/checkpoints/step_{N:08d}/``, created atomically
(written under a temporary name, then renamed), holding::

    model.safetensors     the model's state dict
    ema.safetensors       the fp32 EMA weights (only when EMA is on)
    train_state.pt        step, optimizer/scheduler/grad-scaler states, data position, logs
    rng_rank{r}.pt        python/numpy/torch(/cuda) RNG states of process r, one per process

Everything loads through safetensors or ``torch.load(weights_only=True)``, so RNG states are
stored as tensors, lists and ints only. :func:`read_checkpoint` reads and checks a whole
checkpoint (every file, the structure of ``train_state.pt`` and of every process's RNG file)
before anything is restored, so a damaged checkpoint can be skipped as a whole.
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

from mmgen.checkpoint import (
    CorruptCheckpointError,
    atomic_path,
    load_state_dict,
    safe_torch_load,
    save_state_dict,
)
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
    python_state, numpy_state = _python_numpy_states(state)
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_rng(state: Any, path: Path) -> None:
    """Raise :class:`CorruptCheckpointError` unless :func:`restore_rng` can apply ``state``.

    The state is tried on throwaway generators, so the global RNGs are left untouched.
    """
    try:
        python_state, numpy_state = _python_numpy_states(state)
        random.Random().setstate(python_state)
        np.random.RandomState().set_state(numpy_state)
        torch.Generator().set_state(state["torch"])
        cuda = state.get("cuda", [])
        if not all(isinstance(s, torch.Tensor) and s.dtype == torch.uint8 for s in cuda):
            raise TypeError("'cuda' is not a list of uint8 tensors")
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise CorruptCheckpointError(
            f"{path} does not hold RNG states written by mmgen ({type(e).__name__}: {e})"
        ) from None


def _python_numpy_states(state: dict[str, Any]) -> tuple[tuple, tuple]:
    """The python and numpy parts of a :func:`capture_rng` state in their native forms."""
    version, internal, gauss_next = state["python"]
    keys, pos, has_gauss, cached_gaussian = state["numpy"]
    numpy_state = ("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached_gaussian)
    return (version, tuple(internal), gauss_next), numpy_state


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


# The structure of train_state.pt as written by Trainer._train_state, down to what restoring
# it needs (torch's optimizer/scheduler state-dict keys included). A dict lists required
# keys, a one-item list means "a list of these", a type (or tuple of types) an isinstance check.
TRAIN_STATE_SCHEMA: dict[str, Any] = {
    "step": int,
    "sampler": {"offset": int, "seed": int},
    "optimizers": [{"state": dict, "param_groups": [{"params": list}]}],
    "schedulers": [{"lr_lambdas": list}],
    "scaler": (dict, type(None)),
    "window": {"sums": dict, "steps": int},
    "last_metrics": dict,
    "elapsed": (int, float),
    "world_size": int,
    "config": dict,
}


def check_train_state(state: Any, path: Path) -> None:
    """Raise :class:`CorruptCheckpointError` unless ``state`` fits :data:`TRAIN_STATE_SCHEMA`."""
    problem = _structure_problem(state, TRAIN_STATE_SCHEMA, "train_state")
    if problem is None and state["world_size"] < 1:
        problem = f"train_state['world_size'] is {state['world_size']}, expected >= 1"
    if problem is not None:
        raise CorruptCheckpointError(
            f"{path} does not hold a training state written by mmgen: {problem}")


def _structure_problem(value: Any, schema: Any, where: str) -> str | None:
    """The first place where ``value`` departs from ``schema``, or None if it fits."""
    expected = type(schema) if isinstance(schema, (dict, list)) else schema
    if not isinstance(value, expected):
        types = expected if isinstance(expected, tuple) else (expected,)
        names = " or ".join(t.__name__ for t in types)
        return f"{where} is a {type(value).__name__}, expected {names}"
    if isinstance(schema, dict):
        missing = [key for key in schema if key not in value]
        if missing:
            return f"{where} has no {missing[0]!r} entry"
        parts = [(value[key], sub, f"{where}[{key!r}]") for key, sub in schema.items()]
    elif isinstance(schema, list):
        parts = [(item, schema[0], f"{where}[{i}]") for i, item in enumerate(value)]
    else:
        return None
    problems = (_structure_problem(*part) for part in parts)
    return next((p for p in problems if p is not None), None)


def read_checkpoint(path: Path, rank: int) -> dict[str, Any]:
    """Load and check a checkpoint directory for process ``rank``; nothing global changes.

    Every process reads and checks the RNG files of all processes (they are small), so all
    processes agree on whether a checkpoint is usable without talking to each other.

    Returns:
        A dict with ``model``, ``ema`` (or None), ``train_state`` and ``rng`` (or None if the
        checkpoint was written by fewer processes than ``rank + 1``).

    Raises:
        FileNotFoundError: ``path`` is not a complete checkpoint, or a file of it is missing.
        CorruptCheckpointError: a file is truncated, damaged or not of the expected structure.
        UnsafeCheckpointError: a ``.pt`` file needs arbitrary code to load.
    """
    if not (path / "train_state.pt").is_file():
        raise FileNotFoundError(
            f"{path} is not a complete checkpoint (no train_state.pt); pass a "
            f"'{CHECKPOINT_PREFIX}NNNNNNNN' directory from out_dir/checkpoints or 'latest'."
        )
    train_state = safe_torch_load(path / "train_state.pt")
    check_train_state(train_state, path / "train_state.pt")  # first: world_size is used below
    rngs = []
    for r in range(train_state["world_size"]):
        rngs.append(safe_torch_load(path / f"rng_rank{r}.pt"))
        check_rng(rngs[-1], path / f"rng_rank{r}.pt")
    ema = path / "ema.safetensors"
    return {
        "model": load_state_dict(path / "model.safetensors"),
        "ema": load_state_dict(ema) if ema.is_file() else None,
        "train_state": train_state,
        "rng": rngs[rank] if rank < len(rngs) else None,
    }


def prune_checkpoints(out_dir: str | Path, keep: int, step: int) -> None:
    """Delete all but the newest ``keep`` checkpoints up to ``step`` (the run's current step;
    call when no checkpoint is being written).

    Checkpoints of later steps are left alone: they belong to a run resumed from an earlier
    checkpoint (e.g. because the newest was damaged), which replaces them when it gets there.
    Counting them would delete the fresh checkpoints and keep only the later ones.
    Each victim is first renamed to a hidden name (atomic), so an interrupted deletion never
    leaves a half-deleted directory that looks like a checkpoint.
    """
    last = checkpoint_dir(out_dir, step).name
    done = [p for p in list_checkpoints(out_dir) if p.name <= last]  # zero-padded: sorts as str
    for old in done[:-keep]:
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
        name: the files' names (``NAME.csv`` / ``NAME.png``) for a log other than the
            trainer's: that one's plot shows every column, not only the losses.
    """

    def __init__(self, out_dir: str | Path, enabled: bool, name: str | None = None):
        self.csv_path = Path(out_dir) / f"{name or 'metrics'}.csv"
        self.png_path = Path(out_dir) / f"{name or 'loss'}.png"
        self.plotted = "" if name else "loss"  # the plot's columns: names holding this
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
        """Write the plot (``loss.png``: every column whose name contains 'loss'), against
        step."""
        if not self.enabled or not self.rows:
            return
        fig = Figure(figsize=(7, 4), layout="tight")
        FigureCanvasAgg(fig)  # attaches a non-interactive canvas; no pyplot global state
        ax = fig.add_subplot()
        keys = [k for k in self._fields if self.plotted in k and k != "step"]
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
