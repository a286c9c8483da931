"""The one training loop of mmgen, on top of accelerate.

A model plugs in through an *objective*, ``objective(model, batch) -> {"loss": tensor, ...}``
(``objective(model, batch, opt_idx)`` when several optimizers are given, e.g. a GAN's D and
G). The trainer owns everything else: data order, distribution, mixed precision, gradient
accumulation and clipping, LR schedules, EMA, logging and deterministic checkpoint/resume
(``resume="latest"`` skips damaged checkpoints, with a warning, and resumes from the newest
usable one).
"""

from __future__ import annotations

import math
import os
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import (
    DistributedDataParallelKwargs,
    GradientAccumulationPlugin,
    gather_object,
    send_to_device,
    set_seed,
)
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import Dataset, default_collate
from tqdm.auto import tqdm

from mmgen.checkpoint import UnsafeCheckpointError, check_shapes, save_state_dict
from mmgen.data.sampler import ShardedBatchSampler
from mmgen.device import resolve_dtype
from mmgen.train import state as run_files
from mmgen.train.config import TrainConfig, lr_factor
from mmgen.train.ema import EMA

Objective = Callable[..., dict[str, Any]]
Callback = Callable[["Trainer", int, dict[str, float]], None]
# What reading and checking a checkpoint raises when it cannot be resumed from: a missing,
# damaged (CorruptCheckpointError is a ValueError) or unsafe file, or state that does not fit
# this trainer (ValueError).
UNUSABLE_CHECKPOINT = (FileNotFoundError, ValueError, UnsafeCheckpointError)


class _ObjectiveModule(nn.Module):
    """Runs the objective inside ``forward``.

    DDP only synchronises gradients of a backward that follows a call of the *wrapped*
    module. Wrapping the objective (not the bare model) lets objectives call any method of
    the model (``model.encode``, ``model.discriminator``, ...) and still be synchronised.
    """

    def __init__(self, model: nn.Module, objective: Objective, several_optimizers: bool):
        super().__init__()
        self.model = model
        self.objective = objective
        self.several_optimizers = several_optimizers

    def forward(self, batch: Any, opt_idx: int) -> dict[str, Any]:
        if self.several_optimizers:
            return self.objective(self.model, batch, opt_idx)
        return self.objective(self.model, batch)


class Trainer:
    """Train ``model`` by minimising ``objective`` over ``dataset``.

    Args:
        model: the network; trained in place (``trainer.model`` is the same object).
        objective: ``objective(model, batch) -> dict`` with a scalar ``"loss"`` tensor to
            minimise; other scalar entries are logged, non-scalar entries are ignored. With
            several optimizers it is called as ``objective(model, batch, opt_idx)``, once per
            optimizer per micro-batch, and only optimizer ``opt_idx`` steps on that loss.
        dataset: a map-style dataset (``len`` and ``[i]``); its order comes from a seeded
            :class:`~mmgen.data.ShardedBatchSampler`, so random augmentation must use the
            global torch/numpy/python RNGs (their states are checkpointed) to stay resumable.
        config: the run's :class:`TrainConfig`.
        optimizers: optimizers over the model's parameters; default one AdamW with
            ``config.lr`` and ``config.weight_decay``. Each gets its own warm-up + schedule,
            applied as a multiplier of its own learning rate.
        collate_fn: turns a list of samples into a batch (default ``default_collate``).
        callbacks: ``fn(trainer, step, logs)`` called on every process after every optimizer
            step with that step's process-averaged scalars. Do file I/O only when
            ``trainer.is_main_process``; draw random numbers from your own
            ``torch.Generator`` or resumed runs will differ from uninterrupted ones.
    """

    def __init__(self, model: nn.Module, objective: Objective, dataset: Dataset,
                 config: TrainConfig, optimizers: Sequence[torch.optim.Optimizer] | None = None,
                 collate_fn: Callable[[list[Any]], Any] | None = None,
                 callbacks: Sequence[Callback] = ()):
        optimizers = list(optimizers) if optimizers else [torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay)]
        self.config = config
        self.accelerator = _make_accelerator(config, several_optimizers=len(optimizers) > 1)
        self.is_main_process = self.accelerator.is_main_process
        self.sampler = ShardedBatchSampler(
            len(dataset), config.batch_size, rank=self.accelerator.process_index,
            world_size=self.accelerator.num_processes, grad_accum=config.grad_accum,
            seed=config.seed)
        self.model = model
        self.dataset = dataset
        self.collate_fn = collate_fn or default_collate
        self.callbacks = list(callbacks)
        self.schedulers = [LambdaLR(opt, lambda s: lr_factor(s, config)) for opt in optimizers]
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        # The objective calls the compiled module (same parameters); checkpoints, EMA and
        # export keep using `model` itself, whose names and state dict do not change.
        net = torch.compile(model) if config.compile else model
        wrapped = _ObjectiveModule(net, objective, several_optimizers=len(optimizers) > 1)
        self._wrapped, *self.optimizers = self.accelerator.prepare(wrapped, *optimizers)
        # After prepare: DDP has broadcast rank 0's weights, so every EMA starts equal.
        self.ema = EMA(model, config.ema_decay) if config.ema_decay > 0 else None
        self.out_dir = Path(config.out_dir)
        self.metrics = run_files.MetricsLog(self.out_dir, enabled=self.is_main_process)
        self.step = 0  # optimizer steps done
        self.last_metrics: dict[str, float] = {}  # the newest metrics.csv row
        self._window: dict[str, float] = {}  # sums of logged scalars since the last row
        self._window_steps = 0
        self.elapsed = 0.0  # seconds spent training, summed over resumed runs

    # -- public API --------------------------------------------------------------------------

    def fit(self, resume: str | os.PathLike | None = None) -> dict[str, float]:
        """Train until ``config.steps`` optimizer steps are done.

        Args:
            resume: ``None`` starts a fresh run (``out_dir`` must not hold checkpoints);
                ``"latest"`` continues from the newest usable checkpoint in ``out_dir``
                (a damaged one is skipped with a warning, and replaced when training reaches
                its step again; if none is usable a ValueError lists them); a path continues
                from that checkpoint directory. Resuming restores weights, EMA, optimizers,
                schedulers, grad scaler, RNG states and the data position, so the result is
                bitwise equal to an uninterrupted run.

        Returns:
            The last logged metrics row (``step``, the objective's scalars, ``grad_norm``,
            ``lr``, ``time``).
        """
        if resume is None:
            self._start_fresh()
        else:
            self._apply_checkpoint(*self._read_resume_checkpoint(resume))
        self.model.train()
        batches = self._micro_batches()
        elapsed_before, started = self.elapsed, time.perf_counter()
        with tqdm(total=self.config.steps, initial=self.step, desc="train",
                  disable=not self.is_main_process) as bar:
            while self.step < self.config.steps:
                micro_batches = [next(batches) for _ in range(self.config.grad_accum)]
                logs = self._train_step(micro_batches)
                self.step += 1
                self.elapsed = elapsed_before + time.perf_counter() - started
                self._after_step(logs, bar)
        self._export_final()
        return self.last_metrics

    def save_checkpoint(self) -> Path:
        """Write ``out_dir/checkpoints/step_{step:08d}/`` (all processes must call this)."""
        path = run_files.checkpoint_dir(self.out_dir, self.step)
        rng_states = gather_object([run_files.capture_rng()])  # one entry per process
        if self.is_main_process:
            run_files.write_checkpoint(
                path, self.model.state_dict(),
                self.ema.state_dict() if self.ema else None, self._train_state(), rng_states)
            run_files.prune_checkpoints(self.out_dir, self.config.keep_checkpoints, self.step)
            self.metrics.plot()
        self.accelerator.wait_for_everyone()
        return path

    def ema_model(self) -> nn.Module:
        """A copy of the model holding the EMA weights (the trained model is untouched)."""
        if self.ema is None:
            raise RuntimeError("EMA is off; set TrainConfig.ema_decay > 0 (e.g. 0.999) to keep one")
        return self.ema.averaged_model(self.model)

    def final_model(self) -> nn.Module:
        """The model to export after training, in eval mode: the EMA copy if an EMA is kept,
        else the trained model itself."""
        return (self.ema_model() if self.ema is not None else self.model).eval()

    # -- one optimizer step ------------------------------------------------------------------

    def _micro_batches(self) -> Iterator[Any]:
        # Loads in the main process: DataLoader workers would re-seed their RNGs on resume.
        for indices in self.sampler:
            batch = self.collate_fn([self.dataset[i] for i in indices])
            yield send_to_device(batch, self.accelerator.device)

    def _train_step(self, micro_batches: list[Any]) -> dict[str, float]:
        """One optimizer step: a pass per optimizer, then EMA; returns process-mean scalars."""
        logs: dict[str, list[torch.Tensor]] = {}
        for i in range(len(self.optimizers)):
            for key, value in self._optimizer_pass(i, micro_batches).items():
                logs.setdefault(key, []).append(value)
        if self.ema is not None:
            self.ema.update(self.model)
        keys = list(logs)  # same order on every process: the objective's keys, then ours
        means = torch.stack([torch.stack(logs[k]).double().mean().cpu() for k in keys])
        means = self.accelerator.reduce(means.to(self.accelerator.device), reduction="mean")
        return dict(zip(keys, means.cpu().tolist(), strict=True))

    def _optimizer_pass(self, i: int, micro_batches: list[Any]) -> dict[str, torch.Tensor]:
        """Accumulate gradients over the micro-batches, clip, step optimizer ``i`` only."""
        acc, opt, suffix = self.accelerator, self.optimizers[i], ""
        if len(self.optimizers) > 1:
            suffix = f"_{i}"
        self._wrapped.zero_grad(set_to_none=True)  # drop gradients left by the other passes
        scalars: dict[str, list[torch.Tensor]] = {}
        for batch in micro_batches:
            # accumulate(): no DDP all-reduce before the last micro-batch; loss / grad_accum
            with acc.accumulate(self._wrapped):
                with acc.autocast():
                    out = self._wrapped(batch, i)
                acc.backward(_checked_loss(out))
            for key, value in _scalars(out).items():
                scalars.setdefault(f"loss{suffix}" if key == "loss" else key, []).append(value)
        params = [p for group in opt.param_groups for p in group["params"]]
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        logs = {k: torch.stack(v).mean() for k, v in scalars.items()}
        logs[f"grad_norm{suffix}"] = acc.clip_grad_norm_(params, max_norm).detach().float()
        logs[f"lr{suffix}"] = torch.tensor(float(opt.param_groups[0]["lr"]), dtype=torch.float64)
        opt.step()
        self.schedulers[i].step()
        opt.zero_grad(set_to_none=True)
        return logs

    def _after_step(self, logs: dict[str, float], bar: tqdm) -> None:
        """Logging, callbacks and checkpoints after optimizer step ``self.step``."""
        cfg = self.config
        for key, value in logs.items():
            self._window[key] = self._window.get(key, 0.0) + value
        self._window_steps += 1
        if self.step % cfg.log_every == 0 or self.step == cfg.steps:
            row = {k: v / self._window_steps for k, v in self._window.items()}
            self.last_metrics = {"step": float(self.step), **row, "time": self.elapsed}
            self.metrics.append(self.last_metrics)
            self._window, self._window_steps = {}, 0
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if "loss" in k})
        modes = [m.training for m in self.model.modules()]
        for callback in self.callbacks:
            callback(self, self.step, logs)
        for module, mode in zip(self.model.modules(), modes, strict=True):
            module.training = mode  # a callback that sampled in eval mode must not leak it
        bar.update(1)
        if (cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or self.step == cfg.steps:
            self.save_checkpoint()

    # -- start, resume, finish ---------------------------------------------------------------

    def _start_fresh(self) -> None:
        existing = run_files.list_checkpoints(self.out_dir)
        if existing:
            raise FileExistsError(
                f"out_dir {self.out_dir} already holds checkpoints (newest {existing[-1].name}). "
                "Pass resume='latest' to continue that run, or use a new/empty out_dir."
            )
        set_seed(self.config.seed, device_specific=True)  # process r uses seed + r
        self.metrics.reset()

    def _read_resume_checkpoint(self, resume: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
        """The checkpoint ``fit(resume=...)`` continues from, read and checked (see
        :meth:`_read_checkpoint`); nothing of this trainer is changed yet."""
        if str(resume) == "latest":
            return self._newest_usable_checkpoint()
        path = Path(resume)
        try:
            return path, self._read_checkpoint(path)
        except ValueError as e:  # the user chose this checkpoint: no fallback
            raise ValueError(
                f"cannot resume from {path}: {e}. Pass another checkpoint directory of "
                f"{path.parent}, or resume='latest' to use the newest usable one."
            ) from e

    def _newest_usable_checkpoint(self) -> tuple[Path, dict[str, Any]]:
        """Read the checkpoints newest first; warn about each unusable one that is skipped.

        Every process reads the same files, so all of them skip the same checkpoints.
        """
        root = self.out_dir / "checkpoints"
        existing = run_files.list_checkpoints(self.out_dir)
        if not existing:
            raise FileNotFoundError(
                f"resume='latest' but {root} holds no checkpoint; "
                "check TrainConfig.out_dir, or pass resume=None to start a fresh run."
            )
        broken: list[tuple[Path, str]] = []
        for path in reversed(existing):
            try:
                ckpt = self._read_checkpoint(path)
            except UNUSABLE_CHECKPOINT as e:
                broken.append((path, str(e).replace(f"{path}{os.sep}", "")))
                continue
            for bad, reason in broken:
                warnings.warn(
                    f"checkpoint {bad} is unusable ({reason}); resuming from the older "
                    f"checkpoint {path.name} instead and training the steps after it again.",
                    stacklevel=4)  # fit's caller
            return path, ckpt
        raise _no_usable_checkpoint(root, broken)

    def _train_state(self) -> dict[str, Any]:
        """The contents of train_state.pt; resuming checks them against
        ``run_files.TRAIN_STATE_SCHEMA``, so a new entry goes there too."""
        scaler = self.accelerator.scaler
        return {
            "step": self.step,
            "sampler": self.sampler.state_dict(),
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "schedulers": [sched.state_dict() for sched in self.schedulers],
            "scaler": scaler.state_dict() if scaler is not None else None,
            "window": {"sums": dict(self._window), "steps": self._window_steps},
            "last_metrics": dict(self.last_metrics),
            "elapsed": self.elapsed,
            "world_size": self.accelerator.num_processes,
            "config": asdict(self.config),
        }

    def _read_checkpoint(self, path: Path) -> dict[str, Any]:
        """Read the whole checkpoint at ``path`` and check that it fits this trainer, so that
        :meth:`_apply_checkpoint` cannot fail half-way; nothing of this trainer is changed.

        Raises:
            FileNotFoundError, ValueError, UnsafeCheckpointError: the checkpoint cannot be
                resumed from (:data:`UNUSABLE_CHECKPOINT`); the message names the file.
        """
        ckpt = run_files.read_checkpoint(path, self.accelerator.process_index)
        name = type(self.model).__name__
        check_shapes(_shapes(self.model.state_dict()), _shapes(ckpt["model"]),
                     f"{path / 'model.safetensors'} into {name}")
        if self.ema is not None and ckpt["ema"] is not None:
            check_shapes(_shapes(self.ema.state_dict()), _shapes(ckpt["ema"]),
                         f"{path / 'ema.safetensors'} into the EMA of {name}")
        self._check_train_state_fits(path / "train_state.pt", ckpt["train_state"])
        return ckpt

    def _check_train_state_fits(self, file: Path, state: dict[str, Any]) -> None:
        """A ValueError unless a (well-formed) train state fits these optimizers and seed."""
        saved = [[len(g["params"]) for g in sd["param_groups"]] for sd in state["optimizers"]]
        ours = [[len(g["params"]) for g in opt.param_groups] for opt in self.optimizers]
        if saved != ours or len(state["schedulers"]) != len(self.schedulers):
            raise ValueError(
                f"{file} holds {len(saved)} optimizer state(s) with parameter groups of sizes "
                f"{saved} (and {len(state['schedulers'])} LR schedule(s)) but this trainer's "
                f"optimizers have {ours}; resume with the optimizers the run was started with"
            )
        seed = state["sampler"]["seed"]
        if seed != self.sampler.seed:
            raise ValueError(
                f"{file} was saved with seed={seed} but TrainConfig.seed={self.sampler.seed}; "
                "resume with the run's seed to continue its data order"
            )

    def _apply_checkpoint(self, path: Path, ckpt: dict[str, Any]) -> None:
        """Load every piece of state of a checkpoint read by :meth:`_read_checkpoint`."""
        state = ckpt["train_state"]
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None and ckpt["ema"] is not None:
            self.ema.load_state_dict(ckpt["ema"])
        elif self.ema is not None:
            warnings.warn(f"{path} has no EMA weights; the EMA restarts from the current weights",
                          stacklevel=3)
            self.ema = EMA(self.model, self.config.ema_decay)
        for opt, sd in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(sd)
        for sched, sd in zip(self.schedulers, state["schedulers"], strict=True):
            sched.load_state_dict(sd)
        if self.accelerator.scaler is not None and state["scaler"] is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        self.sampler.load_state_dict(state["sampler"])
        self.step = int(state["step"])
        self._window = dict(state["window"]["sums"])
        self._window_steps = int(state["window"]["steps"])
        self.last_metrics = dict(state["last_metrics"])
        self.elapsed = float(state["elapsed"])
        self.metrics.truncate(self.step)
        if ckpt["rng"] is None:
            warnings.warn(
                f"{path} was written by {state['world_size']} process(es), so process "
                f"{self.accelerator.process_index} has no saved RNG state; it is re-seeded and "
                "the run will not be bitwise equal to an uninterrupted one.", stacklevel=3)
            set_seed(self.config.seed + self.step, device_specific=True)
        else:
            run_files.restore_rng(ckpt["rng"])  # last: nothing may draw random numbers after

    def _export_final(self) -> None:
        """Write out_dir/model.safetensors (+ ema.safetensors) and the final loss plot."""
        if self.is_main_process:
            save_state_dict(self.model.state_dict(), self.out_dir / "model.safetensors")
            if self.ema is not None:
                save_state_dict(self.ema.state_dict(), self.out_dir / "ema.safetensors")
            self.metrics.plot()
        self.accelerator.wait_for_everyone()


def resolve_mixed_precision(mode: str) -> str:
    """accelerate's ``mixed_precision`` for a TrainConfig value: ``"auto"`` becomes ``"bf16"``
    where the training device computes bf16 natively (:func:`mmgen.device.resolve_dtype`),
    else ``"no"``; other values pass through."""
    if mode != "auto":
        return mode
    return "bf16" if resolve_dtype("auto", "auto") == torch.bfloat16 else "no"


def _make_accelerator(config: TrainConfig, several_optimizers: bool) -> Accelerator:
    """An Accelerator for this config, with errors that say how to fix a bad setup."""
    # On a machine without GPUs, torchrun-launched processes only form a (gloo) process group
    # if accelerate is told to use the CPU.
    cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    if config.mixed_precision == "fp16" and PartialState(cpu=cpu).device.type == "cpu":
        raise ValueError("mixed_precision='fp16' needs a GPU (fp16 loss scaling is not "
                         "supported on CPU); use mixed_precision='bf16' or 'no' on CPU.")
    kwargs = dict(
        cpu=cpu,
        mixed_precision=resolve_mixed_precision(config.mixed_precision),
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=config.grad_accum, sync_with_dataloader=False),
        # With several optimizers, each pass leaves the other optimizers' parameters unused.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=several_optimizers)],
    )
    try:
        return Accelerator(**kwargs)
    except ValueError as e:
        if "already been initialized" not in str(e):
            raise
        # accelerate keeps one global state per process and refuses a second Accelerator with
        # another mixed precision; a new Trainer (e.g. in a notebook or test) starts over.
        AcceleratorState._reset_state()
        return Accelerator(**kwargs)


def _no_usable_checkpoint(root: Path, broken: list[tuple[Path, str]]) -> ValueError:
    """The error of ``resume="latest"`` when every checkpoint (``(path, reason)``) is broken."""
    listing = "; ".join(f"{path.name}: {textwrap.shorten(reason, 120, placeholder=' ...')}"
                        for path, reason in broken)
    return ValueError(
        f"resume='latest' found no usable checkpoint in {root} ({listing}). To start the run "
        f"over, delete {root} (or use a new out_dir) and start without resuming "
        "(resume=None). To continue it, repair or restore the damaged files, or, if the "
        "model, optimizers or seed changed since the run was saved, resume with the original "
        "ones."
    )


def _shapes(state_dict: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def _checked_loss(out: Any) -> torch.Tensor:
    """The objective's loss, or a clear error about what the objective returned instead."""
    if not isinstance(out, dict) or "loss" not in out:
        got = sorted(out) if isinstance(out, dict) else type(out).__name__
        raise TypeError(f"the objective must return a dict with a 'loss' entry, got {got}")
    loss = out["loss"]
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise TypeError(f"objective output 'loss' must be a scalar tensor, got {loss!r:.80}")
    if not loss.requires_grad:
        raise RuntimeError("the objective's 'loss' does not require grad; was it detached or "
                           "computed under torch.no_grad()?")
    return loss


def _scalars(out: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The loggable (scalar) entries of an objective's output, detached, as fp32 tensors."""
    logs = {}
    for key, value in out.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            logs[key] = value.detach().float().reshape(())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            logs[key] = torch.tensor(float(value))
    return logs
