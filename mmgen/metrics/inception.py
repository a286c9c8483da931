"""Inception-v3 features for FID/KID, from a weights file you already have (never downloaded).

The features are the 2048-d "pool3" activations (global average pool before the classifier) of
torchvision's ``inception_v3``, on images resized to 299×299 (bilinear) and scaled to
``[-1, 1]``, which is what torchvision's ImageNet weights expect (their ``transform_input``
does the same after ImageNet normalisation).

Which weights you load decides which numbers you may compare with:

* torchvision's ImageNet checkpoint (``inception_v3_google-*.pth``) gives sensible features,
  but FIDs that differ from published ones.
* The FID network of the literature (TF 2015 graph, ``pt_inception-2015-12-05-*.pth`` from
  pytorch-fid, 1008 classes) has the same parameter names and loads here, but its pooling layers
  differ slightly from torchvision's, so features (and FIDs) are close to, not equal to, the
  reference implementation. A warning says so.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import Inception3

from mmgen.checkpoint import WEIGHT_SUFFIXES, load_state_dict
from mmgen.interop import load_converted
from mmgen.metrics.features import check_images

# Class count of the TF FID graph (pytorch-fid's pt_inception weights).
_FID_GRAPH_CLASSES = 1008


class InceptionExtractor(nn.Module):
    """Images ``(N, 3, H, W)`` in ``[0, 1]`` -> pool3 features ``(N, 2048)``.

    Args:
        net: a torchvision ``Inception3`` holding the weights.
        name: identifies extractor and weights in cache keys.
    """

    resolution = 299  # input size of Inception-v3
    feature_dim = 2048  # pool3 width

    def __init__(self, net: Inception3, name: str = "inception_v3") -> None:
        super().__init__()
        self.classifier = net.fc if isinstance(net.fc, nn.Linear) else None  # for logits()
        net.fc = nn.Identity()  # forward then ends at pool3 (dropout is a no-op in eval)
        net.AuxLogits, net.aux_logits = None, False  # training-only branch, not needed
        self.net = net
        self.name = name
        self.requires_grad_(False).eval()

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> InceptionExtractor:
        """Load torchvision-layout Inception-v3 weights (.safetensors, or .pth read safely).

        Args:
            path: a local weights file; nothing is ever downloaded.

        Raises:
            FileNotFoundError: if ``path`` does not exist.
            mmgen.interop.KeyMapError: if the weights do not fit torchvision's Inception-v3.
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"no Inception-v3 weights at {path}. mmgen never downloads them: save "
                "torchvision's inception_v3 state dict (or pytorch-fid's pt_inception weights) "
                f"to a local {' / '.join(WEIGHT_SUFFIXES)} file and pass its path"
            )
        state = load_state_dict(path)
        num_classes = state["fc.weight"].shape[0] if "fc.weight" in state else 1000
        if num_classes == _FID_GRAPH_CLASSES:
            warnings.warn("these look like the TF FID Inception weights; torchvision's pooling "
                          "differs slightly, so FIDs are close to but not equal to published "
                          "ones", stacklevel=2)
        net = Inception3(num_classes=num_classes, transform_input=False, init_weights=False,
                         aux_logits=any(k.startswith("AuxLogits.") for k in state))
        if "fc.weight" not in state:
            net.fc = nn.Identity()  # a features-only checkpoint
        load_converted(net, state)
        return cls(net, name=f"inception_v3-{path.stem}")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pool3 features ``(N, 2048)`` of images ``(N, 3, H, W)`` in ``[0, 1]``."""
        x = check_images(images)
        x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear",
                          align_corners=False)  # (N, 3, 299, 299)
        return self.net(2 * x - 1)  # (N, 2048)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, num_classes)``, e.g. as the classifier of the Inception Score."""
        if self.classifier is None:
            raise ValueError(f"{self.name} was loaded without its classifier (fc) weights")
        return self.classifier(self(images))
