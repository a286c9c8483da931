"""Checked key mapping: the one place where foreign state dicts become mmgen state dicts."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

# A rename rule maps a source key to a target key, or to None to drop it on purpose.
Rename = Callable[[str], "str | None"]


class KeyMapError(ValueError):
    """The converted state dict does not fit the target model (keys or shapes)."""


def regex_rename(rules: Iterable[tuple[str, str]]) -> Rename:
    """A rename function from ``(pattern, replacement)`` regex rules, applied in order.

    A replacement of ``""`` drops the key (e.g. buffers the target recomputes).
    """
    compiled = [(re.compile(p), r) for p, r in rules]

    def rename(key: str) -> str | None:
        for pattern, repl in compiled:
            if pattern.search(key):
                if repl == "":
                    return None
                key = pattern.sub(repl, key)
        return key

    return rename


def convert_state_dict(
    source: Mapping[str, torch.Tensor],
    target: nn.Module,
    rename: Rename = lambda k: k,
    transforms: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
) -> dict[str, torch.Tensor]:
    """Rename ``source`` keys for ``target`` and check that keys and shapes match exactly.

    Args:
        source: the foreign state dict.
        target: the mmgen model the result is meant for (only its state-dict shapes are read).
        rename: source key -> target key (``None`` drops the key on purpose).
        transforms: optional per-target-key tensor transforms (e.g. reshaping a 1x1 conv
            weight into a linear weight), applied after renaming.

    Returns:
        A state dict that loads into ``target`` with ``strict=True``.

    Raises:
        KeyMapError: listing missing keys, unexpected keys and shape mismatches.
    """
    expected = target.state_dict()
    transforms = transforms or {}
    out: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in source.items():
        new = rename(key)
        if new is None:
            continue
        if new not in expected:
            unexpected.append(f"{key} -> {new}" if new != key else key)
            continue
        out[new] = transforms[new](value) if new in transforms else value
    missing = sorted(set(expected) - set(out))
    shapes = [f"{k}: got {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
              for k, v in out.items() if v.shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{name} ({len(items)}): {', '.join(items[:6])}{' ...' if len(items) > 6 else ''}"
                 for name, items in (("missing", missing), ("unexpected", unexpected),
                                     ("shape mismatch", shapes)) if items]
        raise KeyMapError(f"weights do not fit {type(target).__name__}: " + "; ".join(parts))
    return out


def load_converted(target: nn.Module, source: Mapping[str, torch.Tensor],
                   rename: Rename = lambda k: k, **kwargs) -> nn.Module:
    """:func:`convert_state_dict` then ``load_state_dict(strict=True)``; returns ``target``."""
    state = convert_state_dict(source, target, rename, **kwargs)
    target.load_state_dict(state, strict=True)
    return target
