"""What counts as a user error: ``main`` prints these as one line and exits 2.

Kept apart from :mod:`mmgen.cli` so that the command modules can raise :class:`CLIError`
without importing the package that imports them.
"""

from __future__ import annotations

from mmgen.checkpoint import UnsafeCheckpointError

# Exceptions that mean "the input (or the machine) said no", not "mmgen is broken": bad
# values, unknown names, unreadable, missing, corrupt or unsafe files, full disks, refused
# limits (mmgen.limits.LimitError and mmgen's other checks are ValueErrors).
USER_ERRORS = (ValueError, KeyError, OSError, UnsafeCheckpointError, MemoryError)


class CLIError(Exception):
    """A user error detected by the CLI itself (exit code 2)."""


def one_line(e: BaseException) -> str:
    """A user error as one line (what ``main`` prints after ``mmgen COMMAND: error:``; the web
    app shows the same)."""
    if isinstance(e, KeyError) and e.args:
        text = str(e.args[0])
    elif isinstance(e, MemoryError):
        text = (f"out of memory ({e or 'the allocator gave up'}); ask for less (smaller images, "
                "fewer at once) or lower the limits of docs/reliability.md")
    elif isinstance(e, OSError) and e.strerror and e.filename:  # "[Errno 2] ..." -> "f: ..."
        text = f"{e.filename}: {e.strerror}"
    else:
        text = str(e) or type(e).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())
