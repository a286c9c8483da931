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
import json
import os
import pickle
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)


class UnsafeCheckpointError(RuntimeError):
    """A pickle-based file needs more than tensors and containers to load; refused."""


class CorruptCheckpointError(ValueError):
    """A weight or state file is truncated or damaged; the message names the file."""


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


def write_new(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write the file ``path`` atomically, never replacing an existing file.

    ``write(tmp)`` writes the whole content under a temporary name in the destination folder;
    it then gets its final name through a hard link, which fails if the name exists
    (``FileExistsError``). A crash leaves no half-written file behind.
    """
    path = Path(path)
    with _written(path.parent, write) as tmp:
        if not _claim(tmp, path):
            raise FileExistsError(f"{path} exists; not replacing it")
    return path


def write_file(path: str | os.PathLike, write: Callable[[Path], None],
               overwrite: bool = True) -> Path:
    """``write(tmp)`` then rename onto ``path``, atomically; with ``overwrite=False`` an
    existing ``path`` is a ``FileExistsError`` (:func:`write_new`, checked atomically)."""
    if not overwrite:
        return write_new(path, write)
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_numbered(folder: str | os.PathLike, write: Callable[[Path], None],
                   name: Callable[[int], str]) -> Path:
    """Write a new file ``folder/name(n)``, ``n`` one more than the highest number that
    starts a file name there (``00012-...``), atomically and never replacing a file.

    Concurrent writers (threads or processes, on one machine) each get their own number: the
    choice is made under an exclusive lock of the folder where the OS has one (``flock``),
    and a name is claimed with a hard link, which fails if it exists.
    """
    folder = Path(folder)
    with _written(folder, write) as tmp, _locked(folder):
        numbers = (re.match(r"(\d+)-", p.name) for p in folder.iterdir())
        n = max((int(m.group(1)) for m in numbers if m), default=0) + 1
        while not _claim(tmp, folder / name(n)):
            n += 1
        return folder / name(n)


@contextlib.contextmanager
def _written(folder: Path, write: Callable[[Path], None]) -> Iterator[Path]:
    """A temporary file in ``folder`` holding what ``write`` wrote (flushed to disk);
    removed afterwards (its content lives on under the name it was linked to)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".new.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        _fsync(tmp)
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock of ``folder`` (a no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: names stay unique through _claim, numbers may repeat
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _claim(tmp: Path, target: Path) -> bool:
    """Give ``tmp``'s content the name ``target`` unless it exists (atomic test-and-set)."""
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links on this file system: reserve the name, then move onto it
        try:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        os.replace(tmp, target)
        return True


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb+") as f:
            os.fsync(f.fileno())


def read_json(path: str | os.PathLike) -> Any:
    """Parse the JSON file ``path``; a ``FileNotFoundError`` or ``ValueError`` naming the file
    (invalid JSON or UTF-8, nesting too deep for the parser) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {path.name} in {path.parent}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    except RecursionError:
        raise ValueError(f"{path} is not valid JSON: nested too deeply") from None


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
    if not Path(path).is_file():
        raise FileNotFoundError(f"no file at {path}")
    try:
        with warnings.catch_warnings():  # torch's note on pickle protocols is noise here
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path} is a pickle that needs arbitrary code to load, so mmgen refuses it "
            "(only tensors and plain containers are allowed). Convert it to .safetensors "
            f"in an environment you trust. Detail: {str(e).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        # torch's zip reader: "PytorchStreamReader failed ...", EOFError for an empty file.
        raise CorruptCheckpointError(
            f"{path} is truncated or damaged: torch.load failed ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def load_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` with a clear error for a truncated or damaged file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no weight file at {path}")
    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError (not exported as a stable class), OSError
        raise CorruptCheckpointError(
            f"{path} is not a readable safetensors file; it is truncated or damaged "
            f"({_first_line(e)})") from None


def safetensors_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a ``.safetensors`` file, read from its header only (cheap, and
    a truncated file is a :class:`CorruptCheckpointError`)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no weight file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as e:  # SafetensorError, OSError
        raise CorruptCheckpointError(
            f"{path} is not a readable safetensors file; it is truncated or damaged "
            f"({_first_line(e)})") from None


def check_shapes(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]],
                 what: str) -> None:
    """A ``ValueError`` listing missing, unexpected and mis-shaped tensors of ``found``
    against ``expected`` (a model's state dict shapes); ``what`` names the file and model."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{k} {list(found[k])} (expected {list(expected[k])})" for k in sorted(expected)
              if k in found and tuple(found[k]) != tuple(expected[k])]
    problems = [f"{label} {len(items)}: {', '.join(items[:3])}{', ...' if len(items) > 3 else ''}"
                for label, items in (("missing", missing), ("unexpected", unexpected),
                                     ("wrong shape", shapes)) if items]
    if problems:
        raise ValueError(f"{what}: the weights do not fit ({'; '.join(problems)})")


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a flat tensor dict from ``.safetensors`` or (safely) from a pickle-based file.

    Lightning/SD-style ``{"state_dict": {...}}`` wrappers are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weight file at {path}")
    if path.suffix == ".safetensors":
        return load_safetensors(path)
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
