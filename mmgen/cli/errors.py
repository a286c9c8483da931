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
