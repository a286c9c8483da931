"""Classifier recipes: MNIST LeNet-5 / ResNet-18 and the Shapes attribute classifier.

A recipe is data: which registered model, which dataset and augmentation, which
``TrainConfig``, and the accuracy it must reach. :func:`run_classifier` turns it into a
trained, evaluated model folder whose ``config.json`` records the measured results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from mmgen.cnn.train import Augmented, ClassificationObjective, accuracy, affine_augmentation
from mmgen.recipes.export import export_results
from mmgen.registry import create_model, model_dir
from mmgen.train import TrainConfig, Trainer

DATASETS = ("mnist", "mnist32", "shapes")


@dataclass
class ClassifierRecipe:
    model: str  # registered architecture, e.g. "cnn/lenet5"
    data: str  # one of DATASETS
    train: TrainConfig  # steps, batch size, learning rate, ...
    model_args: dict[str, Any] = field(default_factory=dict)  # config overrides
    augment: bool = True  # random affine (digits) / noise + blur (Shapes) during training
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    targets: dict[str, float] = field(default_factory=dict)  # minimum accuracy per eval key
    description: str = ""  # one line for `mmgen train --list`

    def run(self, out_dir: str | Path, name: str, resume: bool = False) -> dict[str, float]:
        """Train, evaluate and export (see :func:`run_classifier`)."""
        return run_classifier(self, out_dir, name, resume)


# ----------------------------------------------------------------------------- data


class _ShapesItems(Dataset):
    """Shapes items as ``(image in [-1, 1], {attribute: label})`` pairs.

    ``split=None`` draws uniformly from all 1,296 combinations, the held-out pairs included:
    the attribute classifier is a *judge* of generated images, so it must know every
    combination a prompt can ask for. (The held-out pairs are held out from generative models.)
    """

    def __init__(self, split: str | None, length: int, seed: int = 0):
        from mmgen.data import shapes

        self.split, self.length, self.seed = split, length, seed
        self.dataset = shapes.ShapesDataset(split, size=64, length=length, seed=seed) \
            if split else None
        self.combinations = shapes.all_combinations()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        from mmgen.data import shapes

        if self.dataset is not None:
            item = self.dataset[i]
            return item["image"], {a: item[a] for a in shapes.ATTRIBUTES}
        k = np.random.default_rng([self.seed, 7919, i]).integers(len(self.combinations))
        attrs = self.combinations[k]
        image = shapes.to_tensor(shapes.render_array(attrs))
        return image, dict(zip(shapes.ATTRIBUTES, attrs.labels, strict=True))


def _shapes_augmentation() -> v2.Transform:
    """Imperfections of generated images (blur, noise, small colour shifts), never geometry:
    position and size are labels."""
    return v2.Compose([
        v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.2))], p=0.5),
        v2.RandomApply([v2.Lambda(lambda x: x + 0.08 * torch.rand(()) * torch.randn_like(x))],
                       p=0.5),
        v2.RandomApply([v2.Lambda(lambda x: x + 0.1 * (torch.rand(3, 1, 1) - 0.5))], p=0.5),
    ])


def build_data(recipe: ClassifierRecipe) -> tuple[Dataset, dict[str, Dataset], dict[str, Any]]:
    """(training set, evaluation sets by name, preprocessing facts for ``model.info``)."""
    if recipe.data in ("mnist", "mnist32"):
        from mmgen.data.mnist import MNIST

        pad = recipe.data == "mnist32"
        norm = v2.Normalize([0.5], [0.5])  # [0, 1] -> [-1, 1]
        aug = v2.Compose([affine_augmentation(), norm]) if recipe.augment else norm
        train = Augmented(MNIST("train", pad_to_32=pad), aug)
        evals = {"test": Augmented(MNIST("test", pad_to_32=pad), norm)}
        pre = {"size": 32 if pad else 28, "channels": 1, "mean": [0.5], "std": [0.5],
               "invert_light_background": True}
        return train, evals, {"labels": [str(d) for d in range(10)], "preprocess": pre}
    if recipe.data == "shapes":
        from mmgen.data.shapes import CLASS_NAMES

        train: Dataset = _ShapesItems(None, length=recipe.train.steps * recipe.train.batch_size)
        if recipe.augment:
            train = Augmented(train, _shapes_augmentation())
        evals: dict[str, Dataset] = {
            s: _ShapesItems(s, length=2000) for s in ("test", "test_compositional")}
        # Robustness: the same images with generation-like blur/noise/colour shifts.
        evals["test_compositional_perturbed"] = Augmented(
            _ShapesItems("test_compositional", length=2000), _shapes_augmentation())
        pre = {"size": 64, "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3}
        return train, evals, {"labels": {k: list(v) for k, v in CLASS_NAMES.items()},
                              "preprocess": pre}
    raise ValueError(f"unknown dataset {recipe.data!r}; choose from {DATASETS}")


# ----------------------------------------------------------------------------- running


def run_classifier(recipe: ClassifierRecipe, out_dir: str | Path, name: str,
                   resume: bool = False) -> dict[str, float]:
    """Train, evaluate and export ``recipe``.

    Writes ``out_dir/model`` (fp16 safetensors + config.json holding labels, preprocessing,
    the recipe and the measured results) and ``out_dir/results.json``. The results are
    measured on the exported fp16 weights, i.e. on exactly what gets bundled.

    Returns:
        The results: accuracy per evaluation set (and per attribute), training seconds.
    """
    out_dir = Path(out_dir)
    train_set, evals, info = build_data(recipe)
    cfg = replace(recipe.train, out_dir=str(out_dir / "run"))
    torch.manual_seed(cfg.seed)
    model = create_model(recipe.model, **recipe.model_args)
    trainer = Trainer(model, ClassificationObjective(recipe.label_smoothing), train_set, cfg)
    start = time.perf_counter()
    trainer.fit(resume="latest" if resume else None)
    final = trainer.ema_model() if trainer.ema is not None else model
    final.model_name = recipe.model
    final.info = {**info, "recipe": name, "train_seconds": round(trainer.elapsed, 1)}
    folder = final.save_pretrained(out_dir / "model", dtype=torch.float16)
    results = evaluate(folder, evals)
    results["train_seconds"] = round(trainer.elapsed, 1)
    export_results(final, folder, out_dir, name, recipe, results, start)
    return results


def evaluate(folder: str | Path, evals: dict[str, Dataset]) -> dict[str, float]:
    """Accuracy of the saved model at ``folder`` on each evaluation set."""
    from mmgen.registry import PretrainedModel

    model = PretrainedModel.from_pretrained(model_dir(folder))
    torch.manual_seed(0)  # perturbed evaluation sets draw from torch's RNG
    results = {}
    for split, dataset in evals.items():
        for key, value in accuracy(model, dataset).items():
            results[f"{split}/{key}"] = round(value, 5)
    return results


def missed_targets(results: dict[str, float], targets: dict[str, float]) -> list[str]:
    """Targets the results did not reach, as readable lines."""
    return [f"{key}: {results.get(key, float('nan')):.4f} < {goal}"
            for key, goal in targets.items() if not results.get(key, 0.0) >= goal]


# ----------------------------------------------------------------------------- the recipes

_SHAPES_TARGETS = {f"{s}/{a}": 0.995 for s in ("test", "test_compositional")
                   for a in ("color", "shape", "size", "position", "background")}

CLASSIFIER_RECIPES: dict[str, ClassifierRecipe] = {
    "mnist-lenet5": ClassifierRecipe(
        model="cnn/lenet5", data="mnist", model_args={"input_size": 28, "dropout": 0.1},
        train=TrainConfig(steps=6000, batch_size=128, lr=3e-3, lr_schedule="cosine",
                          warmup_steps=200, weight_decay=0.05, ema_decay=0.999,
                          ckpt_every=1000, log_every=100, seed=0),
        targets={"test/accuracy": 0.98},
        description="LeNet-5 (ReLU/max-pool) on the 4,000 MNIST training digits",
    ),
    "mnist-resnet18": ClassifierRecipe(
        model="cnn/resnet18", data="mnist32",
        model_args={"stem": "small", "in_channels": 1, "num_classes": 10},
        train=TrainConfig(steps=1500, batch_size=64, lr=2e-3, lr_schedule="cosine",
                          warmup_steps=100, weight_decay=0.05, ema_decay=0.998,
                          mixed_precision="auto", ckpt_every=100, log_every=25, seed=0),
        targets={"test/accuracy": 0.985},
        description="ResNet-18 with a 3x3 small stem on 32x32-padded MNIST digits",
    ),
    "shapes-classifier": ClassifierRecipe(
        model="cnn/attribute_net", data="shapes",
        model_args={"heads": {"color": 6, "shape": 4, "size": 2, "position": 9, "background": 3}},
        train=TrainConfig(steps=1500, batch_size=64, lr=2e-3, lr_schedule="cosine",
                          warmup_steps=100, weight_decay=0.05, ema_decay=0.998,
                          mixed_precision="auto",
                          ckpt_every=250, log_every=50, seed=0),
        label_smoothing=0.0, targets=_SHAPES_TARGETS,
        description="attribute classifier (colour/shape/size/position/background) on Shapes",
    ),
}
