"""Style transfer recipes (issue #19): small feed-forward models that mmgen trains on a CPU,
offline, with no ImageNet weights.

* ``style-fast-swirls``, ``style-fast-pointillism`` (:class:`FastStyleRecipe`): a
  ``style/transformer-net-small`` per style (Johnson et al. 2016), trained with
  :class:`~mmgen.style.train.FastStyleObjective` on the random loss network.
* ``style-adain`` (:class:`AdaINRecipe`): the ``style/adain-small`` decoder (Huang & Belongie
  2017), trained with :class:`~mmgen.style.train.AdaINObjective` behind a seeded, calibrated
  random encoder (:func:`~mmgen.style.train.random_encoder`) that ships inside the model file.

Content data: random crops of the bundled photos that are not also styles
(:func:`content_photos`), from the photos resized to each of ``photo_sizes`` (a random scale)
and flipped left-right at random. Among the procedural styles, swirls and pointillism
transfer best through the random network (in Gatys optimisations at 256 px with the fast
objective's layers and weights: colour and texture distances to the style halved); mosaic's
tiles do not come out at these scales (its texture distance barely moves).

Evaluation (:meth:`StyleRecipe.evaluate`) runs on the exported fp16 model. Every photo of
``eval_photos`` is stylized whole, resized and center-cropped to ``eval_size`` (256) px, with
every evaluation style drawn at ``eval_size`` (fast: its one style; AdaIN: the ``held_out``
styles, never seen in training). These photos also give training crops: what is measured is
the transfer of whole images at the evaluation scale, not generalisation to unseen photos.
Results (means over the (photo, style) pairs; :func:`stylization_results`):

    style_loss_reduction         S(content) / S(output), geometric mean; S is the Gram style
                                 loss on feature_network("random") at FAST_STYLE_LAYERS against
                                 the style image. The issue asks for >= 10. The fast models
                                 are trained on this very loss, so the next two rows check
                                 the claim with pixel statistics (mmgen.metrics.style).
    color_distance_reduction     colour histogram distance content-style / output-style
                                 (> 1: the output's colours are nearer the style's)
    texture_distance_reduction   the same with the texture distance (LBP + gradients)
    structure_similarity         edge correlation of output and content at sigma = 2 px;
                                 target 0.5: unrelated pairs score about 0 (photo vs photo
                                 or vs a style image: -0.06 to 0.04), Gatys' optimisation at
                                 the fast recipes' weights 0.6-0.9 (swirls 0.75-0.86,
                                 pointillism 0.60-0.68)
    seconds_per_512px            one 512 x 512 image (AdaIN: and a 512 px style), median of
                                 3 after a warm-up, on the evaluating machine's threads

and the raw distances (``color_distance``, ``color_distance_content``, ...), the worst pair's
style loss reduction and structure similarity.
"""

from __future__ import annotations

import math
import statistics
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset
from torchvision.transforms import v2

from mmgen.data.photos import PhotoPatches, list_photos, load_photo
from mmgen.metrics.style import color_histogram_distance, structure_similarity, texture_distance
from mmgen.recipes.base import Recipe, Setup, register_recipes
from mmgen.registry import PretrainedModel, create_model
from mmgen.style.features import FeatureNetwork, feature_network
from mmgen.style.losses import gram_matrix, style_loss
from mmgen.style.styles import list_styles, load_style
from mmgen.style.train import (
    FAST_STYLE_LAYERS,
    AdaINObjective,
    FastStyleObjective,
    StylePairs,
    random_encoder,
)
from mmgen.train import TrainConfig

CROPS = 100_000  # items of a training set (the sampler cycles; a longer run sees them again)
EVAL_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
# (content (1, 3, H, W), style (1, 3, Hs, Ws)) -> stylized (1, 3, H, W), all in [0, 1]
Stylizer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def content_photos() -> list[str]:
    """The bundled photos that serve as content: every photo that is not also a style."""
    return [name for name in list_photos("photo") if name not in list_styles()]


def photo_crops(patch_size: int, photo_sizes: Sequence[int], seed: int) -> Dataset:
    """Random ``patch_size`` crops of :func:`content_photos`, from the photos resized (short
    side) to each of ``photo_sizes`` in turn, flipped left-right with probability 1/2 (the
    global torch RNG, which checkpoints restore); items ``(image (3, P, P) in [0, 1], k)``."""
    flip = v2.RandomHorizontalFlip()
    parts = [PhotoPatches(content_photos(), patch_size, CROPS // len(photo_sizes),
                          seed=seed + i, transform=flip, photo_size=size)
             for i, size in enumerate(photo_sizes)]
    return ConcatDataset(parts)


def image_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL RGB image as a (1, 3, H, W) float tensor in [0, 1]."""
    return TF.to_tensor(image)[None]


@torch.no_grad()
def stylization_results(contents: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor],
                        styles: Sequence[torch.Tensor],
                        net: FeatureNetwork | None = None) -> dict[str, float]:
    """The evaluation numbers of the module docstring for (content, output, style) triples.

    Args:
        contents: (1, 3, H, W) images in [0, 1].
        outputs: their stylized versions, (1, 3, H, W) in [0, 1].
        styles: the style image of each pair, (1, 3, Hs, Ws) in [0, 1].
        net: the loss network of the style loss (default ``feature_network("random")``).
    """
    net = net or feature_network("random")
    reductions, color, texture, structure = [], [], [], []
    for content, output, style in zip(contents, outputs, styles, strict=True):
        grams = {k: gram_matrix(v) for k, v in net(style, FAST_STYLE_LAYERS).items()}
        before = style_loss(net(content, FAST_STYLE_LAYERS), grams)
        after = style_loss(net(output, FAST_STYLE_LAYERS), grams)
        reductions.append(float(before / after.clamp_min(1e-12)))
        color.append((color_histogram_distance(content, style),
                      color_histogram_distance(output, style)))
        texture.append((texture_distance(content, style), texture_distance(output, style)))
        structure.append(structure_similarity(output, content))
    results = {
        "style_loss_reduction": math.exp(statistics.fmean(math.log(r) for r in reductions)),
        "style_loss_reduction_min": min(reductions),
        "structure_similarity": statistics.fmean(structure),
        "structure_similarity_min": min(structure),
    }
    for name, pairs in (("color_distance", color), ("texture_distance", texture)):
        before, after = (statistics.fmean(v) for v in zip(*pairs, strict=True))
        results |= {name: after, f"{name}_content": before,
                    f"{name}_reduction": before / max(after, 1e-12)}
    return {k: round(v, 4) for k, v in results.items()}


@dataclass(kw_only=True)
class StyleRecipe(Recipe):
    """What both style recipes share: the content data and the evaluation."""

    patch_size: int = 128  # side of the training crops (px)
    photo_sizes: tuple[int, ...] = (256, 384)  # short sides the photos are cropped at
    eval_photos: tuple[str, ...] = EVAL_PHOTOS  # photos stylized whole in the evaluation
    eval_size: int = 256  # side of the evaluated photos and style images (px)
    timing_size: int = 512  # side of the timed image (px)

    @abstractmethod
    def eval_styles(self) -> list[str]:
        """Names of the styles the evaluation applies."""

    @abstractmethod
    def stylizer(self, model: torch.nn.Module) -> Stylizer:
        """How the exported model stylizes one content image with one style image."""

    def evaluate(self, folder: Path, setup: Setup) -> dict[str, float]:
        stylize = self.stylizer(PretrainedModel.from_pretrained(folder).float())
        contents, outputs, styles = [], [], []
        for style_name in self.eval_styles():
            style = image_tensor(load_style(style_name, self.eval_size))
            for photo in self.eval_photos:
                content = image_tensor(load_photo(photo, self.eval_size))
                contents.append(content)
                outputs.append(stylize(content, style))
                styles.append(style)
        results = stylization_results(contents, outputs, styles)
        return results | {"seconds_per_512px": self.time_one(stylize)}

    def time_one(self, stylize: Stylizer) -> float:
        """Median seconds of 3 stylizations of a ``timing_size`` image, after a warm-up."""
        content = image_tensor(load_photo(self.eval_photos[0], self.timing_size))
        style = image_tensor(load_style(self.eval_styles()[0], self.timing_size))
        stylize(content, style)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            stylize(content, style)
            times.append(time.perf_counter() - start)
        return round(statistics.median(times), 3)


@dataclass(kw_only=True)
class FastStyleRecipe(StyleRecipe):
    """A TransformerNet for one style (Johnson et al. 2016)."""

    style: str  # one of list_styles()
    model: str = "style/transformer-net-small"  # registered TransformerNet preset
    model_args: dict[str, Any] = field(default_factory=dict)  # config overrides
    style_size: int = 256  # side at which the style image's Grams are taken (px)
    content_weight: float = 1.0  # FastStyleObjective.content_weight
    style_weight: float = 1e6  # FastStyleObjective.style_weight
    tv_weight: float = 1.0  # FastStyleObjective.tv_weight

    def setup(self, out_dir: Path, resume: bool) -> Setup:
        model = create_model(self.model, **self.model_args)
        style = image_tensor(load_style(self.style, self.style_size))  # (1, 3, S, S)
        objective = FastStyleObjective(style, content_weight=self.content_weight,
                                       style_weight=self.style_weight,
                                       tv_weight=self.tv_weight)
        data = photo_crops(self.patch_size, self.photo_sizes, self.train.seed)
        return Setup(model, objective, data, info={
            "style": self.style, "style_size": self.style_size,
            "loss_network": "feature_network('random')", "content": content_photos()})

    def eval_styles(self) -> list[str]:
        return [self.style]

    def stylizer(self, model: torch.nn.Module) -> Stylizer:
        return lambda content, style: model.stylize(content)


@dataclass(kw_only=True)
class AdaINRecipe(StyleRecipe):
    """The decoder of an AdaIN model (Huang & Belongie 2017) behind a random encoder."""

    model: str = "style/adain-small"  # registered AdaINModel preset
    model_args: dict[str, Any] = field(default_factory=dict)  # config overrides
    encoder_seed: int = 0  # seed of random_encoder
    held_out: tuple[str, ...] = ("immunohistochemistry", "waves")  # styles for evaluation
    #   only; every other style of list_styles() is trained on
    style_size: int = 512  # side at which styles are drawn before random-scale crops (px)
    style_weight: float = 10.0  # AdaINObjective.style_weight (the paper's lambda)

    def setup(self, out_dir: Path, resume: bool) -> Setup:
        unknown = sorted(set(self.held_out) - set(list_styles()))
        if unknown or not self.train_styles():
            raise ValueError(f"held_out must name some (not all) of {list_styles()}, got "
                             f"{list(self.held_out)}")
        model = create_model(self.model, **self.model_args)
        model.encoder.load_state_dict(random_encoder(self.encoder_seed).state_dict())
        content = photo_crops(self.patch_size, self.photo_sizes, self.train.seed)
        data = StylePairs(content, self.train_styles(), self.patch_size, self.style_size,
                          seed=self.train.seed + len(self.photo_sizes))
        optimizer = torch.optim.Adam(model.decoder.parameters(), lr=self.train.lr)
        return Setup(model, AdaINObjective(self.style_weight), data, optimizers=[optimizer],
                     info={"encoder": f"random_encoder(seed={self.encoder_seed}): seeded, "
                                      "LSUV-calibrated, not ImageNet VGG weights",
                           "train_styles": self.train_styles(),
                           "held_out_styles": list(self.held_out),
                           "content": content_photos()})

    def train_styles(self) -> list[str]:
        return [name for name in list_styles() if name not in self.held_out]

    def eval_styles(self) -> list[str]:
        return list(self.held_out)

    def stylizer(self, model: torch.nn.Module) -> Stylizer:
        return model.stylize


# Targets, from the issue and the measurements in the module docstring: style loss >= 10x
# lower than the content's, colour and texture nearer the style's than the content's were,
# contours kept (structure >= 0.5).
TARGETS = {"style_loss_reduction": 10.0, "color_distance_reduction": 1.0,
           "texture_distance_reduction": 1.0, "structure_similarity": 0.5}
# Steps for 30-60 min on one thread: through the Trainer (data, step, EMA), measured with
# OMP_NUM_THREADS=1 on a busy 2-core machine, 0.31 s/step (fast: 128 px, batch 4; ~36 min)
# and 1.5 s/step (AdaIN: 96 px, batch 8; ~46 min); checkpoints every ~3-4 min.
FAST_TRAIN = TrainConfig(steps=7000, batch_size=4, lr=1e-3, lr_schedule="cosine",
                         warmup_steps=100, ema_decay=0.999, ckpt_every=500, log_every=50, seed=0)

STYLE_RECIPES: dict[str, StyleRecipe] = {
    "style-fast-swirls": FastStyleRecipe(
        style="swirls", train=FAST_TRAIN, targets=dict(TARGETS),
        description="fast style transfer (Johnson et al.), swirls, small TransformerNet, "
                    "random loss network",
    ),
    "style-fast-pointillism": FastStyleRecipe(
        style="pointillism", style_weight=3e6, train=FAST_TRAIN, targets=dict(TARGETS),
        description="fast style transfer (Johnson et al.), pointillism, small TransformerNet, "
                    "random loss network",
    ),
    "style-adain": AdaINRecipe(
        patch_size=96,
        train=TrainConfig(steps=1800, batch_size=8, lr=5e-4, lr_schedule="cosine",
                          warmup_steps=100, ema_decay=0.995, ckpt_every=150, log_every=25,
                          seed=0),
        targets=dict(TARGETS),
        description="arbitrary style transfer (AdaIN), small decoder, random calibrated "
                    "encoder, evaluated on held-out styles",
    ),
}
register_recipes(STYLE_RECIPES)
