"""Safe, atomic reading and writing of weight files.

Loading rules (the same everywhere in mmgen):
  * ``.safetensors`` is preferred: it holds tensors only and cannot run code.
  * ``.pt/.pth/.ckpt/.bin`` go through ``torch.load(weights_only=True)``, whose unpickler only
    rebuilds tensors and plain containers. A file that needs anything else (arbitrary classes,
    ``os.system`` gadgets, ...) is refused with :class:`UnsafeCheckpointError`; nothing in it
    is executed.

Writes are atomic: data goes to a temporary file in the destination folder, is flushed to
disk, then renamed over the target, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)


class UnsafeCheckpointError(RuntimeError):
    """A pickle-based file needs more than tensors and containers to load; refused."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    Works for files and for directories (whatever the body creates at the yielded path).
    On an exception the temporary is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # the body decides whether this becomes a file or a directory
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            # os.replace cannot replace a non-empty directory: move the old one aside first.
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            _fsync(tmp)
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb+") as f:
            os.fsync(f.fileno())


def save_state_dict(state_dict: dict[str, torch.Tensor], path: str | os.PathLike,
                    metadata: dict[str, str] | None = None) -> None:
    """Write tensors to a ``.safetensors`` file atomically (shared storage is de-duplicated)."""
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` atomically (for optimizer/RNG state that is not a flat tensor dict)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def safe_torch_load(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` with a clear error for files that need unpickling."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path} is a pickle that needs arbitrary code to load, so mmgen refuses it "
            "(only tensors and plain containers are allowed). Convert it to .safetensors "
            f"in an environment you trust. Detail: {str(e).splitlines()[0]}"
        ) from None


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a flat tensor dict from ``.safetensors`` or (safely) from a pickle-based file.

    Lightning/SD-style ``{"state_dict": {...}}`` wrappers are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weight file at {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix not in PICKLE_SUFFIXES:
        raise ValueError(
            f"{path}: unknown weight file type {path.suffix!r}; expected one of {WEIGHT_SUFFIXES}"
        )
    obj = safe_torch_load(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a flat dict of tensors (a state dict)")
    return obj
