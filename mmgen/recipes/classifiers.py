"""Classifier recipes: MNIST LeNet-5 / ResNet-18 and the Shapes attribute classifier.

A recipe is data: which registered model, which dataset and augmentation, which
``TrainConfig``, and the accuracy it must reach; :func:`mmgen.recipes.base.run_recipe` turns it
into a trained, evaluated model folder whose ``config.json`` records the measured results.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from mmgen.cnn.train import Augmented, ClassificationObjective, accuracy, affine_augmentation
from mmgen.data.shapes_augment import generation_artifacts
from mmgen.data.shapes_training import ShapesItems
from mmgen.recipes.base import Recipe, Setup, register_recipes
from mmgen.registry import PretrainedModel, create_model
from mmgen.train import TrainConfig

DATASETS = ("mnist", "mnist32", "shapes")


@dataclass(kw_only=True)
class ClassifierRecipe(Recipe):
    model: str  # registered architecture, e.g. "cnn/lenet5"
    data: str  # one of DATASETS
    model_args: dict[str, Any] = field(default_factory=dict)  # config overrides
    augment: bool = True  # random affine (digits) / generation artifacts (Shapes) in training
    label_smoothing: float = 0.1  # cross-entropy label smoothing

    def setup(self, out_dir: Path, resume: bool) -> Setup:
        train, evals, info = build_data(self)
        model = create_model(self.model, **self.model_args)
        return Setup(model, ClassificationObjective(self.label_smoothing), train, info=info,
                     parts={"evals": evals})

    def evaluate(self, folder: Path, setup: Setup) -> dict[str, float]:
        """Accuracy of the saved model on each evaluation set (and per attribute)."""
        model = PretrainedModel.from_pretrained(folder)
        torch.manual_seed(0)  # perturbed evaluation sets draw from torch's RNG
        results = {}
        for split, dataset in setup.parts["evals"].items():
            for key, value in accuracy(model, dataset).items():
                results[f"{split}/{key}"] = round(value, 5)
        return results


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

        train: Dataset = ShapesItems(None, length=recipe.train.steps * recipe.train.batch_size)
        if recipe.augment:
            train = Augmented(train, generation_artifacts())
        evals: dict[str, Dataset] = {
            s: ShapesItems(s, length=2000) for s in ("test", "test_compositional")}
        # Robustness: the same images with generation-like blur/noise/colour shifts.
        evals["test_compositional_perturbed"] = Augmented(
            ShapesItems("test_compositional", length=2000), generation_artifacts())
        pre = {"size": 64, "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3}
        return train, evals, {"labels": {k: list(v) for k, v in CLASS_NAMES.items()},
                              "preprocess": pre}
    raise ValueError(f"unknown dataset {recipe.data!r}; choose from {DATASETS}")


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
        model_args={"stem": "small", "in_channels": 1, "num_classes": 10, "width": 16},
        train=TrainConfig(steps=1500, batch_size=64, lr=2e-3, lr_schedule="cosine",
                          warmup_steps=100, weight_decay=0.05, ema_decay=0.998,
                          mixed_precision="auto", ckpt_every=100, log_every=25, seed=0),
        targets={"test/accuracy": 0.985},
        description="ResNet-18 at 1/4 width (16..128 channels) with a 3x3 small stem on "
                    "32x32-padded MNIST digits",
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
register_recipes(CLASSIFIER_RECIPES)


def mnist_classifier(model: str, data: str = "mnist") -> ClassifierRecipe:
    """A recipe for any registered CNN on MNIST (``mmgen train classifier``): the
    ``mnist-lenet5`` recipe's training with ``model`` (``"resnet18"`` or ``"cnn/resnet18"``)
    made for 1-channel digits and 10 classes, on ``data`` ("mnist": 28 px, "mnist32": padded
    to 32 px, which the ResNets' 3x3 "small" stem expects)."""
    if data not in ("mnist", "mnist32"):
        raise ValueError(f"classifier data must be mnist or mnist32, got {data!r}; the Shapes "
                         "attribute classifier is the recipe shapes-classifier")
    model = model if "/" in model else f"cnn/{model}"
    args: dict[str, Any] = {"num_classes": 10, "in_channels": 1}
    if model == "cnn/lenet5":
        args["input_size"] = 28 if data == "mnist" else 32
    else:
        args["stem"] = "small"
    return replace(CLASSIFIER_RECIPES["mnist-lenet5"], model=model, data=data, model_args=args,
                   targets={}, description=f"{model} on {data}")
