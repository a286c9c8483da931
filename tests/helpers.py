"""Small pieces several test files share (imported like cli_runner)."""

import importlib.util
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]


def train_steps(model, objective, batch, params=None, steps=10, lr=1e-3) -> list[float]:
    """Adam on one fixed batch (``params``: default all of the model's); every step's loss."""
    opt = torch.optim.Adam(model.parameters() if params is None else params, lr)
    losses = []
    for _ in range(steps):
        loss = objective(model, batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def save_weights(state, folder, suffix, name="weights"):
    """``state`` as ``folder/name.safetensors``, or as a plain-dict ``torch.save`` file (what
    the reference repositories publish) for any other suffix."""
    path = folder / f"{name}{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(dict(state), path)
    return path


def load_script(relative: str):
    """The module of a script of the repository, e.g. ``load_script("benchmarks/style.py")``
    (registered in ``sys.modules``, where dataclasses look their module up)."""
    path = ROOT / relative
    name = f"{path.parent.name}_{path.stem}"  # scripts_style_results, benchmarks_style
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
