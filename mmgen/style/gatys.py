"""Neural style transfer by optimisation (Gatys, Ecker & Bethge 2016, "Image Style Transfer
Using Convolutional Neural Networks", CVPR).

The output image x minimises (eq. 7, plus a total-variation smoothness term)::

    L(x) = alpha * L_content(x, content) + strength^3 * beta * L_style(x, styles) + gamma * TV(x)

over its pixels, with the losses of :mod:`mmgen.style.losses` on the activations of a frozen
:class:`~mmgen.style.features.FeatureNetwork`. Coarse to fine (as Gatys et al. 2017,
"Controlling Perceptual Factors in Neural Style Transfer", do for high resolutions): the first
stage optimises at the smallest scale; each later stage starts from the previous result,
upsampled. Most evaluations happen at the small scales, where they are cheap: with the
default (random) feature network and schedule a 512 px image takes about a minute on one
CPU thread.

    net = feature_network("random")
    out = gatys(content, style, net)  # [0, 1] tensors (1, 3, H, W) -> (1, 3, h, w)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mmgen.data.images import fit_long_side
from mmgen.diffusion.denoise import GenerationCancelled
from mmgen.style.color import luminance_only
from mmgen.style.features import FeatureNetwork
from mmgen.style.images import check_images
from mmgen.style.losses import StyleTargets, content_loss, style_loss, total_variation

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")


@dataclass
class GatysConfig:
    """Weights, schedule and layers of one optimisation; defaults suit the random network."""

    content_weight: float = 1.0  # alpha of eq. 7
    style_weight: float = 1e6  # beta of eq. 7 (Grams are normalised by C*H*W, see losses)
    tv_weight: float = 1.0  # weight of the squared total variation (removes speckle)
    # Long side in px of each stage, coarse to fine; the output's long side is the last.
    scales: tuple[int, ...] = (128, 256, 512)
    steps: tuple[int, ...] = (200, 120, 60)  # loss evaluations (forward + backward) per stage
    optimizer: str = "lbfgs"  # "lbfgs" (Gatys et al., with strong-Wolfe line search) or "adam"
    lr: float = 1.0  # step size: 1.0 for L-BFGS; about 0.02 for Adam on [0, 1] pixels
    init: str = "content"  # first-stage start: the content image or uniform noise
    content_layers: tuple[str, ...] = ("relu4_2",)  # as in Gatys et al. 2016
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    style_scale: float = 1.0  # style images' long side relative to each stage's scale
    seed: int = 0  # seeds the noise init (the rest is deterministic)

    def __post_init__(self) -> None:
        for name in ("scales", "steps", "content_layers", "style_layers"):  # lists from JSON
            if isinstance(getattr(self, name), list):
                setattr(self, name, tuple(getattr(self, name)))
        if not self.scales or len(self.scales) != len(self.steps):
            raise ValueError(f"GatysConfig needs one steps entry per scale, got scales="
                             f"{self.scales} and steps={self.steps}; e.g. scales=(256, 512), "
                             "steps=(200, 50)")
        if list(self.scales) != sorted(self.scales) or min(self.steps) < 0:
            raise ValueError(f"GatysConfig.scales must grow (coarse to fine) and steps be >= 0, "
                             f"got scales={self.scales}, steps={self.steps}")
        if self.optimizer not in OPTIMIZERS or self.init not in INITS:
            raise ValueError(f"GatysConfig: optimizer must be one of {OPTIMIZERS} and init one "
                             f"of {INITS}, got {self.optimizer!r} and {self.init!r}")
        weights = (self.content_weight, self.style_weight, self.tv_weight)
        if min(weights) < 0 or self.lr <= 0 or self.style_scale <= 0:
            raise ValueError(f"GatysConfig: weights must be >= 0 and lr, style_scale > 0, got "
                             f"weights {weights}, lr={self.lr}, style_scale={self.style_scale}")
        if not self.content_layers or not self.style_layers:
            raise ValueError("GatysConfig needs at least one content and one style layer")


def gatys_losses(net: FeatureNetwork, image: torch.Tensor, targets: StyleTargets,
                 config: GatysConfig, strength: float = 1.0) -> dict[str, torch.Tensor]:
    """The loss terms of eq. 7 for ``image`` (1, 3, H, W): ``content``, ``style``, ``tv``
    (unweighted) and ``total`` (weighted; the style weight is :func:`style_weight`)."""
    layers = list(dict.fromkeys([*targets.content, *targets.grams]))
    features = net(image, layers)  # {layer: (1, C_l, H_l, W_l)}
    terms = {"content": content_loss(features, targets.content),
             "style": style_loss(features, targets.grams),
             "tv": total_variation(image)}
    terms["total"] = (config.content_weight * terms["content"]
                      + style_weight(config, strength) * terms["style"]
                      + config.tv_weight * terms["tv"])
    return terms


def style_weight(config: GatysConfig, strength: float) -> float:
    """beta * strength^3. The look changes with the logarithm of alpha / beta (Gatys et al.
    2016 vary it over four decades), so a linear scale would put nearly all the visible
    change below 0.1; the cube makes 0.5 (beta / 8) a visible half-way, keeps 0 -> no style
    and 1 -> the configured beta, and 2 gives 8 beta."""
    return config.style_weight * strength**3


def gatys(content: torch.Tensor, style: torch.Tensor | Sequence[torch.Tensor],
          feature_net: FeatureNetwork, config: GatysConfig | None = None, strength: float = 1.0,
          preserve_color: bool = False, progress: bool = True,
          blend: Sequence[float] | None = None,
          callback: Callable[[int, int], Any] | None = None) -> torch.Tensor:
    """Paint ``content`` in the style of ``style`` by optimising the pixels.

    Args:
        content: (N, 3, H, W) in [0, 1]; each image is optimised on its own.
        style: (S, 3, H_s, W_s) in [0, 1], or a list of such tensors (sizes may differ);
            every image is a style, their Grams blended by ``blend``.
        feature_net: the frozen feature network (:func:`~mmgen.style.features.feature_network`).
        config: weights and schedule; ``None`` for :class:`GatysConfig` defaults.
        strength: how much style, >= 0: the style weight is beta * strength^3
            (:func:`style_weight`); 0 returns the content (resized to the output size, not
            optimised), 0.5 is about half-way, 1 the configured balance.
        preserve_color: keep the content's colours: the output's luminance with the content's
            chroma (Gatys et al. 2016b, :func:`~mmgen.style.color.luminance_only`). For the
            paper's other method, pass the style through :func:`~mmgen.style.color.match_color`.
        progress: show a tqdm bar with the current loss.
        blend: one weight per style image (normalised to sum 1); ``None``: equal weights.
        callback: ``callback(done, total)`` after each loss evaluation (a web app's progress
            bar); returning False stops with :class:`GenerationCancelled`.

    Returns:
        (N, 3, h, w) in [0, 1], the content's aspect ratio with long side ``config.scales[-1]``.
    """
    config = config or GatysConfig()
    content = check_images(content, "content", "gatys")
    styles = [s for t in ([style] if isinstance(style, torch.Tensor) else style)
              for s in check_images(t, "style", "gatys").split(1)]  # each (1, 3, H_s, W_s)
    if not styles:
        raise ValueError("gatys needs at least one style image")
    if not (math.isfinite(strength) and strength >= 0):
        raise ValueError(f"strength must be a finite number >= 0, got {strength}")
    if strength == 0:
        return resize_long(content, config.scales[-1]).clamp(0, 1)
    _check_scales(feature_net, content, config)
    bar = tqdm(total=content.shape[0] * sum(config.steps), desc="style transfer", unit="eval",
               disable=not progress, leave=False)
    with bar:
        out = torch.cat([_transfer(c, styles, feature_net, config, strength, blend, bar,
                                   callback) for c in content.split(1)])  # (N, 3, h, w)
    if preserve_color:
        out = luminance_only(out, content)
    return out


def _transfer(content: torch.Tensor, styles: list[torch.Tensor], net: FeatureNetwork,
              config: GatysConfig, strength: float, blend: Sequence[float] | None,
              bar: tqdm, callback: Callable[[int, int], Any] | None) -> torch.Tensor:
    """One content image (1, 3, H, W) through every stage -> (1, 3, h, w) in [0, 1]."""
    generator = torch.Generator().manual_seed(config.seed)
    image: torch.Tensor | None = None
    for scale, steps in zip(config.scales, config.steps, strict=True):
        stage_content = resize_long(content, scale)  # (1, 3, h_k, w_k)
        stage_styles = [resize_long(s, round(scale * config.style_scale)) for s in styles]
        targets = StyleTargets.compute(net, stage_content, stage_styles, config.content_layers,
                                       config.style_layers, blend)  # once per stage
        if image is None:
            image = (stage_content.clone() if config.init == "content" else
                     torch.rand(stage_content.shape, generator=generator).to(stage_content))
        else:  # coarse to fine: the last stage's result, upsampled, is the new start
            image = F.interpolate(image, size=stage_content.shape[-2:], mode="bilinear",
                                  align_corners=False)
        bar.set_description(f"style transfer {stage_content.shape[-1]}x"
                            f"{stage_content.shape[-2]}")
        image = _optimise(net, image, targets, config, strength, steps, bar, callback)
    return image.clamp(0, 1)


def _optimise(net: FeatureNetwork, image: torch.Tensor, targets: StyleTargets,
              config: GatysConfig, strength: float, steps: int, bar: tqdm,
              callback: Callable[[int, int], Any] | None = None) -> torch.Tensor:
    """``steps`` loss evaluations of L-BFGS or Adam on the pixels of ``image`` (1, 3, h, w)."""
    # the only tensor with a gradient; contiguous, as L-BFGS flattens its gradient with view
    x = image.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    if steps == 0:
        return x.detach()
    evals = 0

    def closure() -> torch.Tensor:
        nonlocal evals
        optimizer.zero_grad(set_to_none=True)
        loss = gatys_losses(net, x, targets, config, strength)["total"]
        loss.backward()
        evals += 1
        if evals <= steps:
            bar.update(1)
            if callback is not None and callback(bar.n, bar.total) is False:
                raise GenerationCancelled("style transfer cancelled")
        bar.set_postfix(loss=f"{loss.item():.4g}", refresh=False)
        return loss

    if config.optimizer == "lbfgs":
        # One call runs the whole stage; tolerances 0 so it uses the budget it was given.
        optimizer = torch.optim.LBFGS([x], lr=config.lr, max_iter=steps, max_eval=steps,
                                      tolerance_grad=0.0, tolerance_change=0.0,
                                      history_size=50, line_search_fn="strong_wolfe")
        optimizer.step(closure)
    else:
        optimizer = torch.optim.Adam([x], lr=config.lr)
        for _ in range(steps):
            optimizer.step(closure)
    bar.update(max(steps - evals, 0))  # L-BFGS may stop early (converged)
    return x.detach()


def resize_long(images: torch.Tensor, long_side: int) -> torch.Tensor:
    """Resize (N, C, H, W) so max(H, W) = ``long_side``, keeping the aspect ratio (bilinear,
    antialiased when shrinking); unchanged if it already has that size."""
    size = _long_size(images.shape[-2:], long_side)
    if size == tuple(images.shape[-2:]):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False,
                         antialias=long_side < max(images.shape[-2:]))


def _long_size(size: Sequence[int], long_side: int) -> tuple[int, int]:
    """(h, w) scaled so that max(h, w) = long_side, aspect ratio kept."""
    w, h = fit_long_side(size[1], size[0], long_side)
    return h, w


def _check_scales(net: FeatureNetwork, content: torch.Tensor, config: GatysConfig) -> None:
    """The first stage's short side must reach the deepest layer (a clear error otherwise)."""
    need = net.min_size([*config.content_layers, *config.style_layers])
    h, w = _long_size(content.shape[-2:], config.scales[0])
    if min(h, w) < need:
        raise ValueError(f"the first scale {config.scales[0]} gives {h}x{w} px, but layers "
                         f"{[*config.content_layers, *config.style_layers]} need >= {need} px "
                         "a side; raise GatysConfig.scales[0] or use shallower layers")
