"""The one-step generator recipes: ``mnist-dcgan``, ``shapes-dcgan`` and ``mnist-vae``.

Each exports a :class:`~mmgen.onestep.OneStepPipeline` (the network in fp16, and how it is
conditioned), so ``mmgen.load(NAME)(conditions, seed=0)`` works on the result, and is
measured through it (:mod:`mmgen.metrics.onestep`).

* The GANs (:class:`GANRecipe`): a conditional DCGAN with a projection discriminator and
  AC-GAN's auxiliary classifier (Odena et al. 2017), the paper's Adam (2e-4, beta1 = 0.5) for
  D and G, an EMA of G, and a :class:`~mmgen.metrics.monitor.GeneratorMonitor` that logs
  what the bundled classifier reads in fixed samples every ``monitor_every`` steps (so a
  collapse shows in ``run/monitor.csv`` during the run). Before export, the batch-norm
  statistics of the EMA generator are re-estimated on its own samples
  (:func:`recalibrate_batch_norm`): the EMA averages weights, but the running statistics it
  copies belong to the live generator.
* The VAE (:class:`ConvVAERecipe`): a :class:`~mmgen.vae.ConvVAE` with a Bernoulli decoder on
  MNIST binarised at 0.5, trained on the ELBO.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from mmgen.data.mnist import binarize
from mmgen.data.shapes_training import ShapesConditions
from mmgen.gan.objective import GANObjective
from mmgen.metrics.monitor import GeneratorMonitor
from mmgen.onestep import OneStepConfig, OneStepPipeline
from mmgen.recipes.base import Recipe, Setup, register_recipes
from mmgen.registry import create_model
from mmgen.train import TrainConfig
from mmgen.vae.objective import ELBOObjective

DATASETS = ("mnist", "shapes")
SHAPES_ITEMS = 1_000_000  # items of the Shapes training set (fixed: a longer run sees the
#   same batches first)


@torch.no_grad()
def recalibrate_batch_norm(model: torch.nn.Module, batches: int = 50, batch_size: int = 256,
                           seed: int = 0) -> torch.nn.Module:
    """A copy of a DCGAN whose generator's batch-norm running statistics are the exact
    averages over ``batches`` batches of its own samples (uniformly random labels)."""
    model = copy.deepcopy(model).eval()
    norms = [m for m in model.generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    generator = torch.Generator().manual_seed(seed)
    conditions = model.config.conditions
    for _ in range(batches):
        z = model.sample_latents(batch_size, generator)  # (B, nz)
        labels = torch.stack([torch.randint(0, n, (batch_size,), generator=generator)
                              for n in conditions], dim=1) if conditions else None
        model.generator(z, labels)
    for m in norms:
        m.momentum = 0.1
        m.eval()
    return model


@dataclass(kw_only=True)
class GANRecipe(Recipe):
    dataset: str  # "mnist" (class-conditional digits) or "shapes" (the five attributes)
    model: str = "gan/dcgan/mnist"  # registered DCGAN preset
    model_args: dict[str, Any] = field(default_factory=dict)  # config overrides
    loss: str = "non_saturating"  # GANObjective.loss
    aux_weight: float = 1.0  # GANObjective.aux_weight (AC-GAN)
    instance_noise: float = 0.0  # GANObjective.instance_noise
    l1_weight: float = 0.0  # GANObjective.l1_weight
    betas: tuple[float, float] = (0.5, 0.999)  # Adam's, for D and G
    monitor_every: int = 500  # steps between GeneratorMonitor looks
    eval_samples: int = 1000  # images per evaluation (MNIST); captions per split (Shapes)
    arithmetic_samples: int = 2000  # Shapes: samples the vector arithmetic's groups come from

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"GANRecipe.dataset must be one of {DATASETS}, got "
                             f"{self.dataset!r}")

    def setup(self, out_dir: Path, resume: bool) -> Setup:
        model = create_model(self.model, **self.model_args)
        lr = self.train.lr
        optimizers = [torch.optim.Adam(model.discriminator.parameters(), lr, betas=self.betas),
                      torch.optim.Adam(model.generator.parameters(), lr, betas=self.betas)]
        objective = GANObjective(self.loss, aux_weight=self.aux_weight,
                                 l1_weight=self.l1_weight, instance_noise=self.instance_noise)
        data, monitor = self._mnist() if self.dataset == "mnist" else self._shapes()
        return Setup(model, objective, data, info={"dataset": self.dataset},
                     optimizers=optimizers, callbacks=[monitor])

    def _mnist(self) -> tuple[Dataset, GeneratorMonitor]:
        from mmgen.data.mnist import MNIST
        from mmgen.hub import load
        from mmgen.metrics.onestep import lenet_input

        lenet = load("mnist-lenet5").eval()
        test = MNIST("test")
        real = torch.stack([test[i][0] for i in range(len(test))])  # (1000, 1, 28, 28)
        with torch.no_grad():
            features = lenet.forward_features(lenet_input(lenet, real))
        monitor = GeneratorMonitor(lenet, features, self.monitor_every, 1000,
                                   labels=(torch.arange(1000) % 10)[:, None],
                                   preprocess=lambda x: lenet_input(lenet, x))
        return MNIST("train", normalize=True), monitor

    def _shapes(self) -> tuple[Dataset, GeneratorMonitor]:
        from mmgen.data import shapes
        from mmgen.metrics.shapes import ShapesFeatures

        judge = ShapesFeatures()
        test = shapes.ShapesDataset("test", length=500).as_tensors()
        with torch.no_grad():
            features = judge((test["image"] + 1) / 2)
        labels = torch.stack([test[a] for a in shapes.ATTRIBUTES], dim=1)  # (500, 5)
        monitor = GeneratorMonitor(judge.classifier, features, self.monitor_every, 500,
                                   labels=labels, preprocess=lambda x: x * 2 - 1)
        data = ShapesConditions("train", SHAPES_ITEMS)
        return data, monitor

    def pipeline(self, model: torch.nn.Module) -> OneStepPipeline:
        if self.dataset == "mnist":
            config = OneStepConfig(model.info["recipe"], "class", tuple("0123456789"))
        else:
            config = OneStepConfig(model.info["recipe"], "shapes")
        return OneStepPipeline(model, config)

    def export(self, model: torch.nn.Module, setup: Setup, folder: Path) -> Path:
        calibrated = recalibrate_batch_norm(model)  # (a copy: info included)
        return self.pipeline(calibrated).save_pretrained(folder, dtype=torch.float16)

    def evaluate(self, folder: Path, setup: Setup) -> dict[str, float]:
        from mmgen.metrics.onestep import (
            mnist_generator_results,
            shapes_generator_results,
            shapes_vector_arithmetic,
        )

        pipe = OneStepPipeline.from_pretrained(folder)
        if self.dataset == "mnist":
            return mnist_generator_results(pipe, self.eval_samples)
        return shapes_generator_results(pipe, self.eval_samples) | \
            shapes_vector_arithmetic(pipe, n=self.arithmetic_samples)

    def results_folder(self, folder: Path) -> Path:
        return folder / "model"


@dataclass(kw_only=True)
class ConvVAERecipe(Recipe):
    model: str = "vae/conv/mnist"  # registered ConvVAE preset
    model_args: dict[str, Any] = field(default_factory=dict)  # config overrides
    beta: float = 1.0  # ELBOObjective.beta
    iwae_samples: int = 1000  # K of the importance-weighted test NLL

    def setup(self, out_dir: Path, resume: bool) -> Setup:
        from mmgen.data.mnist import MNIST

        model = create_model(self.model, **self.model_args)
        return Setup(model, ELBOObjective(self.beta), MNIST("train", transform=binarize),
                     info={"dataset": "mnist", "binarized": 0.5})

    def export(self, model: torch.nn.Module, setup: Setup, folder: Path) -> Path:
        pipe = OneStepPipeline(model, OneStepConfig(model.info["recipe"], "none"))
        return pipe.save_pretrained(folder, dtype=torch.float16)

    def evaluate(self, folder: Path, setup: Setup) -> dict[str, float]:
        from mmgen.data.mnist import MNIST
        from mmgen.metrics.onestep import vae_likelihood_results

        model = OneStepPipeline.from_pretrained(folder).model.float()
        results = {}
        for split in ("train", "test"):
            data = MNIST(split, transform=binarize)
            x = torch.stack([data[i][0] for i in range(1000)])  # (1000, 1, 28, 28)
            results |= vae_likelihood_results(model, x, self.iwae_samples, prefix=split)
        return results

    def results_folder(self, folder: Path) -> Path:
        return folder / "model"


ONESTEP_RECIPES = {
    "mnist-dcgan": GANRecipe(
        dataset="mnist",
        model_args={"aux_classifier": True},
        train=TrainConfig(steps=6000, batch_size=64, lr=2e-4, ema_decay=0.999,
                          ckpt_every=1000, log_every=100, seed=0),
        targets={"label_accuracy": 0.97, "worst_digit_accuracy": 0.90},
        description="class-conditional DCGAN on MNIST (projection D + AC-GAN loss, EMA)",
    ),
    # Shapes images are exact renders (flat colours, one image per attribute combination):
    # without instance noise D tells them from G's first attempts at once and G learns nothing
    # (scratch runs: gray images after 1,000 steps, with batch or spectral norm in D).
    "shapes-dcgan": GANRecipe(
        dataset="shapes",
        model="gan/dcgan/64",
        model_args={"conditions": (6, 4, 2, 9, 3), "width": 16, "latent_dim": 64,
                    "aux_classifier": True},
        instance_noise=0.1,
        train=TrainConfig(steps=6000, batch_size=64, lr=2e-4, ema_decay=0.999,
                          ckpt_every=500, log_every=100, seed=0),
        eval_samples=500,
        targets={"test/adherence_all5": 0.95, "test_compositional/adherence_all5": 0.70,
                 "arithmetic/turned": 0.80},
        description="DCGAN conditioned on the five Shapes attributes, 64 px (projection D + "
                    "AC-GAN loss, instance noise, EMA)",
    ),
    "mnist-vae": ConvVAERecipe(
        train=TrainConfig(steps=3000, batch_size=64, lr=1e-3, lr_schedule="cosine",
                          warmup_steps=100, ema_decay=0.999, ckpt_every=500, log_every=50,
                          seed=0),
        description="convolutional VAE (16-d latent, Bernoulli decoder) on binarised MNIST",
    ),
}
register_recipes(ONESTEP_RECIPES)
