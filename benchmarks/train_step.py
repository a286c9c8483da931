"""Training steps per second of the shapes-t2i recipe's U-Net: mmgen's Trainer (fp32; bf16
autocast as the recipe runs; the training fast path: bf16 + channels_last + torch.compile)
against the same network as diffusers' ``UNet2DConditionModel`` trained in a plain loop.

    python benchmarks/train_step.py              # 100 steps per configuration, batch 64
    python benchmarks/train_step.py --steps 40 --no-compile

Every configuration starts from the same weights (the diffusers copy is made from mmgen's
state dict) and does the same work per step: a batch of 64 16x16x4 latents and Shapes
captions, the captions through the frozen text tower of the bundled shapes-t2i (10 % dropped
for guidance), a timestep and noise per sample, the Min-SNR-5 weighted eps loss, backward,
gradient clipping at 1, AdamW (lr 6e-4). Steps per second are measured over the steps after
the first ``--warmup`` (which include compiling); the loss is each run's mean over those same
steps (the runs draw their noise differently, so losses agree to sampling noise, not bit
for bit).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

BATCH = 64


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch
    from diffusers import UNet2DConditionModel

    import mmgen
    from mmgen.data import shapes
    from mmgen.diffusion.objective import DiffusionObjective, TextConditionedObjective
    from mmgen.diffusion.unet import UNet, UNetConfig
    from mmgen.interop.diffusers import to_diffusers_config
    from mmgen.recipes.t2i import T2I_RECIPES
    from mmgen.train import TrainConfig, Trainer

    recipe = T2I_RECIPES["shapes-t2i"]
    pipe = mmgen.load("shapes-t2i")
    text, tokenizer = pipe.text_encoder.eval().requires_grad_(False), pipe.tokenizer
    torch.manual_seed(0)
    init = UNet(UNetConfig(**recipe.network)).state_dict()
    n = args.steps * BATCH
    captions = [shapes.sample_caption("train", 0, i, "varied") for i in range(n)]
    latents = torch.randn(n, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    data = [{"latent": latents[i], "caption": captions[i]} for i in range(n)]
    objective = TextConditionedObjective(DiffusionObjective(recipe.schedule, 5.0), text,
                                         tokenizer, 0.1)

    def collate(items):
        return {"latent": torch.stack([it["latent"] for it in items]),
                "caption": [it["caption"] for it in items]}

    def mmgen_run(**fast) -> tuple[list[float], list[float]]:
        unet = UNet(UNetConfig(**recipe.network))
        unet.load_state_dict(init)
        times, losses = [], []

        def record(trainer, step, logs):
            times.append(time.perf_counter())
            losses.append(logs["loss"])

        config = TrainConfig(steps=args.steps, batch_size=BATCH, lr=6e-4, seed=0,
                             out_dir=tempfile.mkdtemp(prefix="mmgen-train-bench-"),
                             ckpt_every=0, log_every=args.steps, **fast)
        Trainer(unet, objective, data, config, collate_fn=collate,
                callbacks=[record]).fit()
        return times, losses

    def diffusers_run() -> tuple[list[float], list[float]]:
        ref = UNet2DConditionModel(**{k: v for k, v in to_diffusers_config(
            UNetConfig(**recipe.network)).items() if not k.startswith("_")})
        ref.load_state_dict(init)
        ref.train()
        opt = torch.optim.AdamW(ref.parameters(), lr=6e-4, weight_decay=0.0)
        diffusion = objective.objective
        times, losses = [], []
        torch.manual_seed(0)
        for step in range(args.steps):
            batch = collate(data[step * BATCH:(step + 1) * BATCH])
            drop = (torch.rand(BATCH) < 0.1).tolist()
            with torch.no_grad():
                context = text.encode_context(tokenizer(
                    ["" if d else c for c, d in zip(batch["caption"], drop, strict=True)]))
            x0 = batch["latent"]
            t = torch.randint(0, 1000, (BATCH,))
            noise = torch.randn_like(x0)
            pred = ref(recipe.schedule.add_noise(x0, noise, t), t, context).sample
            per_sample = (pred - noise).pow(2).flatten(1).mean(1)
            loss = (diffusion.loss_weights(t) * per_sample).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
            opt.step()
            times.append(time.perf_counter())
            losses.append(loss.item())
        return times, losses

    configs = {"diffusers UNet2DConditionModel, plain loop, fp32": diffusers_run,
               "mmgen Trainer, fp32": lambda: mmgen_run(),
               "mmgen Trainer, bf16 autocast (the recipe)":
                   lambda: mmgen_run(mixed_precision="auto"),
               "mmgen Trainer, fast (bf16 + channels_last)":
                   lambda: mmgen_run(mixed_precision="auto", channels_last=True)}
    if not args.no_compile:
        configs["mmgen Trainer, fast (bf16 + channels_last + compile)"] = \
            lambda: mmgen_run(mixed_precision="auto", channels_last=True, compile=True)
    rows = []
    for name, run in configs.items():
        start = time.perf_counter()
        times, losses = run()
        w = args.warmup
        rate = (len(times) - w - 1) / (times[-1] - times[w])
        rows.append({"config": name, "steps_per_s": rate,
                     "first_steps_s": times[w] - start, "loss": statistics.mean(losses[w:])})
    base = rows[0]["steps_per_s"]
    for r in rows:
        r["speedup"] = r["steps_per_s"] / base
    result = {"parameters": sum(v.numel() for v in init.values()), "batch": BATCH,
              "steps": args.steps, "warmup": args.warmup, "threads": torch.get_num_threads(),
              "rows": rows}
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


def markdown(result: dict) -> str:
    """The markdown of a ``--json`` result (what the script prints without it)."""
    lines = [f"shapes-t2i U-Net ({result['parameters'] / 1e6:.1f} M parameters), batch "
             f"{result['batch']}, {result['steps']} steps per configuration, rates over steps "
             f"{result['warmup'] + 1}-{result['steps']}, {result['threads']} threads.", "",
             "| configuration | steps / s | x diffusers | first steps incl. compile (s) | "
             "mean loss |", "|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['steps_per_s']:.2f} | {r['speedup']:.2f} | "
              f"{r['first_steps_s']:.1f} | {r['loss']:.4f} |" for r in result["rows"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
