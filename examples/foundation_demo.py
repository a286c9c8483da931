"""End-to-end demo of mmgen's foundation (what `make demo` runs until text-to-image lands).

1. `mmgen info`: versions, device, CPU capability, attention backends.
2. A small classifier built from `mmgen.nn` blocks (ResBlock, Downsample, Attention) is
   trained on scikit-learn's bundled 8x8 digits by the shared Trainer (warm-up + cosine LR,
   EMA, bf16 autocast where the CPU has it, checkpoints).
3. The run is interrupted half-way and resumed from its checkpoint; the result is compared
   bit for bit with an uninterrupted run.
4. The model is saved with `save_pretrained`, re-loaded with `mmgen.load`, and evaluated on
   held-out digits.
5. The bundled models, offline: `mnist-lenet5` / `mnist-resnet18` on the 1,000 held-out MNIST
   digits, and `shapes-classifier` judging Shapes images against their captions.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

import mmgen
from mmgen.device import cpu_has_bf16, system_info
from mmgen.nn import Attention, Downsample, ResBlock
from mmgen.train import TrainConfig, Trainer


@dataclasses.dataclass
class DigitNetConfig:
    channels: int = 32  # width of the ResBlocks
    heads: int = 4  # attention heads over the 4x4 feature map
    classes: int = 10  # output classes


class DigitNet(mmgen.PretrainedModel):
    """8x8 digit -> ResBlock -> Downsample -> ResBlock -> self-attention -> logits."""

    config_class = DigitNetConfig

    def __init__(self, config: DigitNetConfig):
        super().__init__(config)
        c = config.channels
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.block1 = ResBlock(c, c, temb_channels=None, groups=8)
        self.down = Downsample(c)
        self.block2 = ResBlock(c, 2 * c, temb_channels=None, groups=8)
        self.attn = Attention(2 * c, heads=config.heads, head_dim=2 * c // config.heads)
        self.head = nn.Linear(2 * c, config.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block2(self.down(self.block1(self.stem(x))))  # (B, 2c, 4, 4)
        tokens = h.flatten(2).transpose(1, 2)  # (B, 16, 2c)
        tokens = tokens + self.attn(tokens)
        return self.head(tokens.mean(dim=1))  # (B, classes)


@mmgen.register_model("demo/digitnet")
def digitnet(**overrides) -> DigitNet:
    return DigitNet(DigitNetConfig(**overrides))


def digits_split() -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's 1,797 real 8x8 digits: a fixed 1,437 / 360 split."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0  # [0, 1]
    y = torch.tensor(y)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1437], perm[1437:]
    return TensorDataset(x[train], y[train]), TensorDataset(x[test], y[test])


def objective(model: nn.Module, batch) -> dict:
    x, y = batch
    x = x + 0.05 * torch.randn_like(x)  # light noise augmentation (from the saved RNG)
    logits = model(x)
    return {"loss": F.cross_entropy(logits, y),
            "acc": (logits.argmax(1) == y).float().mean()}


def train(config: TrainConfig, data, stop_at: int | None = None, resume=None) -> DigitNet:
    """Train a fresh DigitNet; ``stop_at`` interrupts the run after that step."""

    class Interrupt(Exception):
        pass

    def interrupt(trainer, step, logs):
        if step == stop_at:
            raise Interrupt

    torch.manual_seed(config.seed)
    model = mmgen.create_model("demo/digitnet")
    try:
        Trainer(model, objective, data, config, callbacks=[interrupt]).fit(resume=resume)
    except Interrupt:
        print(f"  ... interrupted after step {stop_at}")
    return model


@torch.no_grad()
def accuracy(model: nn.Module, data: TensorDataset) -> float:
    x, y = data.tensors
    return (model.eval()(x).argmax(1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", default=None, help="keep the run here (default: temp dir)")
    args = parser.parse_args()

    print("== 1. mmgen info")
    for key, value in system_info().items():
        print(f"  {key:<20} {value}")

    out = Path(args.out or tempfile.mkdtemp(prefix="mmgen-demo-"))
    train_set, test_set = digits_split()
    precision = "bf16" if cpu_has_bf16() else "no"
    cfg = dict(steps=args.steps, batch_size=64, lr=3e-3, lr_schedule="cosine",
               warmup_steps=args.steps // 10, ema_decay=0.99, mixed_precision=precision,
               ckpt_every=args.steps // 2, log_every=25, seed=0)

    print(f"\n== 2. train DigitNet on {len(train_set)} digits, {args.steps} steps, "
          f"mixed precision {precision}")
    t0 = time.perf_counter()
    full = train(TrainConfig(**cfg, out_dir=str(out / "uninterrupted")), train_set)
    print(f"  trained in {time.perf_counter() - t0:.1f} s; metrics.csv and loss.png in "
          f"{out / 'uninterrupted'}")

    print("\n== 3. interrupt half-way, then resume from the checkpoint")
    run = str(out / "resumed")
    train(TrainConfig(**cfg, out_dir=run), train_set, stop_at=args.steps // 2 + 7)
    resumed = train(TrainConfig(**cfg, out_dir=run), train_set, resume="latest")
    ref, got = full.state_dict(), resumed.state_dict()
    same = all(torch.equal(ref[k], got[k]) for k in ref)
    print(f"  resumed weights bitwise equal to the uninterrupted run: {same}")
    if not same:
        raise SystemExit("resume was not exact")

    print("\n== 4. save_pretrained -> mmgen.load -> evaluate on held-out digits")
    folder = full.save_pretrained(out / "digitnet")
    loaded = mmgen.load(folder)
    x = test_set.tensors[0]
    identical = torch.equal(full.eval()(x), loaded(x))
    print(f"  {folder}: {sorted(p.name for p in folder.iterdir())}; outputs identical: "
          f"{identical}")
    print(f"  test accuracy on {len(test_set)} held-out digits: {accuracy(loaded, test_set):.1%}")
    if args.out is None:
        shutil.rmtree(out)
    bundled_models()


def bundled_models() -> None:
    from mmgen.cnn.train import accuracy
    from mmgen.data.mnist import MNIST
    from mmgen.data.shapes import ShapesDataset
    from mmgen.metrics import shapes_adherence

    print("\n== 5. bundled models (offline)")
    for name, pad in (("mnist-lenet5", False), ("mnist-resnet18", True)):
        model = mmgen.load(name)
        test = MNIST("test", pad_to_32=pad, normalize=True)
        t0 = time.perf_counter()
        acc = accuracy(model, test)["accuracy"]
        print(f"  {name:<16} {acc:.1%} on {len(test)} held-out MNIST digits "
              f"({time.perf_counter() - t0:.1f} s)")
    batch = ShapesDataset("test_compositional", length=200, seed=3).as_tensors()
    result = shapes_adherence((batch["image"] + 1) / 2, batch["caption"], progress=False)
    print(f"  shapes-classifier on 200 renders of held-out compositions: {result}")
    wrong = batch["caption"][1:] + batch["caption"][:1]
    result = shapes_adherence((batch["image"] + 1) / 2, wrong, progress=False)
    print(f"  ... and against shuffled captions (should be low): {result.all}")


if __name__ == "__main__":
    main()
