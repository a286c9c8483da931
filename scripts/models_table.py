"""Write docs/models.md: the CNN architectures and the bundled models, measured.

    python scripts/models_table.py            # prints the tables and rewrites docs/models.md

Parameters and MFLOPs are counted here (torch.utils.flop_counter; a multiply-add counts as
2 FLOPs, forward pass, batch 1). Accuracies and training times are read from the bundled
models' config.json, where `mmgen train --recipe NAME` recorded what it measured on the
exported fp16 weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import mmgen
from mmgen.hub import BUNDLED_DIR
from mmgen.registry import read_config

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURES = [  # (registered name, overrides, input (C, H, W))
    ("cnn/lenet5", {"input_size": 32}, (1, 32, 32)),
    ("cnn/alexnet", {}, (3, 224, 224)),
    ("cnn/vgg11", {}, (3, 224, 224)),
    ("cnn/vgg16_bn", {}, (3, 224, 224)),
    ("cnn/googlenet", {}, (3, 224, 224)),
    ("cnn/resnet18", {}, (3, 224, 224)),
    ("cnn/resnet50", {}, (3, 224, 224)),
    ("cnn/se_resnet50", {}, (3, 224, 224)),
    ("cnn/resnet18", {"stem": "small", "in_channels": 1, "num_classes": 10}, (1, 32, 32)),
    ("cnn/resnet18", {"stem": "small", "in_channels": 1, "num_classes": 10, "width": 16},
     (1, 32, 32)),
    ("cnn/attribute_net", {}, (3, 64, 64)),
]



def _bundled() -> list[str]:
    """Names of the models shipped in the package (not the user's installed ones)."""
    return sorted(p.name for p in BUNDLED_DIR.iterdir()
                  if (p / "config.json").is_file() or (p / "pipeline.json").is_file())

def count(name: str, overrides: dict, shape: tuple[int, ...]) -> tuple[int, float]:
    model = mmgen.create_model(name, **overrides).eval()
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *shape))
    return params, counter.get_total_flops() / 1e6


def architecture_table() -> list[str]:
    rows = ["| model | overrides | input | parameters | MFLOPs |", "|---|---|---|---:|---:|"]
    for name, overrides, shape in ARCHITECTURES:
        if name not in mmgen.list_models():
            continue
        params, mflops = count(name, overrides, shape)
        args = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "-"
        size = "x".join(map(str, shape))
        rows.append(f"| `{name}` | {args} | {size} | {params:,} | {mflops:,.1f} |")
    return rows


def bundled_table(family: str = "cnn") -> list[str]:
    """Bundled models of one family ("cnn" with MFLOPs at their input, "clip" or "vae")."""
    clip = family != "cnn"
    flops_col = "" if clip else " MFLOPs |"
    rows = [f"| bundled model | architecture | parameters |{flops_col} results (fp16 weights) "
            "| training time (2-core CPU) | size |",
            "|---|---|---:|" + ("" if clip else "---:|") + "---|---:|---:|"]
    for name in _bundled():
        if not (BUNDLED_DIR / name / "config.json").is_file():
            continue  # a pipeline folder
        meta = read_config(BUNDLED_DIR / name)
        info = meta.get("info") or {}
        model_family = str(meta.get("model", "")).split("/")[0]
        if "results" not in info or model_family != family:
            continue
        model = mmgen.load(name)
        params = sum(p.numel() for p in model.parameters())
        flops = ""
        if not clip:
            pre = info["preprocess"]
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model(torch.zeros(1, pre["channels"], pre["size"], pre["size"]))
            flops = f" {counter.get_total_flops() / 1e6:,.1f} |"
        results = {k: v for k, v in info["results"].items()
                   if k != "train_seconds" and not k.startswith("real/")}
        shown = "<br>".join(f"{k}: {v:.1f} dB" if k.endswith("psnr") else f"{k}: {v:.2%}"
                            for k, v in results.items())
        shown += real_images_summary(info["results"])
        size_mb = (BUNDLED_DIR / name / "model.safetensors").stat().st_size / 2**20
        rows.append(f"| `{name}` | `{meta['model']}` | {params:,} |{flops} {shown} "
                    f"| {info['results']['train_seconds'] / 60:.1f} min | {size_mb:.2f} MB |")
    return rows


def real_images_summary(results: dict[str, float]) -> str:
    """The lowest ``real/...`` results (issue #24's perturbed and generated inputs) of each
    kind, or "" if there are none: the full table is in docs/clip.md."""
    real = {k: v for k, v in results.items() if k.startswith("real/")}
    if not real:
        return ""
    lowest = []
    for kind in ("retrieval", "zero_shot"):
        key = min((k for k in real if k.split("/")[-1].startswith(kind)), key=real.get)
        lowest.append(f"{kind} {real[key]:.2%} ({'/'.join(key.split('/')[1:])})")
    return ("<br>real images (clean, blurred, noisy, JPEG, shifted, combined), lowest: "
            + ", ".join(lowest))


def pipeline_table() -> list[str]:
    """Bundled text-to-image pipelines: parameters per network, the recipe's adherence
    (DDIM 25 at the default guidance, which the recipe selected), training time, size."""
    rows = ["| bundled pipeline | parameters (denoiser / VAE / text) | default | results (fp16 "
            "weights) | denoiser training time (2-core CPU) | size |",
            "|---|---|---|---|---:|---:|"]
    for name in _bundled():
        folder = BUNDLED_DIR / name
        if not (folder / "pipeline.json").is_file():
            continue
        pipe = mmgen.load(name)
        if not hasattr(pipe, "unet"):
            continue  # a one-step generator: onestep_table
        counts = " / ".join(f"{sum(p.numel() for p in net.parameters()):,}"
                            for net in (pipe.unet, pipe.vae, pipe.text_encoder))
        results = pipe.unet.info["results"]
        shown = "<br>".join(f"{split}/{key}: {results[f'{split}/{key}']:.1%}"
                            for split in ("test", "test_compositional")
                            for key in ("adherence_all5", "color", "shape", "size", "position",
                                        "background"))
        cfg = pipe.config
        size_mb = sum(f.stat().st_size for f in folder.rglob("*.safetensors")) / 2**20
        rows.append(f"| `{name}` | {counts} | {cfg.sampler} {cfg.steps}, guidance "
                    f"{cfg.guidance} | {shown} | {results['train_seconds'] / 60:.1f} min "
                    f"| {size_mb:.2f} MB |")
    return rows


ONESTEP_KEYS = {  # the results shown per one-step generator (all: docs/results.md)
    "mnist-dcgan": ("label_accuracy", "worst_digit_accuracy", "lenet_fid", "lenet_fid_floor"),
    "shapes-dcgan": ("test/adherence_all5", "test_compositional/adherence_all5",
                     "arithmetic/turned"),
    "mnist-vae": ("test/nll_bits_per_dim", "test/nll_nats", "test/negative_elbo_nats"),
}


def onestep_table() -> list[str]:
    """Bundled one-step generators (GAN, VAE): parameters, conditions, main results."""
    rows = ["| bundled generator | network | parameters (G / D, or VAE) | conditions | results "
            "(fp16 weights) | training time (2-core CPU) | size |",
            "|---|---|---:|---|---|---:|---:|"]
    for name in _bundled():
        folder = BUNDLED_DIR / name
        if not (folder / "pipeline.json").is_file() or name not in ONESTEP_KEYS:
            continue
        pipe = mmgen.load(name)
        nets = [pipe.model.generator, pipe.model.discriminator] if hasattr(
            pipe.model, "generator") else [pipe.model]
        counts = " / ".join(f"{sum(p.numel() for p in n.parameters()):,}" for n in nets)
        info = pipe.model.info
        results = info["results"]
        shown = "<br>".join(f"{k}: {results[k]:.1%}" if "accuracy" in k or "adherence" in k
                            or "turned" in k else f"{k}: {results[k]:.4g}"
                            for k in ONESTEP_KEYS[name])
        size_mb = sum(f.stat().st_size for f in folder.rglob("*.safetensors")) / 2**20
        rows.append(f"| `{name}` | `{read_config(folder / 'model')['model']}` | {counts} | "
                    f"{pipe.config.conditioning} | {shown} | "
                    f"{results['train_seconds'] / 60:.1f} min | {size_mb:.2f} MB |")
    return rows


def benchmark_table() -> list[str]:
    path = ROOT / "docs" / "mnist_benchmark.json"
    if not path.exists():
        return ["(run `python scripts/mnist_benchmark.py` to fill this table)"]
    rows = ["| model (small stem, 1x32x32) | parameters | MFLOPs | steps x batch | test accuracy "
            "| training time (2-core CPU) |", "|---|---:|---:|---|---:|---:|"]
    for model, r in json.loads(path.read_text()).items():
        overrides = {"num_classes": 10, "in_channels": 1}
        overrides.update({"input_size": 32} if model == "lenet5" else {"stem": "small"})
        params, mflops = count(f"cnn/{model}", overrides, (1, 32, 32))
        rows.append(f"| `cnn/{model}` | {params:,} | {mflops:,.1f} | {r['steps']} x "
                    f"{r['batch_size']} | {r['test_accuracy']:.2%} | "
                    f"{r['train_seconds'] / 60:.1f} min |")
    return rows


def main() -> None:
    text = "\n".join([
        "# Models",
        "",
        "Produced by `python scripts/models_table.py`; do not edit by hand.",
        "",
        "## CNN architectures",
        "",
        "Parameters and forward MFLOPs at the given input size (batch 1; a multiply-add",
        "counts as 2 FLOPs). Parameter names follow torchvision; `mmgen.interop.from_torchvision`",
        "loads torchvision models and weight files.",
        "",
        *architecture_table(),
        "",
        "## Bundled classifiers",
        "",
        "Each is produced by `mmgen train --recipe NAME` (see `mmgen/recipes/`; add `--install`",
        "to install the result where `mmgen.load` finds it, `--install-dir mmgen/weights` to "
        "bundle it) and measured on the exported fp16 weights. The MNIST models train",
        "only on the 4,000 training digits of `mmgen.data.mnist` and are tested on the other",
        "1,000. `shapes-classifier` is the judge of the Shapes evaluation: it trains on all",
        "1,296 attribute combinations (the held-out colour-shape pairs are held out from",
        "generative models, not from their judge) with blur/noise/colour-shift augmentation, and",
        "is measured on 2,000 items of each split, clean and perturbed. Training times are",
        "wall-clock on the 2-core CPU (bf16 autocast for ResNet-18 and the Shapes classifier).",
        "`mnist-resnet18` is ResNet-18 at width 16 (`ResNetConfig.width`: 16/32/64/128",
        "channels, 1/16 of the parameters); trained on one thread beside another job, it",
        "reached 98.80%, where the full-width network (its recipe until 2026-12-03) reached",
        "99.10% in 12.3 min and took 21.3 MB in fp16.",
        "",
        *bundled_table("cnn"),
        "",
        "## Bundled CLIP",
        "",
        "`mmgen train --recipe shapes-clip` (`mmgen/recipes/clip.py`; two stages, see",
        "docs/clip.md: the time is stage 2's, stage 1 `shapes-clip-joint` took 45.7 min):",
        "zero-shot accuracy per attribute with prompts built from the attribute names",
        "(ensembles such as \"a red circle in the top left\", \"a red square in the top",
        "left\", ...; docs/clip.md) on",
        "1,000 items of `test` and `test_compositional` (colour-shape pairs the model never",
        "saw), and text->image retrieval over the 1,000 `test` images with their canonical",
        "captions (top hit has all five attributes right).",
        "",
        *bundled_table("clip"),
        "",
        "## Bundled autoencoder",
        "",
        "`mmgen train --recipe shapes-vae` (`mmgen/recipes/t2i.py`): the latent space of",
        "`shapes-t2i` (64x64x3 -> 16x16x4). Measured on 1,000 items of each split: PSNR of the",
        "reconstructions (through the posterior mean) and the share whose five attributes the",
        "`shapes-classifier` reads as the original's.",
        "",
        *bundled_table("vae"),
        "",
        "## Bundled text-to-image",
        "",
        "`mmgen train --recipe shapes-t2i` (`mmgen/recipes/t2i.py`): a latent U-Net on",
        "`shapes-vae` latents, cross-attending to the `shapes-clip` text tower (frozen). Shapes",
        "adherence of images generated from 500 canonical prompts per split (the",
        "`shapes-classifier` reads each attribute; *adherence_all5*: all five right). Every",
        "sampler, FID and a guidance sweep: docs/results.md.",
        "",
        *pipeline_table(),
        "",
        "## Bundled one-step generators",
        "",
        "`mmgen train --recipe NAME` (`mmgen/recipes/onestep.py`; docs/gan.md): the DCGANs",
        "are measured by the bundled classifiers on what they generate, the VAE by its",
        "importance-weighted test NLL. Every number, with pictures: docs/results.md.",
        "",
        *onestep_table(),
        "",
        "## Every family on MNIST, one short schedule",
        "",
        "`python scripts/mnist_benchmark.py`: each architecture with the 3x3 small stem, trained",
        "on the 4,000 MNIST training digits for the same short schedule (random-affine",
        "augmentation, AdamW, cosine LR, bf16 autocast), tested on the 1,000 held-out digits. A",
        "like-for-like comparison under a small CPU budget, not each architecture's best. Rows",
        "appear as they are measured (`--models NAME ...` adds or refreshes one).",
        "",
        *benchmark_table(),
        "",
    ])
    (ROOT / "docs" / "models.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
