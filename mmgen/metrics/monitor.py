"""Watching a one-step generator (GAN, VAE) while it trains, so that a collapse shows up in
the log during the run, not after it.

:class:`GeneratorMonitor` is a :class:`~mmgen.train.Trainer` callback. Every ``every`` steps
(and at the last) it samples the same latents and labels, lets a classifier read the samples
and logs, to ``monitor.csv`` (plotted to ``monitor.png``) in the run folder:

* ``class_entropy_bits``: the entropy of the classes read in the samples (log2 of the class
  count when every class is equally frequent; it falls as the generator collapses onto a few
  modes), and ``largest_class_share``;
* ``label_accuracy``: how often the classifier reads the requested label (conditional
  generators), and ``worst_label_accuracy``, the same for the weakest requested class;
* ``fid``: the Fréchet distance to real images in the classifier's feature space.

The grid of the first 64 samples goes to ``samples/step_NNNNNNNN.png``, and one line to the
console. The latents come from the monitor's own seeded generator, so watching a run does
not change it (the trainer's RNG stream is untouched).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from mmgen.metrics.fid import fid
from mmgen.train.state import MetricsLog


class GeneratorMonitor:
    """Trainer callback; see the module docstring.

    Args:
        classifier: a :class:`mmgen.cnn.Classifier` (or alike) reading images in [0, 1] after
            ``preprocess``: ``forward_features(x)`` (B, D) and ``head(features)`` (B, classes).
        real_features: classifier features of real images (N, D), the FID's reference.
        every: steps between two looks.
        num_samples: samples per look (>= 2).
        labels: the labels to request (num_samples, K), or None for an unconditional model.
        label_column: the column of ``labels`` the classifier's classes correspond to.
        preprocess: samples in [0, 1] -> the classifier's input (e.g. a resize).
        seed: seed of the fixed latents.
        batch_size: samples per generator call.
    """

    def __init__(self, classifier: nn.Module, real_features: torch.Tensor, every: int = 500,
                 num_samples: int = 500, labels: torch.Tensor | None = None,
                 label_column: int = 0,
                 preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 seed: int = 0, batch_size: int = 250):
        if every < 1 or num_samples < 2:
            raise ValueError(f"every must be >= 1 and num_samples >= 2, got {every}, "
                             f"{num_samples}")
        if labels is not None and len(labels) != num_samples:
            raise ValueError(f"got {len(labels)} labels for {num_samples} samples")
        self.classifier = classifier.eval()
        self.real_features = real_features
        self.every, self.num_samples, self.seed = every, num_samples, seed
        self.labels, self.label_column = labels, label_column
        self.preprocess = preprocess or (lambda x: x)
        self.batch_size = batch_size
        self.log: MetricsLog | None = None

    def __call__(self, trainer: Any, step: int, logs: dict[str, float]) -> None:
        if step % self.every and step != trainer.config.steps:
            return
        if self.log is None:  # first look of this process: drop rows a killed run left
            self.log = MetricsLog(trainer.out_dir, trainer.is_main_process, name="monitor")
            self.log.truncate(step - 1)
        images, row = self.look(trainer.model)
        row = {"step": float(step), **row}
        self.log.append(row)
        if trainer.is_main_process:
            self.log.plot()
            _save_grid(images[:64], Path(trainer.out_dir) / "samples" / f"step_{step:08d}.png")
            tqdm.write(f"[monitor] step {step}: " + ", ".join(
                f"{k} {v:.4g}" for k, v in row.items() if k != "step"))

    @torch.no_grad()
    def look(self, model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        """Sample the fixed latents (eval mode) and measure: (samples in [0, 1], row)."""
        model.eval()  # the trainer restores each module's mode after the callbacks
        generator = torch.Generator().manual_seed(self.seed)
        z = model.sample_latents(self.num_samples, generator)  # (N, nz)
        labels = None if self.labels is None else self.labels.to(z.device)
        images = torch.cat([
            (model(z[i:i + self.batch_size],
                   None if labels is None else labels[i:i + self.batch_size]).float() + 1) / 2
            for i in range(0, self.num_samples, self.batch_size)]).clamp(0, 1)  # (N, C, H, W)
        device = next(self.classifier.parameters()).device
        x = self.preprocess(images.to(device))
        features = self.classifier.forward_features(x)  # (N, D)
        predicted = self.classifier.head(features).argmax(dim=1).cpu()  # (N,)
        features = features.float().cpu()
        counts = torch.bincount(predicted).double()
        share = counts[counts > 0] / self.num_samples
        row = {"class_entropy_bits": float(-(share * share.log2()).sum()),
               "largest_class_share": float(share.max()),
               "fid": fid(self.real_features, features).value}
        if self.labels is not None:
            wanted = self.labels[:, self.label_column].cpu()
            right = (predicted == wanted).double()
            row["label_accuracy"] = float(right.mean())
            row["worst_label_accuracy"] = min(  # the weakest requested class
                float(right[wanted == c].mean()) for c in wanted.unique())
        return images, row


def _save_grid(images: torch.Tensor, path: Path) -> None:
    from torchvision.utils import save_image

    from mmgen.checkpoint import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_image(images, tmp, nrow=int(math.ceil(math.sqrt(len(images)))), format="png")
