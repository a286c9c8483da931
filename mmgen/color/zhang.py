"""The published colorizers of Zhang et al., as their PyTorch release (richzhang/colorization,
``colorizers/eccv16.py`` and ``colorizers/siggraph17.py``), for users who own the weights.

* ECCV16 (Zhang, Isola & Efros 2016, "Colorful Image Colorization"): a VGG-like network
  from L to a distribution over 313 ab classes at a quarter of the resolution, decoded to ab.
* SIGGRAPH17 (Zhang, Zhu, Isola, Geng, Lin, Yu & Efros 2017, "Real-Time User-Guided Image
  Colorization"): a U-Net from L plus optional user points (ab hints and their mask) that
  regresses ab directly (its 529-class head is in the weights but unused by the forward).

Both normalise as the reference's ``BaseColor``: the network reads (L - 50) / 100 and ab / 110
and writes ab / 110 (:mod:`mmgen.color.lab`'s normalisation). Convs are 3x3 with padding
(dilation 2 in stages 5 and 6), each followed by a ReLU; a stage ends in a BatchNorm. ECCV16
(:class:`ECCV16Colorizer`; stride 2 in the last conv of model1..model3)::

    L in [0, 100]                                     (N, 1, H, W)
    model1  conv 1->64, conv 64->64 /2, BN            (N, 64, H/2, W/2)
    model2  conv 64->128, conv 128->128 /2, BN        (N, 128, H/4, W/4)
    model3  3 convs to 256, the last /2, BN           (N, 256, H/8, W/8)
    model4  3 convs to 512, BN                        (N, 512, H/8, W/8)
    model5, model6  3 convs 512 dilated 2, BN         (N, 512, H/8, W/8)
    model7  3 convs 512, BN                           (N, 512, H/8, W/8)
    model8  ConvT 4x4 /2 512->256, 2 convs 256, 1x1 conv -> 313 logits (N, 313, H/4, W/4)
    softmax, model_out 1x1 313->2 without bias        (N, 2, H/4, W/4)   the mean ab / 110
    bilinear x4, times 110                            (N, 2, H, W)       ab

``model_out.weight`` (2, 313, 1, 1) holds the classes' ab / 110, so softmax then model_out is
the mean of the distribution: :meth:`ECCV16Colorizer.predict_ab` decodes the logits by the
annealed mean instead (:func:`mmgen.color.lab.annealed_mean`; T = 1 is the forward exactly).

SIGGRAPH17 (:class:`SIGGRAPH17Colorizer`; ``x[:, :, ::2, ::2]`` subsamples between stages,
every stage ends in a BatchNorm and a Dropout(0) as the reference's ``build_basic_block``)::

    cat((L - 50) / 100, hints / 110, mask)            (N, 4, H, W)
    model1  2 convs 4->64                             (N, 64, H, W)          conv1_2
    model2  2 convs 64->128 on ::2                    (N, 128, H/2, W/2)     conv2_2
    model3  3 convs to 256 on ::2                     (N, 256, H/4, W/4)     conv3_3
    model4  3 convs to 512 on ::2                     (N, 512, H/8, W/8)
    model5, model6 (dilated 2), model7: 3 convs 512   (N, 512, H/8, W/8)
    model8up(ConvT /2) + model3short8(conv3_3), model8: ReLU, 2 convs 256 (N, 256, H/4, W/4)
    model9up(ConvT /2) + model2short9(conv2_2), model9: ReLU, 1 conv 128  (N, 128, H/2, W/2)
    model10up(ConvT /2) + model1short10(conv1_2), model10: ReLU, conv, LeakyReLU(0.2)
                                                      (N, 128, H, W)
    model_out  1x1 128->2, tanh, times 110            (N, 2, H, W)           ab

``forward`` is the reference's: ECCV16 takes any size (the strided convs round up, so the
output is 8 * ceil(H / 8) high), SIGGRAPH17 needs H, W multiples of 8 for its shortcuts.
``predict_ab`` is the colorizer interface of :class:`mmgen.color.net.ColorNet` (for
:mod:`mmgen.color.predict`): any H, W >= 16, reflection-padded at the bottom/right to
multiples of 8 and cropped back, ab at the input's size.

SIGGRAPH17's hints are ab in [-110, 110] at the user's points and 0 elsewhere, the mask 1 at
those points and 0 elsewhere; both default to zeros (no points), and are passed to the
network as given, as the reference's forward does (its training code, colorization-pytorch,
has a ``mask_cent`` option of 0.5 that this release does not apply).

Loading: :func:`load_zhang` reads ``colorization_release_v2-9b330a0b.pth`` (ECCV16) or
``siggraph17-df00044c.pth``, the files the reference downloads, or a ``.safetensors`` of
either, through :func:`mmgen.checkpoint.load_state_dict` (``torch.load(weights_only=True)``:
a pickle that needs code is refused, nothing in it runs). The architecture is told by the
keys, which are the reference's (``model1.0.weight``, ``model1.4.running_mean``, ...,
``model_out.weight``), then every name and shape is checked strictly; BatchNorm's
``num_batches_tracked``, which files saved by older torch lack, may be absent. The published
files cannot be downloaded here, so the tests check parity on random weights with the
reference's names and shapes against a functional copy of the reference forwards.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.checkpoint import (
    PICKLE_SUFFIXES,
    CorruptCheckpointError,
    check_shapes,
    load_state_dict,
)
from mmgen.color.lab import AB_NORM, DEFAULT_TEMPERATURE, annealed_mean, normalize_l

ARCHS = ("eccv16", "siggraph17")
ECCV16_CLASSES = 313  # the ab classes of the ECCV16 network (ImageNet's occupied grid cells)
SIGGRAPH17_CLASSES = 529  # the 23 x 23 ab grid of the SIGGRAPH17 class head
STRIDE = 8  # both networks work at 1/8 of the input at their deepest
MIN_SIZE = 16  # the smallest side predict_ab takes (reflection padding needs > 7 px)
TRACKED = ".num_batches_tracked"  # BatchNorm buffers that files of older torch lack
# What load_zhang checks a file against, for its messages.
DESCRIPTIONS = {
    "eccv16": "the ECCV16 colorizer (richzhang/colorization eccv16.py: keys model1.0.weight "
              ".. model8.6.bias, model_out.weight (2, 313, 1, 1))",
    "siggraph17": "the SIGGRAPH17 colorizer (richzhang/colorization siggraph17.py: keys "
                  "model1.0.weight .. model10.1.bias, model_class.0.weight, model_out.0.weight)",
}
ZIP_MAGIC = b"PK\x03\x04"  # torch.save since torch 1.6
PICKLE_PROTO = 0x80  # the first byte of a pickle of protocol >= 2 (torch.save before 1.6)


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 conv keeping the size (before the stride), as every 3x3 conv of the reference."""
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation)


def _stage(channels: list[int], last_stride: int = 1, dilation: int = 1,
           init_relu: bool = False, dropout: bool = False) -> nn.Sequential:
    """(conv, ReLU) per step of ``channels``, then BatchNorm: the reference's stages, with
    their indices (``init_relu``: a ReLU first; ``dropout``: the Dropout(0) that SIGGRAPH17's
    ``build_basic_block`` ends with, which does nothing and holds no weights)."""
    layers: list[nn.Module] = [nn.ReLU(True)] if init_relu else []
    steps = list(zip(channels[:-1], channels[1:], strict=True))
    for i, (cin, cout) in enumerate(steps):
        stride = last_stride if i == len(steps) - 1 else 1
        layers += [_conv(cin, cout, stride, dilation), nn.ReLU(True)]
    layers.append(nn.BatchNorm2d(channels[-1]))
    if dropout:
        layers.append(nn.Dropout(0.0))
    return nn.Sequential(*layers)


def _up(cin: int, cout: int) -> nn.ConvTranspose2d:
    """4x4 transposed conv, stride 2: doubles the size."""
    return nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)


def _check(tensor: object, channels: int, name: str, who: str) -> None:
    """A ``ValueError`` unless ``tensor`` is (N, ``channels``, H, W) with H, W >= MIN_SIZE."""
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 4 or tensor.shape[1] != channels \
            or min(tensor.shape[-2:]) < MIN_SIZE:
        got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f"{who} takes {name} of shape (N, {channels}, H, W) with H, W >= "
                         f"{MIN_SIZE}, got {got}")


def _pad(x: torch.Tensor, mode: str = "reflect") -> torch.Tensor:
    """``x`` padded at the bottom/right to multiples of STRIDE (``mode``: F.pad's)."""
    pad = (0, -x.shape[-1] % STRIDE, 0, -x.shape[-2] % STRIDE)
    return F.pad(x, pad, mode=mode) if any(pad) else x


class ECCV16Colorizer(nn.Module):
    """Zhang et al. 2016's colorizer: L -> ab via 313 ab classes (module docstring); the
    reference's ``ECCVGenerator`` with its attribute names and layer indices."""

    predicts_classes = True  # predict_ab decodes classes at a temperature (mmgen.color)

    def __init__(self):
        super().__init__()
        self.model1 = _stage([1, 64, 64], last_stride=2)
        self.model2 = _stage([64, 128, 128], last_stride=2)
        self.model3 = _stage([128, 256, 256, 256], last_stride=2)
        self.model4 = _stage([256, 512, 512, 512])
        self.model5 = _stage([512, 512, 512, 512], dilation=2)
        self.model6 = _stage([512, 512, 512, 512], dilation=2)
        self.model7 = _stage([512, 512, 512, 512])
        self.model8 = nn.Sequential(_up(512, 256), nn.ReLU(True),
                                    _conv(256, 256), nn.ReLU(True),
                                    _conv(256, 256), nn.ReLU(True),
                                    nn.Conv2d(256, ECCV16_CLASSES, 1))
        self.softmax = nn.Softmax(dim=1)
        self.model_out = nn.Conv2d(ECCV16_CLASSES, 2, 1, bias=False)  # the classes' ab / 110
        self.upsample4 = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False)

    def class_logits(self, lightness: torch.Tensor) -> torch.Tensor:
        """L (N, 1, H, W) in [0, 100] -> logits (N, 313, h, w), h = 2 * ceil(H / 8)."""
        h = normalize_l(lightness)
        for stage in (self.model1, self.model2, self.model3, self.model4, self.model5,
                      self.model6, self.model7, self.model8):
            h = stage(h)
        return h

    @property
    def bins(self) -> torch.Tensor:
        """The classes' ab (313, 2), read from ``model_out.weight`` (times 110)."""
        return self.model_out.weight[:, :, 0, 0].T * AB_NORM

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        """The reference's forward: L (N, 1, H, W) in [0, 100] -> the mean ab of the class
        distribution (N, 2, 8 * ceil(H / 8), 8 * ceil(W / 8)) (H, W multiples of 8: H, W)."""
        probs = self.softmax(self.class_logits(lightness))  # (N, 313, h, w)
        return self.upsample4(self.model_out(probs)) * AB_NORM  # (N, 2, 4h, 4w)

    def predict_ab(self, lightness: torch.Tensor,
                   temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
        """L (N, 1, H, W) in [0, 100], any H, W >= 16 -> ab (N, 2, H, W): the annealed mean at
        ``temperature`` (1: :meth:`forward`'s mean; the paper's 0.38 by default), upsampled
        as the reference (bilinear x4), of the input reflection-padded to multiples of 8, then
        cropped back."""
        _check(lightness, 1, "L", "ECCV16Colorizer.predict_ab")
        height, width = lightness.shape[-2:]
        logits = self.class_logits(_pad(lightness))  # (N, 313, H8/4, W8/4)
        ab = annealed_mean(logits, self.bins, temperature)  # (N, 2, H8/4, W8/4)
        return self.upsample4(ab)[..., :height, :width]


class SIGGRAPH17Colorizer(nn.Module):
    """Zhang et al. 2017's user-guided colorizer: L and optional ab hints -> ab (module
    docstring); the reference's ``SIGGRAPHGenerator`` with its attribute names and layer
    indices. ``model_class`` (the 529-class head) is kept for the weights, never run."""

    predicts_classes = False  # predict_ab regresses ab: no temperature (mmgen.color)

    def __init__(self, classes: int = SIGGRAPH17_CLASSES):
        super().__init__()
        self.model1 = _stage([4, 64, 64], dropout=True)
        self.model2 = _stage([64, 128, 128], dropout=True)
        self.model3 = _stage([128, 256, 256, 256], dropout=True)
        self.model4 = _stage([256, 512, 512, 512], dropout=True)
        self.model5 = _stage([512, 512, 512, 512], dilation=2, dropout=True)
        self.model6 = _stage([512, 512, 512, 512], dilation=2, dropout=True)
        self.model7 = _stage([512, 512, 512, 512], dropout=True)
        self.model8up = nn.Sequential(_up(512, 256))
        self.model3short8 = nn.Sequential(_conv(256, 256))
        self.model8 = _stage([256, 256, 256], init_relu=True, dropout=True)
        self.model9up = nn.Sequential(_up(256, 128))
        self.model2short9 = nn.Sequential(_conv(128, 128))
        self.model9 = _stage([128, 128], init_relu=True, dropout=True)
        self.model10up = nn.Sequential(_up(128, 128))
        self.model1short10 = nn.Sequential(_conv(64, 128))
        self.model10 = nn.Sequential(nn.ReLU(True), _conv(128, 128), nn.LeakyReLU(0.2))
        self.model_class = nn.Sequential(nn.Conv2d(256, classes, 1))
        self.model_out = nn.Sequential(nn.Conv2d(128, 2, 1), nn.Tanh())

    def forward(self, lightness: torch.Tensor, hints: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """The reference's forward: L (N, 1, H, W) in [0, 100], H and W multiples of 8, ab
        hints (N, 2, H, W) and their mask (N, 1, H, W) (each zeros if ``None``) -> ab
        (N, 2, H, W)."""
        if lightness.ndim != 4 or lightness.shape[-2] % STRIDE or lightness.shape[-1] % STRIDE:
            raise ValueError(f"SIGGRAPH17Colorizer.forward takes L of shape (N, 1, H, W) with "
                             f"H, W multiples of {STRIDE}, got {tuple(lightness.shape)}; "
                             "predict_ab takes any size")
        zeros = torch.zeros_like(lightness)
        hints = torch.cat([zeros, zeros], dim=1) if hints is None else hints
        mask = zeros if mask is None else mask
        x = torch.cat([normalize_l(lightness), hints / AB_NORM, mask], dim=1)  # (N, 4, H, W)
        conv1 = self.model1(x)  # (N, 64, H, W)
        conv2 = self.model2(conv1[:, :, ::2, ::2])  # (N, 128, H/2, W/2)
        conv3 = self.model3(conv2[:, :, ::2, ::2])  # (N, 256, H/4, W/4)
        h = self.model4(conv3[:, :, ::2, ::2])  # (N, 512, H/8, W/8)
        h = self.model7(self.model6(self.model5(h)))  # (N, 512, H/8, W/8)
        h = self.model8(self.model8up(h) + self.model3short8(conv3))  # (N, 256, H/4, W/4)
        h = self.model9(self.model9up(h) + self.model2short9(conv2))  # (N, 128, H/2, W/2)
        h = self.model10(self.model10up(h) + self.model1short10(conv1))  # (N, 128, H, W)
        return self.model_out(h) * AB_NORM  # (N, 2, H, W)

    def predict_ab(self, lightness: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE,
                   hints: torch.Tensor | None = None,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
        """L (N, 1, H, W) in [0, 100], any H, W >= 16 -> ab (N, 2, H, W).

        ``temperature`` is ignored: the network regresses ab, there is no distribution to
        anneal (it is accepted for the colorizer interface). User points: ab ``hints``
        (N, 2, H, W) with their ``mask`` (N, 1, H, W), 1 at the points; both or neither. L is
        reflection-padded at the bottom/right to multiples of 8 and the output cropped back;
        hints and mask are padded with zeros (no points in the padding).
        """
        who = "SIGGRAPH17Colorizer.predict_ab"
        _check(lightness, 1, "L", who)
        if (hints is None) != (mask is None):
            raise ValueError(f"{who} takes hints and mask together (the mask says where the "
                             "hints are), got only " + ("hints" if mask is None else "mask"))
        height, width = lightness.shape[-2:]
        if hints is not None:
            _check(hints, 2, "hints", who)
            _check(mask, 1, "mask", who)
            n = len(lightness)
            if (len(hints), *hints.shape[-2:]) != (n, height, width) \
                    or (len(mask), *mask.shape[-2:]) != (n, height, width):
                raise ValueError(f"{who}: hints {tuple(hints.shape)} and mask "
                                 f"{tuple(mask.shape)} must have L's batch and size "
                                 f"{tuple(lightness.shape)}")
            hints, mask = _pad(hints, "constant"), _pad(mask, "constant")
        return self(_pad(lightness), hints, mask)[..., :height, :width]


Colorizer = ECCV16Colorizer | SIGGRAPH17Colorizer


def load_zhang(path: str | os.PathLike, arch: str | None = None) -> Colorizer:
    """Load Zhang et al.'s published ECCV16 or SIGGRAPH17 weights (``.pth`` or
    ``.safetensors``), in eval mode.

    Args:
        path: ``colorization_release_v2-9b330a0b.pth``, ``siggraph17-df00044c.pth`` or a
            ``.safetensors`` of either; ``.pth`` files go through
            ``torch.load(weights_only=True)``.
        arch: ``"eccv16"`` or ``"siggraph17"``; ``None``: told by the keys
            (``model8up.0.weight`` or ``model_class.0.weight``: SIGGRAPH17, else
            ``model_out.weight``: ECCV16).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an unknown ``arch``; a file that is not a weight file, is truncated, or
            whose names or shapes do not fit (missing, unexpected and mis-shaped tensors
            listed, a few of each). One line, naming the file and what was expected.
        mmgen.checkpoint.UnsafeCheckpointError: a pickle that needs code to load (refused;
            nothing in it runs).
    """
    if arch is not None and arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r} for Zhang et al.'s colorizers: "
                         f"expected one of {', '.join(ARCHS)}, or None to tell it by the keys")
    path = Path(path)
    _check_format(path)
    state = load_state_dict(path)  # FileNotFoundError / UnsafeCheckpointError / ValueError
    arch = arch or _detect(state, path)
    with torch.device("meta"):  # no random init of ~32 M parameters: all are replaced
        model = ECCV16Colorizer() if arch == "eccv16" else SIGGRAPH17Colorizer()
    own = model.state_dict()
    # num_batches_tracked only counts training steps (eval ignores it): optional.
    expected = {k: tuple(v.shape) for k, v in own.items() if k in state or not k.endswith(TRACKED)}
    check_shapes(expected, {k: tuple(v.shape) for k, v in state.items()},
                 f"{path} as {DESCRIPTIONS[arch]}")
    tensors = {k: torch.zeros((), dtype=v.dtype) if k not in state else
               state[k].to(v.dtype).contiguous() for k, v in own.items()}
    model.load_state_dict(tensors, assign=True)
    return model.eval()


def _check_format(path: Path) -> None:
    """A :class:`CorruptCheckpointError` for a pickle-suffixed file that is neither a
    ``torch.save`` zip archive nor a pickle (whose bytes torch's safe unpickler would report
    as unsafe code, which would mislead)."""
    if path.suffix not in PICKLE_SUFFIXES or not path.is_file():
        return  # load_state_dict reports these
    with open(path, "rb") as f:
        head = f.read(len(ZIP_MAGIC))
    if head and not head.startswith(ZIP_MAGIC) and head[0] != PICKLE_PROTO:
        raise CorruptCheckpointError(
            f"{path} is not a PyTorch weight file (neither a torch.save zip archive nor a "
            f"pickle; first bytes {head.hex()}): expected Zhang et al.'s "
            "colorization_release_v2-9b330a0b.pth or siggraph17-df00044c.pth")


def _detect(state: dict[str, torch.Tensor], path: Path) -> str:
    """The architecture whose keys ``state`` has; a ``ValueError`` if neither's."""
    if "model8up.0.weight" in state or "model_class.0.weight" in state:
        return "siggraph17"
    if "model_out.weight" in state:
        return "eccv16"
    keys = sorted(state)
    found = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
    raise ValueError(f"{path} holds neither of Zhang et al.'s colorizers: expected "
                     "model_out.weight (eccv16) or model8up.0.weight / model_class.0.weight "
                     f"(siggraph17), found {len(keys)} tensor(s) ({found or 'none'}); pass "
                     "arch= to check it against one")
