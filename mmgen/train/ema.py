"""Exponential moving average (EMA) of model weights, kept as an fp32 shadow copy."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``shadow = decay * shadow + (1 - decay) * weights`` after every optimizer step.

    Floating-point parameters are averaged in fp32 (so bf16/fp16 models do not lose the small
    updates); buffers (e.g. BatchNorm statistics) and integer tensors are copied as they are.

    Args:
        model: the model whose weights are tracked (its state-dict keys are used).
        decay: the EMA decay in [0, 1); 0.999-0.9999 are typical.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.param_names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
        self.shadow: dict[str, torch.Tensor] = {
            k: (v.detach().float().clone() if v.is_floating_point() else v.detach().clone())
            for k, v in model.state_dict().items()
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow weights towards the current weights of ``model``."""
        for k, v in model.state_dict().items():
            if k in self.param_names and v.is_floating_point():
                self.shadow[k].lerp_(v.float(), 1.0 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow weights, keyed like ``model.state_dict()`` (fp32 for float tensors)."""
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore shadow weights saved by :meth:`state_dict`."""
        missing = set(self.shadow) - set(state)
        unexpected = set(state) - set(self.shadow)
        if missing or unexpected:
            raise KeyError(
                f"EMA state does not match the model: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}; was it saved for a different model?"
            )
        for k, v in state.items():
            self.shadow[k].copy_(v)

    def copy_to(self, model: nn.Module) -> nn.Module:
        """Load the EMA weights into ``model`` (cast to its dtypes) and return it."""
        model.load_state_dict(self.shadow)
        return model

    def averaged_model(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` holding the EMA weights (``model`` is left untouched)."""
        return self.copy_to(copy.deepcopy(model))
