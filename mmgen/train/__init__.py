"""The one training loop: :class:`Trainer` driven by a :class:`TrainConfig`."""

from mmgen.train.config import TrainConfig, lr_factor
from mmgen.train.ema import EMA
from mmgen.train.trainer import Trainer

__all__ = ["EMA", "TrainConfig", "Trainer", "lr_factor"]
