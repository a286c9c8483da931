"""Configuration of a training run and the learning-rate schedule it implies."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

LR_SCHEDULES = ("constant", "cosine", "linear")
MIXED_PRECISIONS = ("no", "auto", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything that defines a training run (the model and data are passed separately)."""

    steps: int = 1000  # total optimizer steps of the run (a resumed run continues up to this)
    batch_size: int = 32  # GLOBAL batch per optimizer step, over all processes and accumulation
    lr: float = 1e-4  # peak learning rate of the default AdamW (your own optimizers keep theirs)
    lr_schedule: str = "constant"  # after warm-up: "constant", "cosine" (to 0) or "linear" (to 0)
    warmup_steps: int = 0  # linear warm-up: step s (0-based) uses lr * (s + 1) / warmup_steps
    weight_decay: float = 0.0  # decoupled weight decay of the default AdamW
    grad_accum: int = 1  # micro-batches accumulated per optimizer step (on each process)
    # "no", "bf16" (CPU or GPU), "fp16" (GPU only, loss-scaled) or "auto": bf16 where the
    # hardware computes it natively (mmgen.device.resolve_dtype), else "no". Emulated bf16 on
    # a CPU without AVX512-BF16/AMX is tens of times slower than fp32.
    mixed_precision: str = "no"
    # The training fast path (docs/performance.md): convolutional weights and activations in
    # channels_last (oneDNN's NHWC kernels on AVX-512 CPUs, cuDNN's on GPUs), and the model's
    # forward and backward compiled by torch.compile (inductor; the first steps compile).
    # Checkpoints, their names and resuming are the same with and without them.
    channels_last: bool = False
    compile: bool = False
    grad_clip: float = 1.0  # clip the global gradient norm to this value; 0 turns clipping off
    ema_decay: float = 0.0  # EMA of the weights, shadow = d*shadow + (1-d)*weights; 0 = no EMA
    seed: int = 0  # seeds the data order and python/numpy/torch RNGs (process r uses seed + r)
    out_dir: str = "runs/train"  # checkpoints/, metrics.csv, loss.png and final weights go here
    log_every: int = 10  # one metrics.csv row (mean over the last log_every steps) per N steps
    ckpt_every: int = 1000  # checkpoint every N steps and at the end; 0 = only at the end
    keep_checkpoints: int = 3  # how many of the newest checkpoints stay on disk

    def __post_init__(self) -> None:
        positive = {"steps": self.steps, "batch_size": self.batch_size,
                    "grad_accum": self.grad_accum, "log_every": self.log_every,
                    "keep_checkpoints": self.keep_checkpoints}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
        for name in ("warmup_steps", "ckpt_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 0, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"TrainConfig.lr_schedule={self.lr_schedule!r} is unknown; use one of "
                f"{LR_SCHEDULES}"
            )
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(
                f"TrainConfig.mixed_precision={self.mixed_precision!r} is unknown; use one of "
                f"{MIXED_PRECISIONS}"
            )
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError(
                f"TrainConfig.grad_clip ({self.grad_clip}) and weight_decay "
                f"({self.weight_decay}) must be >= 0 (grad_clip=0 turns clipping off)"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(
                f"TrainConfig.ema_decay must be in [0, 1) (0 turns EMA off), got {self.ema_decay}"
            )

    def with_steps(self, steps: int) -> TrainConfig:
        """This run stretched or shrunk to ``steps`` optimizer steps, keeping its shape:
        warm-up, logging and checkpoint intervals and the EMA's horizon ``1 / (1 - decay)``
        scale with the steps (so a short trial of a recipe still warms up, logs,
        checkpoints and averages like the recipe)."""
        if steps == self.steps:
            return self
        ratio = steps / self.steps

        def scaled(n: int, least: int) -> int:
            return max(least, round(n * ratio)) if n else 0

        horizon = 1.0 / (1.0 - self.ema_decay) * ratio if self.ema_decay else 0.0
        return replace(self, steps=steps, warmup_steps=scaled(self.warmup_steps, 0),
                       log_every=scaled(self.log_every, 1),
                       ckpt_every=scaled(self.ckpt_every, 1),
                       ema_decay=round(1.0 - 1.0 / horizon, 6) if horizon > 1 else 0.0)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the base learning rate used by optimizer step ``step`` (0-based).

    Warm-up is linear, ``(step + 1) / warmup_steps``, so the first step already moves the
    weights. After warm-up, with ``p`` the fraction of the remaining steps done (0 at the end
    of warm-up): constant 1, cosine ``(1 + cos(pi * p)) / 2``, linear ``1 - p``.

    Args:
        step: number of optimizer steps already taken.
        config: supplies ``warmup_steps``, ``steps`` and ``lr_schedule``.
    """
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    decay_steps = max(1, config.steps - config.warmup_steps)
    p = min(1.0, (step - config.warmup_steps) / decay_steps)
    if config.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    if config.lr_schedule == "linear":
        return 1.0 - p
    return 1.0
