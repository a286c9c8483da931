"""The value every metric returns: a number that names its sample count (``FID@1000 = 12.34``).

A metric computed on 1,000 samples is not the metric computed on 50,000 (FID in particular is
biased upwards for small ``n``), so results carry ``n`` and print it.
"""

from __future__ import annotations

from dataclasses import dataclass


def _format(x: float, scale: float) -> str:
    # 2 decimals for values like FID/PSNR/IS, 4 for small ones like KID/SSIM/precision.
    return f"{x:.2f}" if abs(scale) >= 1 else f"{x:.4f}"


@dataclass(frozen=True)
class MetricResult:
    """One reported metric value.

    Args:
        name: metric name as printed, e.g. ``"FID"``.
        value: the metric (mean over subsets/splits where the metric has them).
        n: number of evaluated samples (generated images, or image pairs for PSNR/SSIM/CLIP).
        std: spread over subsets/splits (KID, IS), ``None`` where the metric has none.
        n_ref: number of reference (real) samples, for metrics that compare two sets.
    """

    name: str
    value: float
    n: int
    std: float | None = None
    n_ref: int | None = None

    def __str__(self) -> str:
        text = f"{self.name}@{self.n} = {_format(self.value, self.value)}"
        return text if self.std is None else f"{text} ± {_format(self.std, self.value)}"

    def __float__(self) -> float:
        return float(self.value)
