"""Argument types shared by the commands: each turns bad text into a one-line usage error;
and :func:`out_file`, the check of an output file made before any work."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from mmgen.cli.errors import CLIError


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def pixels_at_least(low: int) -> Callable[[str], int]:
    """An argument type: a whole number of pixels, at least ``low``."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low} px, got {value}")
        return value

    return parse


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def seed(text: str, top: int = 2**64 - 1) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= top:
        raise argparse.ArgumentTypeError(f"must be in [0, {top}], got {value}")
    return value


def train_seed(text: str) -> int:
    return seed(text, top=2**32 - 1)  # numpy's seeds are 32-bit


def out_file(out: str, suffixes: tuple[str, ...], overwrite: bool) -> Path:
    """``out`` checked before any work: its suffix, and that it is new unless ``overwrite``."""
    path = Path(out)
    if path.suffix.lower() not in suffixes:
        raise CLIError(f"--out {out}: give a file ending in {' or '.join(suffixes)}")
    if path.is_dir():
        raise CLIError(f"--out {out} is a folder; give a file ending in {suffixes[0]}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; --overwrite replaces it")
    return path
