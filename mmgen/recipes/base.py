"""The recipe skeleton: every recipe is a dataclass that declares what to train and how to
measure it; :func:`run_recipe` is the one run loop behind all of them.

    seed -> recipe.setup()          (model, objective, dataset)
         -> Trainer.fit()           (resumable checkpoints in out_dir/run)
         -> Trainer.final_model()   (the EMA copy, if kept)
         -> recipe.export()         (out_dir/model: fp16 safetensors + config.json)
         -> recipe.evaluate()       (on the exported weights, i.e. exactly what gets bundled)
         -> results in the model's config.json and out_dir/results.json

A new family adds a recipe by subclassing :class:`Recipe` (``setup`` and ``evaluate``, and
``export`` if the result is not one model) and registering instances with
:func:`register_recipes`; it never writes a loop.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from mmgen.checkpoint import atomic_path
from mmgen.registry import read_config, update_info
from mmgen.train import TrainConfig, Trainer

RECIPES: dict[str, Recipe] = {}


@dataclass
class Setup:
    """What a recipe trains: built by :meth:`Recipe.setup` for one run."""

    model: nn.Module  # the network the Trainer optimises
    objective: Callable[..., dict[str, Any]]  # objective(model, batch) -> {"loss": ...}
    dataset: Dataset  # training items
    collate_fn: Callable[[list[Any]], Any] | None = None  # batches of items (None: default)
    info: dict[str, Any] = field(default_factory=dict)  # facts saved with the model (labels,
    #   preprocessing, ...)
    parts: dict[str, Any] = field(default_factory=dict)  # frozen networks and anything else
    #   the export and evaluation of this run need
    optimizers: list[torch.optim.Optimizer] | None = None  # several (a GAN's D and G), or
    #   None: the Trainer's one AdamW
    callbacks: list[Callable[..., None]] = field(default_factory=list)  # Trainer callbacks
    #   (e.g. a GeneratorMonitor)


@dataclass(kw_only=True)
class Recipe(ABC):
    """Base class of every recipe; subclasses add their own fields."""

    train: TrainConfig  # steps, batch size, learning rate, ...
    targets: dict[str, float] = field(default_factory=dict)  # minimum per result key
    description: str = ""  # one line for `mmgen train --list`
    init_seed: int | None = None  # seed of torch's RNG while setup() builds the model
    #   (None: train.seed, which also seeds the run)

    @abstractmethod
    def setup(self, out_dir: Path, resume: bool) -> Setup:
        """Build the model (torch's RNG is already seeded), objective and data."""

    def export(self, model: nn.Module, setup: Setup, folder: Path) -> Path:
        """Save the trained ``model`` (eval mode, ``info`` set) to ``folder``: fp16."""
        return model.save_pretrained(folder, dtype=torch.float16)

    @abstractmethod
    def evaluate(self, folder: Path, setup: Setup) -> dict[str, float]:
        """Results of the exported model at ``folder`` (the keys ``targets`` name)."""

    def results_folder(self, folder: Path) -> Path:
        """The model folder whose ``config.json`` records the results (a pipeline's: one of
        its component folders)."""
        return folder

    def run(self, out_dir: str | Path, name: str, resume: bool = False) -> dict[str, float]:
        """Train, export and evaluate into ``out_dir`` (see :func:`run_recipe`)."""
        return run_recipe(self, out_dir, name, resume)


def run_recipe(recipe: Recipe, out_dir: str | Path, name: str,
               resume: bool = False) -> dict[str, float]:
    """Run ``recipe`` (see the module docstring).

    Writes ``out_dir/run`` (checkpoints, metrics), ``out_dir/model`` (fp16 weights and
    config.json holding the recipe name, training time and measured results) and
    ``out_dir/results.json`` (results, targets, the recipe's config, wall time).

    Args:
        recipe: what to train.
        out_dir: the run's folder.
        name: the recipe's name (recorded with the weights).
        resume: continue from the newest checkpoint in ``out_dir/run``.

    Returns:
        The results, with the training seconds.
    """
    out_dir = Path(out_dir)
    cfg = replace(recipe.train, out_dir=str(out_dir / "run"))
    torch.manual_seed(cfg.seed if recipe.init_seed is None else recipe.init_seed)
    setup = recipe.setup(out_dir, resume)
    trainer = Trainer(setup.model, setup.objective, setup.dataset, cfg,
                      optimizers=setup.optimizers, collate_fn=setup.collate_fn,
                      callbacks=setup.callbacks)
    start = time.perf_counter()
    trainer.fit(resume="latest" if resume else None)
    final = trainer.final_model()
    final.info = {**setup.info, "recipe": name, "train_seconds": round(trainer.elapsed, 1)}
    folder = recipe.export(final, setup, out_dir / "model")
    results = recipe.evaluate(folder, setup)
    results["train_seconds"] = round(trainer.elapsed, 1)
    record = recipe.results_folder(folder)
    update_info(record, {**read_config(record).get("info", {}), "results": results})
    summary = {"recipe": name, "results": results, "targets": recipe.targets,
               "recipe_config": json.loads(json.dumps(asdict(recipe), default=str)),
               "wall_seconds": round(time.perf_counter() - start, 1)}
    with atomic_path(out_dir / "results.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return results


def missed_targets(results: dict[str, float], targets: dict[str, float]) -> list[str]:
    """Targets the results did not reach, as readable lines."""
    return [f"{key}: {results.get(key, float('nan')):.4f} < {goal}"
            for key, goal in targets.items() if not results.get(key, 0.0) >= goal]


def register_recipes(recipes: dict[str, Recipe]) -> None:
    """Make ``recipes`` runnable by name (``mmgen train --recipe NAME``)."""
    for name, recipe in recipes.items():
        if name in RECIPES and RECIPES[name] is not recipe:
            raise ValueError(f"recipe {name!r} is already registered")
        RECIPES[name] = recipe


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; a clear error listing the others."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]
