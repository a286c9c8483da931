"""Limits checked before any work starts, so impossible requests fail in milliseconds with a
message, instead of running for minutes or dying in the allocator.

Every limit has a default sized for a desktop or laptop and an environment variable that
raises (or lowers) it; the error message names both::

    MMGEN_MAX_PIXELS        pixels of one generated image         (default 2048*2048)
    MMGEN_MAX_STEPS         sampler steps                         (default 1000)
    MMGEN_MAX_IMAGES        images of one generation call         (default 1000)
    MMGEN_MAX_BATCH_PIXELS  pixels of one network batch           (default 1024*1024)
    MMGEN_MAX_INPUT_PIXELS  pixels of an image file mmgen decodes (default 8192*8192)
    MMGEN_MAX_MODEL_GB      memory of a model's weights, estimated from its config before
                            anything is allocated            (default: this machine's RAM)

Seeds of generated images are integers in ``[0, SEED_MAX]`` (what ``torch.Generator``
takes); image ``i`` of a call uses ``seed + i``, so the last seed must be in range too.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

SEED_MAX = 2**64 - 1


@dataclass(frozen=True)
class Limit:
    name: str  # what is limited, for messages ("pixels per image")
    env: str  # the environment variable that overrides the default
    default: float  # the default value

    @property
    def value(self) -> float:
        """The current limit: ``$env`` if set (a positive number), else the default."""
        text = os.environ.get(self.env)
        if not text:
            return self.default
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not value > 0 or math.isinf(value):
            raise ValueError(f"{self.env}={text!r}: expected a positive number")
        return value

    def check(self, amount: float, what: str) -> None:
        """A ``LimitError`` if ``amount`` exceeds this limit; ``what`` names the amount, e.g.
        "5,000 steps"."""
        limit = self.value
        if amount > limit:
            raise LimitError(f"{what} is over the limit of {_fmt(limit)} {self.name}; set "
                             f"the environment variable {self.env} to raise it if you mean it")


class LimitError(ValueError):
    """A request bigger than a limit of :mod:`mmgen.limits` (raise the limit to allow it)."""


def _fmt(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else f"{value:,.1f}"


def _memory_bytes() -> float:
    """Physical memory of this machine (inf where it cannot be read)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return math.inf


MAX_PIXELS = Limit("pixels per image", "MMGEN_MAX_PIXELS", 2048 * 2048)
MAX_STEPS = Limit("steps", "MMGEN_MAX_STEPS", 1000)
MAX_IMAGES = Limit("images per call", "MMGEN_MAX_IMAGES", 1000)
MAX_BATCH_PIXELS = Limit("pixels per network batch", "MMGEN_MAX_BATCH_PIXELS", 1024 * 1024)
MAX_INPUT_PIXELS = Limit("pixels per input image", "MMGEN_MAX_INPUT_PIXELS", 8192 * 8192)
MAX_MODEL_GB = Limit("GB of model weights", "MMGEN_MAX_MODEL_GB", _memory_bytes() / 2**30)


def check_seed(seed: Any, count: int = 1, what: str = "seed") -> int:
    """``seed`` as an int if it and the ``count - 1`` seeds after it are in
    ``[0, SEED_MAX]``; a ``ValueError`` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{what} must be a whole number, got {seed!r}")
    if not 0 <= seed <= SEED_MAX - (count - 1):
        top = SEED_MAX - (count - 1)
        why = "" if count == 1 else f"; {count} images use seeds {what}..{what}+{count - 1}"
        raise ValueError(f"{what} must be in [0, {top}] (seeds go up to 2**64 - 1{why}), "
                         f"got {seed}")
    return seed


def check_image_size(height: int, width: int, what: str = "image") -> None:
    """Height and width of a generated image within ``MAX_PIXELS``."""
    MAX_PIXELS.check(height * width, f"{what} size {width}x{height} ({height * width:,} pixels)")


def check_model_bytes(n_bytes: float, what: str) -> None:
    """Memory of a model's weights within ``MAX_MODEL_GB``."""
    MAX_MODEL_GB.check(n_bytes / 2**30, f"{what} ({n_bytes / 2**30:,.1f} GB of weights)")
