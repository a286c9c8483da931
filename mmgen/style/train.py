"""Training the two feed-forward style transfer methods with :class:`mmgen.train.Trainer`
(issue #19): objectives ``objective(model, batch) -> {"loss": ...}`` and their data.

* :class:`FastStyleObjective` trains a :class:`~mmgen.style.TransformerNet` for one style or
  several with Johnson et al.'s perceptual loss (2016, Sec. 3.3-3.4)::

      loss = content_weight * ||phi_j(y) - phi_j(x)||^2 / (C_j H_j W_j)     (feature loss)
           + style_weight_s * mean_l ||G(phi_l(y)) - G_l(style_s)||^2 / C_l^2 (style loss)
           + tv_weight      * TV(y)                                         (smoothness)

  for y = net(x, s), averaged over the batch, each image with its own style s (one network
  for several styles through conditional instance norm, Dumoulin et al. 2017), with the
  frozen loss network phi, by default ``feature_network("random")`` (no download). The loss
  network lives in the objective, not in the model: it is neither trained nor saved with the
  model's weights.
* :class:`AdaINObjective` trains the decoder g of an :class:`~mmgen.style.AdaINModel` (Huang &
  Belongie 2017, Sec. 6, eqs. 11-13), with t = AdaIN(f(c), f(s)) from the frozen encoder f::

      loss = ||f(g(t)) - t||^2                                            (content, relu4_1)
           + style_weight * sum_i ||mu(phi_i(g(t))) - mu(phi_i(s))||^2
                                + ||sigma(phi_i(g(t))) - sigma(phi_i(s))||^2 (relu1_1..relu4_1)

  (squared norms as means, as the reference implementation).
* :func:`random_encoder`: an AdaIN encoder in the published layout (any width) with seeded random
  filters, LSUV-calibrated (:func:`lsuv_calibrate`) instead of ImageNet weights. Its weights
  are part of the model's state dict, so a model trained on it saves and loads like a
  published encoder/decoder pair.
* :class:`StylePairs`: (content crop, style crop) items for AdaIN training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn
from torch.utils.data import Dataset

from mmgen.style.adain import AdaINEncoder, adain, channel_mean_std
from mmgen.style.features import FeatureNetwork, feature_network, lsuv_calibrate, pink_noise
from mmgen.style.losses import content_loss, gram_matrix, style_loss, total_variation
from mmgen.style.styles import load_style

# The last ReLU of each of the first four blocks of the "lite" loss network: Johnson et al.'s
# relu1_2, relu2_2, relu3_3, relu4_3 of VGG-16, block for block.
FAST_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_2")
FAST_CONTENT_LAYER = "relu2_1"  # Johnson et al.'s relu2_2, block for block


def draw_network(networks: Sequence[FeatureNetwork]) -> int:
    """The index of the loss network a training step uses: one drawn from the global torch
    RNG (which checkpoints restore) when there are several; 0, with nothing drawn, for one."""
    return int(torch.randint(len(networks), ())) if len(networks) > 1 else 0


# ----------------------------------------------------------------------------- Johnson


class FastStyleObjective:
    """``objective(net, batch)`` for a :class:`~mmgen.style.TransformerNet` and one style or
    several.

    ``batch`` is content images (B, 3, H, W) in [0, 1], or an ``(images, labels)`` pair (what
    :class:`~mmgen.data.photos.PhotoPatches` collates to; labels are ignored). The network
    works in [0, 255]; its raw (unclamped) output, divided by 255, is what the loss sees.

    With S > 1 styles the network must know S styles (``config.styles``, conditional instance
    norm; Dumoulin et al. 2017): every call gives each image a style (:meth:`style_indices`),
    runs the network with those indices and compares image i's Grams with its style's. The
    style term is then the mean over images of ``style_weight[s_i]`` times image i's Gram
    loss, and ``style_loss`` the same without the weights. One style runs a one-style
    network as it is (``net(x)``), or a network that knows one style with index 0.

    Args:
        style: one (1, 3, Hs, Ws) style image in [0, 1], or a sequence of them (sizes may
            differ), in the order of the network's ``config.styles``; their Gram matrices are
            computed once here.
        features: the frozen loss network, default ``feature_network("random")``; or several,
            of which each call draws one (from the global torch RNG, before the styles): a
            network trained against one random loss network finds its blind spots (stripes
            that lower its Gram loss whatever the style, docs/style.md), which the next
            random network does not share. Kept in this objective, not in the model, so they
            are neither trained nor saved with the model.
        content_layer: layer of the feature (content) loss, or several (their losses summed).
        style_layers: layers of the style (Gram) loss, averaged.
        content_weight: weight of the feature loss.
        style_weight: weight of the style loss, or one per style (styles differ in how large
            their Gram errors are). Grams are normalised by C * H * W, so their errors are
            small numbers (see :func:`~mmgen.style.losses.gram_matrix`). With the random
            network, 1e6 lowers the style loss of 256 px photos 25-130x in Gatys
            optimisations with these layers, keeping their contours.
        tv_weight: weight of the squared total variation of the output ([0, 1] units).
    """

    def __init__(self, style: torch.Tensor | Sequence[torch.Tensor],
                 features: FeatureNetwork | Sequence[FeatureNetwork] | None = None,
                 content_layer: str | Sequence[str] = FAST_CONTENT_LAYER,
                 style_layers: Sequence[str] = FAST_STYLE_LAYERS, content_weight: float = 1.0,
                 style_weight: float | Sequence[float] = 1e6, tv_weight: float = 1.0):
        styles = [style] if isinstance(style, torch.Tensor) else list(style)
        for i, image in enumerate(styles):
            if not isinstance(image, torch.Tensor) or image.ndim != 4 \
                    or image.shape[:2] != (1, 3):
                shape = tuple(image.shape) if isinstance(image, torch.Tensor) else image
                raise ValueError(f"style {i} must be one RGB image (1, 3, H, W) in [0, 1], got "
                                 f"{shape}; add a batch dimension with x[None]")
        weights = [style_weight] * len(styles) if isinstance(style_weight, (int, float)) \
            else list(style_weight)
        if not styles or len(weights) != len(styles):
            raise ValueError(f"need at least one style image and one style_weight per style, "
                             f"got {len(styles)} image(s) and style_weight={style_weight}")
        if min(content_weight, *weights, tv_weight) < 0:
            raise ValueError(f"loss weights must be >= 0, got content {content_weight}, style "
                             f"{style_weight}, tv {tv_weight}")
        networks = [feature_network("random")] if features is None else \
            [features] if isinstance(features, FeatureNetwork) else list(features)
        if not networks:
            raise ValueError("features must be a feature network or a non-empty sequence of them")
        self.networks = networks
        self.content_layers = (content_layer,) if isinstance(content_layer, str) \
            else tuple(content_layer)
        self.style_layers = tuple(style_layers)
        self.content_weight, self.tv_weight = content_weight, tv_weight
        self.style_weights = tuple(float(w) for w in weights)  # (S,)
        self.grams = [self.style_grams(net, styles) for net in networks]  # one per network

    def style_grams(self, net: FeatureNetwork,
                    styles: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """{layer: (S, C, C)}: the Gram matrices of every style image on ``net``."""
        with torch.no_grad():
            maps = [net(image.float(), self.style_layers) for image in styles]
        return {name: torch.cat([gram_matrix(m[name]) for m in maps])
                for name in self.style_layers}

    @property
    def num_styles(self) -> int:
        """S, the number of style images."""
        return len(self.style_weights)

    def style_indices(self, batch_size: int) -> torch.Tensor:
        """(B,) style of each image: consecutive styles from a random first one, so every
        batch has the styles in equal shares (up to one image) and each style is as likely
        to get the extra one. Drawn from the global torch RNG, which the Trainer checkpoints:
        training stays reproducible and resumable. One style: zeros, nothing drawn."""
        if self.num_styles == 1:
            return torch.zeros(batch_size, dtype=torch.long)
        first = torch.randint(self.num_styles, ())
        return (first + torch.arange(batch_size)) % self.num_styles  # (B,)

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch  # (B, 3, H, W) in [0, 1]
        pick = draw_network(self.networks)
        features, grams = self.networks[pick].to(x.device), self.grams[pick]
        known = len(getattr(getattr(model, "config", None), "styles", ()))
        if (known or self.num_styles > 1) and known != self.num_styles:
            raise ValueError(f"the objective has {self.num_styles} style image(s) but the "
                             f"network knows {known} style(s) (config.styles); build it with "
                             "one name per style image")
        index = self.style_indices(len(x))  # (B,)
        y = (model(x * 255.0, index.to(x.device)) if known else model(x * 255.0)) / 255.0
        layers = list(dict.fromkeys([*self.content_layers, *self.style_layers]))
        with torch.no_grad():
            target = features(x, self.content_layers)  # {layer: (B, C, h, w)}
        maps = features(y, layers)  # {layer: (B, C, h, w)} of the raw output
        # The style term per style s over its images I_s: a mean over images of
        # w_{s_i} * loss_i is sum_s |I_s| / B * w_s * style_loss(images of s, Grams of s).
        style, weighted = y.new_zeros(()), y.new_zeros(())
        for s in index.unique().tolist():
            items = (index == s).to(x.device)
            term = style_loss({k: maps[k][items] for k in self.style_layers},
                              {k: g[s:s + 1].to(x.device) for k, g in grams.items()})
            share = items.sum() / len(x)
            style = style + share * term
            weighted = weighted + share * self.style_weights[s] * term
        terms = {"content": content_loss(maps, target), "style": style,
                 "tv": total_variation(y)}
        loss = self.content_weight * terms["content"] + weighted + self.tv_weight * terms["tv"]
        return {"loss": loss, **{f"{k}_loss": v.detach() for k, v in terms.items()}}


# ----------------------------------------------------------------------------- AdaIN


class AdaINObjective:
    """``objective(model, batch)`` for an :class:`~mmgen.style.AdaINModel`: only the decoder
    learns (its encoder must be frozen, as ``AdaINModel`` builds it).

    ``batch`` is a ``(content, style)`` pair of (B, 3, H, W) image batches in [0, 1] (what
    :class:`StylePairs` collates to); H, W should be multiples of 8 so that g(t) has the
    content's size.

    With ``anchor_weight`` > 0, mmgen adds a term the paper does not have: ``anchor_weight``
    times the MSE of g(t)'s and the content image's features at ``anchor_layer`` of a random
    loss network (one of ``anchor_networks`` per call, drawn from the global torch RNG). A
    decoder behind a random encoder otherwise matches t's relu4_1 statistics without the
    content's layout (docs/style.md); the anchor keeps the contours that relu4_1 misses.

    With ``gram_weight`` > 0, a second term the paper does not have: ``gram_weight`` times
    the Gram style loss of g(t) against its own style image at ``gram_layers`` of the same
    drawn network (:class:`FastStyleObjective`'s style term, each image against its own
    style). Mean and deviation of the encoder's channels do not capture how channels vary
    together (the strokes' shapes); the Grams of the loss networks do.

    Args:
        style_weight: lambda of eq. 11 (the paper's 10).
        anchor_weight: weight of the layout anchor (0: the paper's loss).
        anchor_networks: the random loss networks of the anchor and Gram terms (default
            ``feature_network("random")``).
        anchor_layer: the anchor's layer.
        gram_weight: weight of the Gram style term (0: the paper's loss).
        gram_layers: its layers, averaged.
    """

    def __init__(self, style_weight: float = 10.0, anchor_weight: float = 0.0,
                 anchor_networks: Sequence[FeatureNetwork] | None = None,
                 anchor_layer: str = FAST_CONTENT_LAYER, gram_weight: float = 0.0,
                 gram_layers: Sequence[str] = FAST_STYLE_LAYERS):
        if not min(style_weight, anchor_weight, gram_weight) >= 0:
            raise ValueError(f"style_weight, anchor_weight and gram_weight must be >= 0, got "
                             f"{style_weight}, {anchor_weight} and {gram_weight}")
        self.style_weight, self.anchor_weight = style_weight, anchor_weight
        self.gram_weight, self.gram_layers = gram_weight, tuple(gram_layers)
        uses_networks = anchor_weight > 0 or gram_weight > 0
        self.anchor_networks = list(anchor_networks) if anchor_networks is not None else (
            [feature_network("random")] if uses_networks else [])
        if uses_networks and not self.anchor_networks:
            raise ValueError("anchor_weight or gram_weight > 0 needs at least one loss network")
        self.anchor_layer = anchor_layer

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        content, style = batch  # (B, 3, H, W) each, in [0, 1]
        if any(p.requires_grad for p in model.encoder.parameters()):
            raise ValueError("AdaINObjective trains the decoder only, but the encoder has "
                             "trainable parameters; call model.encoder.requires_grad_(False)")
        eps = model.config.eps
        with torch.no_grad():
            style_feats = model.encoder.intermediate(style)  # relu1_1 .. relu4_1
            t = adain(model.encoder(content), style_feats[-1], eps)  # (B, 512, h, w), eq. 9
        image = model.decoder(t)  # (B, 3, 8h, 8w): g(t), eq. 10
        feats = model.encoder.intermediate(image)  # gradients flow through the fixed f
        content_term = F.mse_loss(feats[-1], t)  # eq. 12
        style_term = image.new_zeros(())
        for ours, theirs in zip(feats, style_feats, strict=True):  # eq. 13
            mean, std = channel_mean_std(ours, eps)  # (B, C, 1, 1) each
            target_mean, target_std = channel_mean_std(theirs, eps)
            style_term = style_term + F.mse_loss(mean, target_mean) + F.mse_loss(std, target_std)
        loss = content_term + self.style_weight * style_term  # eq. 11
        terms = {"content_loss": content_term.detach(), "style_loss": style_term.detach()}
        if self.anchor_weight or self.gram_weight:
            net = self.anchor_networks[draw_network(self.anchor_networks)].to(image.device)
            if self.anchor_weight:
                with torch.no_grad():
                    target = net(content, [self.anchor_layer])
                anchor = content_loss(net(image, [self.anchor_layer]), target)
                loss = loss + self.anchor_weight * anchor
                terms["anchor_loss"] = anchor.detach()
            if self.gram_weight:
                with torch.no_grad():
                    grams = {k: gram_matrix(v)  # {layer: (B, C, C)}, each image's own style
                             for k, v in net(style, self.gram_layers).items()}
                gram = style_loss(net(image, self.gram_layers), grams)
                loss = loss + self.gram_weight * gram
                terms["gram_loss"] = gram.detach()
        return {"loss": loss, **terms}


@torch.no_grad()
def random_encoder(seed: int = 0, width: float = 1.0, depth: int = 4) -> AdaINEncoder:
    """The AdaIN encoder (normalised VGG-19 to relu4_1, the published layout) with seeded
    random filters instead of ImageNet weights: deterministic, no download.

    The 1x1 colour conv starts as the identity and every 3x3 conv as Kaiming normal (He et
    al. 2015); then :func:`lsuv_calibrate` gives every conv zero-mean, unit-variance
    pre-activations per channel on seeded 1/f-spectrum noise images
    (:func:`~mmgen.style.features.pink_noise`, which share the power spectrum of natural
    images), as the random loss network does. The 1x1 conv thus standardises each colour
    channel, the job the published one does for Caffe's VGG. Random multi-scale filters make
    useful texture statistics (Ustyuzhaninov et al. 2017), which is all AdaIN needs of f.

    Args:
        seed: seeds the filters and the calibration images.
        width: channel multiplier (:class:`~mmgen.style.adain.AdaINConfig` ``encoder_width``).
        depth: to relu4_1 (4) or relu3_1 (3).
    """
    generator = torch.Generator().manual_seed(seed)
    encoder = AdaINEncoder(width, depth)
    for i, m in enumerate(encoder):
        if isinstance(m, nn.Conv2d):
            if i == 0:
                nn.init.eye_(m.weight.view(3, 3))  # (3, 3, 1, 1): identity colour map
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=generator)
            nn.init.zeros_(m.bias)
    lsuv_calibrate(encoder, pink_noise(8, 128, generator))  # (8, 3, 128, 128)
    return encoder.requires_grad_(False).eval()


class StylePairs(Dataset):
    """``(content, style)`` training pairs for AdaIN: item i is ``content_data[i]``'s image
    and a random square crop, at a random scale, of one of the style images.

    The style crop is a pure function of ``(seed, i)``: a generator seeded with
    ``[seed, i]`` picks a style uniformly, a side L log-uniformly in ``[patch_size,
    style_size]`` and a position, then the L x L crop is resized to ``patch_size`` (bilinear,
    antialiased): the style's strokes are seen at 1x to ``style_size / patch_size`` x
    reduction. Items are two float32 (3, patch_size, patch_size) tensors in [0, 1].

    Args:
        content_data: a dataset whose item i is ``(image, ...)`` or an image, (3, P, P) in
            [0, 1] (e.g. :class:`~mmgen.data.photos.PhotoPatches`); it sets the length.
        styles: names of :func:`~mmgen.style.styles.list_styles`.
        patch_size: P, the side of both images.
        style_size: side at which the style images are drawn before cropping (>= P).
        seed: non-negative int.
    """

    def __init__(self, content_data: Dataset, styles: Sequence[str], patch_size: int,
                 style_size: int = 512, seed: int = 1):
        if not styles:
            raise ValueError("StylePairs needs at least one style name")
        if not 0 < patch_size <= style_size or seed < 0:
            raise ValueError(f"need 0 < patch_size <= style_size and seed >= 0, got "
                             f"patch_size={patch_size}, style_size={style_size}, seed={seed}")
        self.content_data, self.styles = content_data, list(styles)
        self.patch_size, self.style_size, self.seed = patch_size, style_size, seed
        self.images = [TF.pil_to_tensor(load_style(name, style_size)) for name in self.styles]

    def __len__(self) -> int:
        return len(self.content_data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.content_data[i]
        content = item[0] if isinstance(item, (tuple, list)) else item  # (3, P, P)
        rng = np.random.default_rng([self.seed, i])
        image = self.images[int(rng.integers(len(self.images)))]  # uint8 (3, S, S)
        p, s = self.patch_size, self.style_size
        side = int(round(np.exp(rng.uniform(np.log(p), np.log(s)))))
        top, left = (int(v) for v in rng.integers(s - side + 1, size=2))
        crop = image[:, top:top + side, left:left + side].float()[None] / 255.0  # (1, 3, L, L)
        style = F.interpolate(crop, size=(p, p), mode="bilinear", align_corners=False,
                              antialias=side > p)[0]  # (3, P, P)
        return content, style.clamp(0.0, 1.0)
