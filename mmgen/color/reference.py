"""Colorization from a reference photo, with no training: Welsh et al. 2002, "Transferring
Color to Greyscale Images" (SIGGRAPH), with a smoothed vote for coherent regions (issue #20,
item 3).

Each pixel of the gray input takes the colour (ab, CIE Lab) of reference pixels whose
lightness and texture look alike. Only the input's L is read, and it is kept (through
:func:`~mmgen.color.lab.lab_to_rgb`: within the 8-bit rounding of the RGB output). With
H x W the input, h x w its working size (long side at most ``ReferenceConfig.size``, never
enlarged), hr x wr the reference's, P = h * w, S samples, k neighbours, Q ab cells::

    input RGB (1, 3, H, W) -> L (1, 1, H, W) -> resized down: L (1, 1, h, w)
    reference RGB (1, 3, Hr, Wr) -> resized down -> Lab (1, 3, hr, wr)
    1. luminance remapping (Welsh et al. Sec. 2): the reference's L shifted and scaled to
       the input's mean and std of L                                       (1, 1, hr, wr)
    2. features: L and, per window in ``windows`` (5, 15, 31 px), the local mean and std
       of L; each divided by its spread over the reference, then weighted   (P, F), (hr*wr, F)
    3. S reference pixels, one at random in each cell of a grid (jittered sampling):
       their features and ab (the palette)                                  (S, F), (S, 2)
    4. each pixel's k nearest samples in feature space (exact, k-d tree); each votes for
       its sample's ab cell (the 10 x 10 ab grid of mmgen.color.lab); a cell's votes are
       divided by its share of the samples ** ``rebalance``, or the reference's commonest
       colour (often its grays) wins every ambiguous pixel                   (1, Q, h, w)
    5. spatial coherence: the votes smoothed by a guided filter (He et al. 2010) guided by
       L, so that a region agrees on one cell and regions stay apart where L has an edge;
       the winning cell per pixel, and its ab: the nearest of the pixel's own samples in
       that cell (else the cell's mean)                                      (1, 2, h, w)
    6. to full resolution: a guided filter of ab whose coefficients are upsampled and
       applied to the full L ("fast guided filter", He & Sun 2015)          (1, 2, H, W)
    7. ``snap``: each ab replaced by the nearest of the samples' ab            (1, 2, H, W)
    -> Lab with the input's own L -> RGB (lab_to_rgb)                         (1, 3, H, W)

Respected: the input's L, exactly; the reference's palette: after step 7 every output ab is
the ab of a pixel of the reference (at its working size), so hues the reference lacks never
appear (lab_to_rgb may then lower a colour's chroma, keeping its hue, where that ab is
outside the sRGB gamut at the input's lightness). Not respected: semantics. A match is by
lightness and texture only, so a region takes the colour of whatever looks alike in gray in
the reference; this is right only as far as the two photos are related (a portrait for a
portrait) and their lightness corresponds. Welsh et al. add user-drawn swatches for the
rest; this does not. Nor are the reference's proportions of colours kept but roughly: the
vote still favours the commoner colours (``rebalance`` trades that against speckle of rare
ones).

The reference is used at its own size, resized down (antialiased) if its long side exceeds
``size``; windows are in working pixels, so textures compare best when the two photos show
things at a similar scale. The defaults were chosen on pairs of the training photos
(mmgen.recipes.color.TRAIN_PHOTOS), not on the held-out ones.

Speed: chelsea (gray) with the astronaut as reference, both 512 x 512, default config, through
``colorize``: 0.80 s on one thread of an idle 2-core machine
(``OMP_NUM_THREADS=1 python benchmarks/color.py --threads 1``); most of it the k-d tree search.
Memory: the votes are Q (<= 261) maps of h x w floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sklearn.neighbors import NearestNeighbors

from mmgen.color.lab import AB_RANGE, BIN_STEP, lab_to_rgb, rgb_to_lab
from mmgen.registry import check_fields

MIN_SIDE = 16  # px, of the input and of the reference
UPSAMPLE_RADIUS = 2  # working px: the window radius of the guided upsampling


@dataclass(frozen=True)
class ReferenceConfig:
    """Settings of :func:`colorize_reference` (steps in the module docstring)."""

    size: int = 256  # long side (px) cap of the working resolution of input and reference
    samples: int = 4096  # reference pixels sampled on a jittered grid (all if fewer)
    windows: tuple[int, ...] = (5, 15, 31)  # odd sides (working px) of the L mean/std features
    lightness_weight: float = 1.0  # weight of the pixel's own (remapped) L
    mean_weight: float = 0.5  # weight of each window's mean of L
    std_weight: float = 2.0  # weight of each window's std of L (texture; Welsh et al.'s 2nd)
    neighbours: int = 8  # nearest samples per pixel, each a vote for its ab cell
    rebalance: float = 0.35  # a cell's votes / its share of the samples ** this, in [0, 1]
    smooth_radius: int = 6  # window radius (working px) of the votes' smoothing; 0: none
    smooth_edge: float = 4.0  # L step (0..100) the smoothing keeps as an edge: eps = edge^2
    snap: bool = True  # replace each output ab by the nearest reference ab (the palette)

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", tuple(self.windows))
        check_fields(self, names=("size",), at_least=MIN_SIDE)
        check_fields(self, names=("samples", "neighbours"))
        check_fields(self, names=("smooth_radius",), at_least=0)
        if self.neighbours > self.samples:
            raise ValueError(f"ReferenceConfig.neighbours ({self.neighbours}) must be <= "
                             f"samples ({self.samples})")
        if any(not isinstance(w, int) or w < 3 or w % 2 == 0 for w in self.windows):
            raise ValueError(f"ReferenceConfig.windows must be odd ints >= 3 (a centred "
                             f"neighbourhood), got {self.windows}")
        weights = (self.lightness_weight, self.mean_weight, self.std_weight)
        if any(w < 0 for w in weights) or not any(weights):
            raise ValueError(f"ReferenceConfig weights (lightness, mean, std) must be >= 0 and "
                             f"not all 0, got {weights}")
        if not 0 <= self.rebalance <= 1:
            raise ValueError(f"ReferenceConfig.rebalance must be in [0, 1] (0: plain majority, "
                             f"1: every colour of the reference equally likely), got "
                             f"{self.rebalance}")
        if not self.smooth_edge > 0:
            raise ValueError(f"ReferenceConfig.smooth_edge must be > 0 (an L step, e.g. 4), "
                             f"got {self.smooth_edge}")


def _check(image: torch.Tensor, name: str) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[:2] != (1, 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{name} must be one RGB image, a (1, 3, H, W) tensor, got {shape}")
    if not image.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [0, 1], got {image.dtype} "
                         f"(divide 8-bit images by 255)")
    if min(image.shape[-2:]) < MIN_SIDE:
        raise ValueError(f"{name} is {image.shape[-2]} x {image.shape[-1]} px; both sides must "
                         f"be >= {MIN_SIDE}")
    if not torch.isfinite(image).all():
        raise ValueError(f"{name} has NaN or infinite values")


def _working_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) with long side at most ``size`` (never enlarged), each >= MIN_SIDE."""
    scale = min(1.0, size / max(height, width))
    return max(MIN_SIDE, round(height * scale)), max(MIN_SIDE, round(width * scale))


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean of (N, C, h, w) over (2 radius + 1)^2 windows, edges replicated (running sums:
    the cost does not grow with the radius)."""
    side = 2 * radius + 1
    x = F.pad(x, (radius + 1, radius, radius + 1, radius), mode="replicate")
    x = x.cumsum(dim=2)
    x = x[:, :, side:] - x[:, :, :-side]
    x = x.cumsum(dim=3)
    return (x[..., side:] - x[..., :-side]) / side**2


def _features(lightness: torch.Tensor, config: ReferenceConfig) -> torch.Tensor:
    """L (1, 1, h, w) -> unweighted features (h * w, F): L, then per window mean and std."""
    channels = [lightness]
    for window in config.windows:
        mean = _box(lightness, window // 2)
        std = (_box(lightness.square(), window // 2) - mean.square()).clamp_min(0).sqrt()
        channels += [mean, std]
    return torch.cat(channels, dim=1).flatten(2)[0].T  # (h * w, F)


def _jittered_grid(height: int, width: int, samples: int,
                   generator: torch.Generator) -> torch.Tensor:
    """Flat indices (S,) of one random pixel in each cell of a grid of about ``samples``
    cells over height x width (all pixels if there are fewer)."""
    if samples >= height * width:
        return torch.arange(height * width)
    rows = max(1, min(height, round((samples * height / width) ** 0.5)))
    cols = max(1, min(width, samples // rows))
    top = torch.arange(rows) * height // rows  # cell edges (rows + 1,)
    top = torch.cat([top, torch.tensor([height])])
    left = torch.cat([torch.arange(cols) * width // cols, torch.tensor([width])])
    y = top[:-1, None] + (torch.rand(rows, cols, generator=generator)
                          * (top[1:] - top[:-1])[:, None]).long()  # (rows, cols)
    x = left[None, :-1] + (torch.rand(rows, cols, generator=generator)
                           * (left[1:] - left[:-1])[None]).long()
    return (y * width + x).flatten()


def _nearest(queries: torch.Tensor, points: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (P, k) of the ``k`` nearest of ``points`` (S, F) to each of ``queries`` (P, F),
    nearest first (Euclidean; exact, by scikit-learn's k-d tree)."""
    tree = NearestNeighbors(n_neighbors=k, algorithm="kd_tree").fit(points.numpy())
    return torch.from_numpy(tree.kneighbors(queries.numpy(), return_distance=False))


def _guided_filter(guide: torch.Tensor, x: torch.Tensor, radius: int,
                   eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The guided filter's (He et al. 2010) averaged linear coefficients (A, B), each like
    ``x`` (1, C, h, w), for ``guide`` (1, 1, h, w): the filtered x is A * guide + B."""
    mean_i, mean_x = _box(guide, radius), _box(x, radius)
    cov_ix = _box(guide * x, radius) - mean_i * mean_x  # (1, C, h, w)
    var_i = _box(guide.square(), radius) - mean_i.square()  # (1, 1, h, w)
    a = cov_ix / (var_i + eps)  # Eq. 5
    b = mean_x - a * mean_i  # Eq. 6
    return _box(a, radius), _box(b, radius)  # averaged over the windows holding a pixel, Eq. 8


def _scaled_features(lightness: torch.Tensor, ref_l: torch.Tensor,
                     config: ReferenceConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-2: features (h * w, F) of L (1, 1, h, w) and (hr * wr, F) of the reference's
    L (1, 1, hr, wr), after the luminance remapping, scaled alike."""
    # Welsh et al. Sec. 2: the reference's L shifted and scaled to the input's mean and std
    ref_l = (ref_l - ref_l.mean()) * lightness.std() / ref_l.std().clamp_min(1e-3)
    ref_l = ref_l + lightness.mean()
    ref_features, features = _features(ref_l, config), _features(lightness, config)
    weights = torch.tensor([config.lightness_weight]
                           + [config.mean_weight, config.std_weight] * len(config.windows))
    # each feature over its spread in the reference, floored at 1 L unit: a flat reference
    # (no texture) must not blow its std features up
    scale = weights / ref_features.std(dim=0).clamp_min(1.0)  # (F,)
    return features * scale, ref_features * scale


def _vote(nearest: torch.Tensor, palette: torch.Tensor, guide: torch.Tensor,
          config: ReferenceConfig) -> torch.Tensor:
    """Steps 4-5: ab (1, 2, h, w) from the indices (P, k) of each pixel's nearest samples,
    the samples' ab ``palette`` (S, 2) and the guide L / 100 (1, 1, h, w)."""
    cells, cell_of = torch.unique(torch.div(palette + AB_RANGE, BIN_STEP, rounding_mode="floor"),
                                  dim=0, return_inverse=True)  # (Q, 2), (S,)
    votes = torch.zeros(len(nearest), len(cells)).scatter_add_(
        1, cell_of[nearest], torch.ones(nearest.shape))  # (P, Q)
    counts = torch.bincount(cell_of, minlength=len(cells))  # (Q,)
    votes = votes / counts.float() ** config.rebalance  # Zhang et al.'s rebalancing, softened
    votes = votes.T.reshape(1, len(cells), *guide.shape[-2:])  # (1, Q, h, w)
    if config.smooth_radius:
        a, b = _guided_filter(guide, votes, config.smooth_radius, _eps(config))
        votes = a * guide + b
    label = votes.flatten(2)[0].argmax(dim=0)  # the winning cell (P,)
    # ab: the nearest of the pixel's samples in the winning cell, else the cell's mean ab
    agree = cell_of[nearest] == label[:, None]  # (P, k)
    ab = palette[nearest[torch.arange(len(label)), agree.int().argmax(dim=1)]]  # (P, 2)
    cell_mean = torch.zeros(len(cells), 2).index_add_(0, cell_of, palette) / counts[:, None]
    ab = torch.where(agree.any(dim=1, keepdim=True), ab, cell_mean[label])
    return ab.T.reshape(1, 2, *guide.shape[-2:])


def _eps(config: ReferenceConfig) -> float:
    """The guided filter's eps for a guide L / 100."""
    return (config.smooth_edge / 100) ** 2


@torch.no_grad()
def colorize_reference(images: torch.Tensor, reference: torch.Tensor,
                       config: ReferenceConfig | None = None, seed: int = 0) -> torch.Tensor:
    """Colour a gray photo with the colours of a reference photo (module docstring).

    Args:
        images: the photo to colour, (1, 3, H, W) float in [0, 1], sides >= 16; only its
            lightness L is read.
        reference: the colour photo whose colours are transferred, (1, 3, Hr, Wr) float in
            [0, 1], sides >= 16, any size (used at its own size, resized down if its long
            side exceeds ``config.size``).
        config: the method's settings; ``None`` means ``ReferenceConfig()``.
        seed: the seed of the jittered sampling of the reference: the same seed gives the
            same output.

    Returns:
        RGB (1, 3, H, W) in [0, 1], float32 on the input's device, with the input's L and
        ab from the reference.
    """
    _check(images, "images")
    _check(reference, "reference")
    config = config or ReferenceConfig()
    device = images.device
    images, reference = images.detach().float().cpu(), reference.detach().float().cpu()
    full_l = rgb_to_lab(images)[:, :1]  # (1, 1, H, W)
    work = _working_size(*images.shape[-2:], config.size)
    small_l = _resize(full_l, work)  # (1, 1, h, w)
    ref_lab = rgb_to_lab(_resize(reference, _working_size(*reference.shape[-2:], config.size)))
    features, ref_features = _scaled_features(small_l, ref_lab[:, :1], config)  # (P | R, F)

    # 3. samples on a jittered grid; 4-5. each pixel's nearest, their vote, smoothed
    generator = torch.Generator().manual_seed(seed)
    index = _jittered_grid(*ref_lab.shape[-2:], config.samples, generator)  # (S,)
    palette = ref_lab[0, 1:].flatten(1).T[index]  # the samples' ab (S, 2)
    k = min(config.neighbours, len(index))  # a tiny reference may have fewer pixels
    nearest = _nearest(features, ref_features[index], k)  # (P, k)
    ab = _vote(nearest, palette, small_l / 100, config)  # (1, 2, h, w)

    # 6. to full resolution with the edges of the full L (fast guided filter)
    a, b = _guided_filter(small_l / 100, ab, UPSAMPLE_RADIUS, _eps(config))
    a, b = (F.interpolate(c, size=full_l.shape[-2:], mode="bilinear", align_corners=False)
            for c in (a, b))
    ab = a * full_l / 100 + b  # (1, 2, H, W)
    if config.snap:  # 7. back onto the reference's own ab values
        colours = palette.unique(dim=0)  # (S', 2)
        ab = colours[_nearest(ab[0].flatten(1).T, colours, 1)[:, 0]].T.reshape(ab.shape)
    return lab_to_rgb(torch.cat([full_l, ab], dim=1)).to(device)
