"""Watching a one-step generator (GAN, VAE) while it trains, so that a collapse shows up in
the log during the run, not after it.

:class:`GeneratorMonitor` is a :class:`~mmgen.train.Trainer` callback. Every ``every`` steps
(and at the last) it samples the same latents and labels, lets a classifier read the samples
and logs, to ``monitor.csv`` (plotted to ``monitor.png``) in the run folder:

* ``class_entropy_bits``: the entropy of the classes read in the samples (log2 of the class
  count when every class is equally frequent; it falls as the generator collapses onto a few
  modes), ``largest_class_share``, and the histogram itself: ``share_C``, the share of
  samples read as class C (single-head classifiers);
* ``label_accuracy``: how often the classifier reads the requested label (conditional
  generators), and ``worst_label_accuracy``, the same for the weakest requested class. A
  multi-head classifier (``head`` returns ``{attribute: logits}``, e.g. the Shapes one) reads
  every attribute: then a sample is right when all are, the weakest is the attribute read
  right least often, and the class counts are over attribute combinations;
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
                f"{k} {v:.4g}" for k, v in row.items()
                if k != "step" and not k.startswith("share_")))

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
        head = self.classifier.head
        logits = {k: h(features) for k, h in head.items()} if isinstance(head, nn.ModuleDict) \
            else head(features)  # (N, classes), or {attribute: (N, classes)}
        heads = list(logits.values()) if isinstance(logits, dict) else [logits]
        predicted = torch.stack([h.argmax(dim=1) for h in heads], dim=1).cpu()  # (N, K)
        features = features.float().cpu()
        _, combos = predicted.unique(dim=0, return_inverse=True)  # (N,): class or combination
        counts = torch.bincount(combos).double()
        share = counts[counts > 0] / self.num_samples
        row = {"class_entropy_bits": float(-(share * share.log2()).sum()),
               "largest_class_share": float(share.max()),
               "fid": fid(self.real_features, features).value}
        if len(heads) == 1:  # the histogram of the classes read: one column per class
            shares = torch.bincount(predicted[:, 0], minlength=heads[0].shape[1])
            row |= {f"share_{c}": float(k) / self.num_samples for c, k in enumerate(shares)}
        if self.labels is not None:
            wanted = self.labels.cpu() if len(heads) > 1 else \
                self.labels[:, self.label_column:self.label_column + 1].cpu()  # (N, K)
            right = predicted == wanted  # (N, K)
            row["label_accuracy"] = float(right.all(dim=1).double().mean())
            row["worst_label_accuracy"] = min(  # the weakest requested class / attribute
                float(right[wanted[:, 0] == c, 0].double().mean()) for c in wanted[:, 0].unique()
            ) if len(heads) == 1 else float(right.double().mean(dim=0).min())
        return images, row


def _save_grid(images: torch.Tensor, path: Path) -> None:
    from torchvision.utils import save_image

    from mmgen.checkpoint import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_image(images, tmp, nrow=int(math.ceil(math.sqrt(len(images)))), format="png")
