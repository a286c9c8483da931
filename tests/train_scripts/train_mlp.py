"""Train the tiny MLP (or, with ``--gan``, a tiny conditional DCGAN on MNIST: two optimizers,
batch norm, the adversarial objective with AC-GAN's loss, a GeneratorMonitor; with ``--vae``,
a tiny ConvVAE on binarised MNIST) with the mmgen Trainer; run directly or under torchrun.

    python tests/train_scripts/train_mlp.py --out /tmp/run --steps 40 --ckpt-every 10
    torchrun --standalone --nproc_per_node 2 tests/train_scripts/train_mlp.py --out /tmp/run2
"""

from __future__ import annotations

import argparse
import time

import torch
from tiny_task import TinyRegression, mse_objective, tiny_mlp

from mmgen.train import TrainConfig, Trainer


def two_optimizer_objective(model: torch.nn.Module, batch: tuple, opt_idx: int) -> dict:
    """Optimizer 0 minimises the MSE through a sub-module call, optimizer 1 the MAE."""
    x, y = batch
    if opt_idx == 0:
        hidden = model[0](x)  # calls a sub-module, not model.forward: must still be synced
        pred = model[1:](hidden)
        return {"loss": torch.nn.functional.mse_loss(pred, y)}
    return {"loss": (model(x) - y).abs().mean()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True, help="run directory (TrainConfig.out_dir)")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16, help="global batch")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--ckpt-every", type=int, default=10)
    p.add_argument("--log-every", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--augment", type=float, default=0.05, help="input noise augmentation std")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep after each step")
    p.add_argument("--resume", default=None, help="'latest' or a checkpoint directory")
    p.add_argument("--two-optimizers", action="store_true",
                   help="optimizer 0 trains the first layer, optimizer 1 the rest")
    p.add_argument("--gan", action="store_true", help="train gan/dcgan/tiny on MNIST instead")
    p.add_argument("--vae", action="store_true", help="train vae/conv/tiny on MNIST instead")
    args = p.parse_args()

    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=3e-3, lr_schedule="cosine",
        warmup_steps=5, grad_accum=args.grad_accum, grad_clip=0.5, ema_decay=0.9, seed=7,
        out_dir=args.out, log_every=args.log_every, ckpt_every=args.ckpt_every,
        keep_checkpoints=2)

    def slow_down(trainer: Trainer, step: int, logs: dict[str, float]) -> None:
        time.sleep(args.sleep)  # lets a test kill the run reliably in the middle

    model, objective, optimizers = tiny_mlp(dropout=args.dropout), mse_objective, None
    if args.two_optimizers:
        objective = two_optimizer_objective
        first = list(model[0].parameters())
        rest = [p for p in model.parameters() if all(p is not f for f in first)]
        optimizers = [torch.optim.AdamW(first, lr=1e-3), torch.optim.SGD(rest, lr=1e-2)]
    data = TinyRegression(augment=args.augment)
    callbacks = [slow_down]
    if args.gan:
        import mmgen
        from mmgen.data import MNIST
        from mmgen.gan.objective import GANObjective
        from mmgen.metrics.monitor import GeneratorMonitor
        from mmgen.metrics.onestep import lenet_input

        torch.manual_seed(config.seed)
        model, objective, data = (mmgen.create_model("gan/dcgan/tiny", aux_classifier=True),
                                  GANObjective(aux_weight=1.0), MNIST("test", normalize=True))
        optimizers = [torch.optim.Adam(model.discriminator.parameters(), 2e-4, betas=(0.5, 0.999)),
                      torch.optim.Adam(model.generator.parameters(), 2e-4, betas=(0.5, 0.999))]
        lenet = mmgen.load("mnist-lenet5").eval()
        real = torch.stack([data[i][0] for i in range(100)])  # (100, 1, 28, 28) in [-1, 1]
        monitor = GeneratorMonitor(lenet, lenet.forward_features(real).detach(), every=10,
                                   num_samples=100, labels=(torch.arange(100) % 10)[:, None],
                                   preprocess=lambda x: lenet_input(lenet, x))
        callbacks.append(monitor)
    if args.vae:
        import mmgen
        from mmgen.data import MNIST
        from mmgen.data.mnist import binarize
        from mmgen.vae.objective import ELBOObjective

        torch.manual_seed(config.seed)
        model, objective, optimizers = mmgen.create_model("vae/conv/tiny"), ELBOObjective(), None
        data = MNIST("test", transform=binarize)
    trainer = Trainer(model, objective, data, config, optimizers=optimizers,
                      callbacks=callbacks)
    metrics = trainer.fit(resume=args.resume)
    if trainer.is_main_process:
        loss = metrics["loss_0" if args.two_optimizers or args.gan else "loss"]
        print(f"done step={int(metrics['step'])} loss={loss:.6f}", flush=True)


if __name__ == "__main__":
    main()
