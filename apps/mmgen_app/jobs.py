"""What every tab's request goes through: per-user cancellation, progress, result files, and
turning errors into one clear line in the UI.

A request never touches shared mutable state: models are read-only (:mod:`.models`), every
call gets its own sampler, generators and output folder, and the only per-user state is the
cancel flag of the user's current job, keyed by Gradio's session.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from mmgen.cli.errors import USER_ERRORS, one_line
from mmgen.diffusion.denoise import GenerationCancelled

log = logging.getLogger("mmgen.app")

# The default of a handler's ``progress`` argument: Gradio gives each event its own tracker in
# its place (a handler called directly, e.g. by a test, reports to nobody).
PROGRESS = gr.Progress()

# Keyword arguments of every event that runs a model: one concurrency group for all tabs, its
# limit the queue's default (AppConfig.concurrency).
JOBS = {"concurrency_id": "jobs"}

def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Gradio handler: a user error (what the CLI prints as one line and exit 2:
    ``mmgen.cli.errors.USER_ERRORS``) becomes ``gr.Error`` with the same one-line message, a
    cancelled job says so, and an unexpected error (a bug) is logged with its traceback and
    shown as one "internal error" line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except GenerationCancelled:
            raise gr.Error("Cancelled.", title="Cancelled") from None
        except USER_ERRORS as e:
            raise gr.Error(one_line(e), print_exception=False) from None
        except Exception as e:  # a bug: the log has the traceback, the user a line
            log.exception("internal error in %s", fn.__name__)
            raise gr.Error(f"internal error ({type(e).__name__}: {one_line(e)}); the server "
                           "log has the details", print_exception=False) from None
        finally:
            release_memory()

    return wrapper


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC = _libc()


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process (``mallopt(M_ARENA_MAX)``, what
    ``MALLOC_ARENA_MAX`` sets at start-up); call it before threads start allocating.

    Why: Gradio runs each job on a thread of a pool of up to 40, and glibc gives threads
    arenas of their own, each holding on to its freed memory. Measured with
    ``scripts/app_load.py``, the server grew by about 1 MB per request over 100 requests
    without the cap; with ``MALLOC_ARENA_MAX=2`` it stayed flat (docs/app.md). Returns whether
    the cap was set (False off glibc: musl, macOS, Windows)."""
    try:
        return _LIBC is not None and _LIBC.mallopt(-8, arenas) == 1  # -8: M_ARENA_MAX
    except AttributeError:
        return False


def release_memory() -> None:
    """Hand the memory a finished job freed back to the system (glibc's ``malloc_trim``)."""
    try:
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
    except AttributeError:  # not glibc
        pass


class Jobs:
    """The cancel flag of each user's current job (one per Gradio session)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, threading.Event] = {}

    @contextlib.contextmanager
    def job(self, request: gr.Request | None) -> Iterator[threading.Event]:
        """A fresh cancel flag for this user's new job, forgotten when the job ends (unless
        a newer job of the same user replaced it)."""
        flag, key = threading.Event(), _session(request)
        with self._lock:
            self._flags[key] = flag
        try:
            yield flag
        finally:
            with self._lock:
                if self._flags.get(key) is flag:
                    del self._flags[key]

    def cancel(self, request: gr.Request | None) -> None:
        """Stop this user's current job (at its next step); other users' jobs go on."""
        with self._lock:
            flag = self._flags.get(_session(request))
        if flag is not None:
            flag.set()

    def __len__(self) -> int:
        return len(self._flags)


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "api"


class StepProgress:
    """A library step callback that moves the user's Gradio progress bar and stops the job
    when the user's cancel flag is set (returning False cancels)."""

    def __init__(self, progress: gr.Progress | None, flag: threading.Event, total: int,
                 desc: str):
        self.progress, self.flag, self.total, self.desc = progress, flag, max(total, 1), desc
        self.done = 0
        self._shown = -1.0

    def images(self, i: int, t: int, latents: Any) -> bool:
        """Diffusion: ``callback(i, t, latents)`` after each step of a batch of images."""
        return self.advance(len(latents))

    def evals(self, done: int, total: int) -> bool:
        """Style transfer: ``callback(done, total)`` after each loss evaluation."""
        self.total = max(total, 1)
        return self.advance(done - self.done)

    def advance(self, n: int) -> bool:
        self.done += n
        fraction = min(self.done / self.total, 1.0)
        if self.progress is not None and fraction - self._shown >= 0.01:  # at most 100 updates
            self._shown = fraction
            self.progress(fraction, desc=f"{self.desc} {self.done}/{self.total}")
        return not self.flag.is_set()


class Outputs:
    """A folder of result PNGs, one sub-folder per job; jobs older than ``keep_s`` seconds are
    deleted when a new one starts (Gradio keeps its own copy of what it served)."""

    def __init__(self, root: Path | None, keep_s: float):
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="mmgen-app-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep_s = keep_s

    def job_dir(self) -> Path:
        """A new, empty folder for one job's results."""
        cutoff = time.time() - self.keep_s
        for old in self.root.iterdir():
            try:
                if old.is_dir() and old.stat().st_mtime < cutoff:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:  # removed by a concurrent job
                pass
        return Path(tempfile.mkdtemp(dir=self.root, prefix="job-"))
