"""A seeded, resumable, rank-sharded batch sampler for deterministic training.

The data order is a pure function of ``(seed, position)``, never of hidden state:

* The sample stream is the concatenation of one permutation per epoch; the permutation of
  epoch ``e`` comes from a ``torch.Generator`` seeded with a mix of ``(seed, e)``. A global
  batch may straddle two epochs, so every sample is seen exactly once per epoch.
* The only state is ``offset``, the number of samples of the stream already consumed by all
  processes together. Restoring it restores the exact position in the stream.
* Each global batch of ``batch_size`` indices is cut into ``grad_accum`` consecutive chunks
  (one per accumulation micro-step), and each chunk into ``world_size`` equal slices, one
  per rank. Any (processes x accumulation) split of the same global batch therefore sees
  the same samples per optimizer step.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit generator seed for ``(seed, epoch)`` (via numpy's SeedSequence)."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class ShardedBatchSampler(Sampler[list[int]]):
    """Yield this rank's micro-batches of dataset indices, forever, from a global offset.

    Args:
        num_samples: length of the dataset.
        batch_size: global batch size per optimizer step, summed over processes and
            accumulation micro-steps.
        rank: index of this process.
        world_size: number of processes.
        grad_accum: micro-batches per optimizer step on each process.
        seed: seeds the per-epoch permutations.
        shuffle: if False the stream is ``0, 1, ..., num_samples - 1`` repeated.
        offset: samples of the stream already consumed (by all ranks together).
    """

    def __init__(self, num_samples: int, batch_size: int, *, rank: int = 0, world_size: int = 1,
                 grad_accum: int = 1, seed: int = 0, shuffle: bool = True, offset: int = 0):
        if batch_size % (world_size * grad_accum) != 0:
            raise ValueError(
                f"batch_size={batch_size} is not divisible by world_size * grad_accum = "
                f"{world_size} * {grad_accum}; choose a global batch that is a multiple of "
                f"{world_size * grad_accum}."
            )
        if num_samples < batch_size:
            raise ValueError(
                f"the dataset has {num_samples} samples, fewer than one global batch "
                f"(batch_size={batch_size}); use a smaller batch_size or more data."
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.grad_accum = grad_accum
        self.micro_batch = batch_size // (world_size * grad_accum)
        self.seed = seed
        self.shuffle = shuffle
        self.offset = offset
        self._cached: tuple[int, torch.Tensor] | None = None  # (epoch, permutation)

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of the dataset in ``epoch`` (a function of ``seed`` and ``epoch`` only)."""
        if self._cached is None or self._cached[0] != epoch:
            if self.shuffle:
                g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
                perm = torch.randperm(self.num_samples, generator=g)
            else:
                perm = torch.arange(self.num_samples)
            self._cached = (epoch, perm)
        return self._cached[1]

    def global_batch(self, offset: int) -> list[int]:
        """The ``batch_size`` dataset indices at stream positions ``offset ...``."""
        out: list[int] = []
        while len(out) < self.batch_size:
            epoch, pos = divmod(offset + len(out), self.num_samples)
            take = min(self.batch_size - len(out), self.num_samples - pos)
            out += self.permutation(epoch)[pos:pos + take].tolist()
        return out

    def shard(self, global_batch: list[int]) -> list[list[int]]:
        """Cut a global batch into this rank's ``grad_accum`` micro-batches."""
        chunk = self.world_size * self.micro_batch
        start = self.rank * self.micro_batch
        return [global_batch[a * chunk + start:a * chunk + start + self.micro_batch]
                for a in range(self.grad_accum)]

    def __iter__(self) -> Iterator[list[int]]:
        # Reading self.offset at every batch lets the owner move the stream between batches.
        while True:
            micro_batches = self.shard(self.global_batch(self.offset))
            self.offset += self.batch_size
            yield from micro_batches

    def __len__(self) -> int:
        """Micro-batches per epoch on this rank (the stream itself is endless)."""
        return self.num_samples // self.batch_size * self.grad_accum

    def state_dict(self) -> dict[str, int]:
        """The position in the stream (plus the seed, to catch mismatched resumes)."""
        return {"offset": self.offset, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue the stream at a saved position."""
        if int(state["seed"]) != self.seed:
            raise ValueError(
                f"the sampler state was saved with seed={state['seed']} but this sampler has "
                f"seed={self.seed}; use the same seed to resume the same data order."
            )
        self.offset = int(state["offset"])
