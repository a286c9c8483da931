"""The text-to-image recipes: ``shapes-vae`` then ``shapes-t2i`` (Stable Diffusion's recipe,
Rombach et al. 2022, at Shapes scale).

1. ``shapes-vae``: an :class:`~mmgen.vae.AutoencoderKL` with 4x downsampling (64x64x3 image
   -> 16x16x4 latent) trained with :class:`~mmgen.vae.objective.VAEObjective`. Its latent
   scaling factor is measured after training (1 / std of the latents, as for SD's 0.18215).
2. ``shapes-t2i``: a latent :class:`~mmgen.diffusion.UNet` that cross-attends to the token
   states of the bundled ``shapes-clip`` text tower (frozen), trained with the diffusion
   objective on the frozen VAE's latents, with caption dropout (the empty caption, p=0.1) so
   that one network gives both predictions of classifier-free guidance.

Shapes images are exact renders of their attributes, so the ``train`` split holds only 1,080
distinct images (every combination except the held-out colour-shape pairs): their latents
are computed once, and training costs only U-Net steps.

The exported pipeline (``mmgen.load("shapes-t2i")``) keeps the text tower's vocabulary to the
tokens of Shapes captions (:meth:`mmgen.clip.CLIP.text_model`), which is what keeps it small.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgen.data import shapes
from mmgen.diffusion.objective import DiffusionObjective
from mmgen.diffusion.pipeline import PipelineConfig, TextToImagePipeline, text_context
from mmgen.diffusion.schedule import NoiseSchedule
from mmgen.recipes.clip import dataset_caption_mode, shapes_vocabulary, training_caption
from mmgen.recipes.export import export_results
from mmgen.registry import PretrainedModel, create_model, model_dir
from mmgen.train import TrainConfig, Trainer
from mmgen.vae.objective import VAEObjective

# ----------------------------------------------------------------------------- VAE


@dataclass
class VAERecipe:
    model: str  # registered AutoencoderKL architecture
    train: TrainConfig  # steps, batch size, learning rate, ...
    model_args: dict[str, Any] = field(default_factory=dict)  # config overrides
    kl_weight: float = 1e-6  # VAEObjective.kl_weight
    eval_items: int = 1000  # images per evaluation split
    targets: dict[str, float] = field(default_factory=dict)  # minimum per result key
    description: str = ""  # one line for `mmgen train --list`

    def run(self, out_dir: str | Path, name: str, resume: bool = False) -> dict[str, float]:
        """Train, measure the latent scale, evaluate and export to ``out_dir/model``."""
        return run_vae(self, Path(out_dir), name, resume)


class _Images(torch.utils.data.Dataset):
    """The ``image`` tensors of a Shapes split."""

    def __init__(self, split: str, length: int):
        self.data = shapes.ShapesDataset(split, length=length)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.data[i]["image"]  # (3, 64, 64) in [-1, 1]


def run_vae(recipe: VAERecipe, out_dir: Path, name: str, resume: bool) -> dict[str, float]:
    cfg = replace(recipe.train, out_dir=str(out_dir / "run"))
    torch.manual_seed(cfg.seed)
    model = create_model(recipe.model, **recipe.model_args)
    trainer = Trainer(model, VAEObjective(recipe.kl_weight),
                      _Images("train", cfg.steps * cfg.batch_size), cfg)
    start = time.perf_counter()
    trainer.fit(resume="latest" if resume else None)
    final = (trainer.ema_model() if trainer.ema is not None else model).eval()
    images = shapes.ShapesDataset("train", length=recipe.eval_items).as_tensors()["image"]
    latents = _batched(lambda x: final.encode(x).mean, images)  # (n, C, h, w)
    final.config = replace(final.config, scaling_factor=round(1.0 / latents.std().item(), 5),
                           shift_factor=0.0)
    final.info = {"recipe": name, "train_seconds": round(trainer.elapsed, 1),
                  "dataset": "shapes"}
    folder = final.save_pretrained(out_dir / "model", dtype=torch.float16)
    results = evaluate_vae(PretrainedModel.from_pretrained(folder), recipe.eval_items)
    results["train_seconds"] = round(trainer.elapsed, 1)
    export_results(final, folder, out_dir, name, recipe, results, start)
    return results


@torch.no_grad()
def _batched(fn, x: torch.Tensor, size: int = 250) -> torch.Tensor:
    """``fn`` over ``x`` in chunks of ``size`` (bounded memory), concatenated, in fp32."""
    return torch.cat([fn(x[i:i + size]).float() for i in range(0, len(x), size)])


@torch.no_grad()
def evaluate_vae(vae: torch.nn.Module, n: int = 1000) -> dict[str, float]:
    """PSNR of reconstructions (through the posterior mean) and their Shapes adherence."""
    from mmgen.metrics import psnr
    from mmgen.metrics.shapes import shapes_adherence

    results: dict[str, float] = {}
    for split in ("test", "test_compositional"):
        batch = shapes.ShapesDataset(split, length=n, seed=1).as_tensors()
        x = batch["image"]  # (n, 3, 64, 64) in [-1, 1]
        recon = _batched(lambda b: vae.decode(vae.encode(b).mode()).clamp(-1, 1), x)
        real, fake = (x + 1) / 2, (recon + 1) / 2
        results[f"{split}/psnr"] = round(psnr(fake, real, data_range=1.0).value, 3)
        adherence = shapes_adherence(fake, batch["caption"], progress=False)
        results[f"{split}/adherence_all5"] = round(adherence.all.value, 5)
    return results


# ----------------------------------------------------------------------------- text-to-image


@dataclass
class T2IRecipe:
    unet: dict[str, Any]  # UNetConfig fields (overrides of "unet/tiny")
    train: TrainConfig  # steps, batch size, learning rate, ...
    schedule: NoiseSchedule = field(default_factory=NoiseSchedule)  # training noise schedule
    vae: str = "shapes-vae"  # bundled name or folder of the (frozen) autoencoder
    clip: str = "shapes-clip"  # bundled name or folder of the CLIP whose text tower is used
    caption_mode: str = "varied"  # recipes.clip.CAPTION_MODES; "mixed": half of them factored
    context: str = "last"  # what the U-Net attends to (PipelineConfig.context)
    cond_dropout: float = 0.1  # probability of training on the empty caption (for CFG)
    min_snr_gamma: float = 5.0  # Min-SNR-gamma loss weighting (Hang et al. 2023); 0 = off
    guidance: float = 3.0  # the exported pipeline's default guidance scale
    # If given, the default guidance is instead the candidate with the best mean all-5
    # adherence (DDIM 25) on 1/5 as many prompts as eval_prompts, drawn apart from them.
    guidance_candidates: tuple[float, ...] = ()
    eval_prompts: int = 500  # prompts per evaluation split
    targets: dict[str, float] = field(default_factory=dict)  # minimum per result key
    description: str = ""  # one line for `mmgen train --list`

    def run(self, out_dir: str | Path, name: str, resume: bool = False) -> dict[str, float]:
        """Train, export the pipeline to ``out_dir/model`` and evaluate it."""
        return run_t2i(self, Path(out_dir), name, resume)


class _LatentPairs(torch.utils.data.Dataset):
    """Shapes items as {"latent": (C, h, w) scaled latent, "caption": str}.

    ``caption_mode="mixed"``: half of the captions are varied ones, half factored ones
    (:func:`mmgen.recipes.clip.factored_caption`: a random subset of the attributes, e.g. "a
    purple shape", "a circle in the center"). A U-Net that also learns what each attribute
    alone asks for is pushed to treat colour and shape as separate controls, which is what a
    colour-shape pair it never saw needs."""

    def __init__(self, split: str, length: int, caption_mode: str, table: dict, seed: int = 0):
        self.mode = caption_mode
        self.data = shapes.ShapesDataset(split, length=length, seed=seed,
                                         caption_mode=dataset_caption_mode(caption_mode))
        self.table = table  # attribute labels -> latent

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        attrs = self.data.attrs(i)
        caption = shapes.sample_caption(self.data.split, self.data.seed, i,
                                        self.data.caption_mode)
        rng = np.random.default_rng([self.data.seed, 78, i])  # a pure function of i
        caption = training_caption(caption, attrs, self.mode, rng)
        return {"latent": self.table[attrs.labels], "caption": caption}


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"latent": torch.stack([it["latent"] for it in items]),
            "caption": [it["caption"] for it in items]}


@dataclass
class TextConditionedObjective:
    """The diffusion objective on (latent, caption) batches: captions go through the frozen
    text encoder (in fp32, as at sampling time); each is replaced by "" with probability
    ``dropout`` (classifier-free guidance training, Ho & Salimans 2022)."""

    objective: DiffusionObjective
    text_encoder: torch.nn.Module
    tokenizer: Any
    dropout: float = 0.1
    context: str = "last"  # see mmgen.diffusion.pipeline.text_context

    def __call__(self, model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        x0 = batch["latent"]  # (B, C, h, w)
        drop = (torch.rand(len(batch["caption"])) < self.dropout).tolist()
        captions = ["" if d else c for c, d in zip(batch["caption"], drop, strict=True)]
        with torch.no_grad(), torch.autocast(x0.device.type, enabled=False):
            tokens = self.tokenizer(captions).to(x0.device)
            context = text_context(self.text_encoder, tokens, self.context)  # (B, L, D)
        return self.objective(model, {"x0": x0, "context": context})


def _latent_table(vae: torch.nn.Module) -> dict[tuple[int, ...], torch.Tensor]:
    """Scaled latents (posterior means) of every training combination, keyed by labels."""
    combos = shapes.all_combinations("train")
    images = torch.stack([shapes.to_tensor(shapes.render_array(a)) for a in combos])
    latents = _batched(lambda x: vae.encode(x).mean, images)  # (n, C, h, w)
    latents = (latents - vae.config.shift_factor) * vae.config.scaling_factor
    return {a.labels: z for a, z in zip(combos, latents, strict=True)}


def run_t2i(recipe: T2IRecipe, out_dir: Path, name: str, resume: bool) -> dict[str, float]:
    cfg = replace(recipe.train, out_dir=str(out_dir / "run"))
    torch.manual_seed(cfg.seed)
    vae = PretrainedModel.from_pretrained(model_dir(recipe.vae)).eval().float()
    clip = PretrainedModel.from_pretrained(model_dir(recipe.clip)).float()
    text = clip.text_model(keep_tokens=shapes_vocabulary(clip.tokenize)).eval()
    text.requires_grad_(False)
    unet = create_model("unet/tiny", **recipe.unet)
    data = _LatentPairs("train", cfg.steps * cfg.batch_size, recipe.caption_mode,
                        _latent_table(vae))
    objective = TextConditionedObjective(DiffusionObjective(recipe.schedule,
                                                            recipe.min_snr_gamma), text,
                                         clip.tokenize, recipe.cond_dropout, recipe.context)
    trainer = Trainer(unet, objective, data, cfg, collate_fn=_collate)
    start = time.perf_counter()
    trainer.fit(resume="latest" if resume else None)
    final = (trainer.ema_model() if trainer.ema is not None else unet).eval()
    final.info = {"recipe": name, "train_seconds": round(trainer.elapsed, 1)}
    pipe = TextToImagePipeline(final, vae, text, PipelineConfig(
        name=name, schedule=recipe.schedule, sampler="ddim", steps=25,
        guidance=recipe.guidance, height=64, width=64, pad_token_id=0,
        context=recipe.context))
    selection = {}
    if recipe.guidance_candidates:
        pipe.config.guidance, selection = select_guidance(
            pipe, recipe.guidance_candidates, n=max(1, recipe.eval_prompts // 5))
    folder = pipe.save_pretrained(out_dir / "model", dtype=torch.float16)
    pipe = TextToImagePipeline.from_pretrained(folder)
    results = evaluate_t2i(pipe, recipe.eval_prompts)
    results.update(selection)
    results["train_seconds"] = round(trainer.elapsed, 1)
    final.info["results"] = results
    export_results(final, folder / "unet", out_dir, name, recipe, results, start)
    return results


def select_guidance(pipe: TextToImagePipeline, candidates: tuple[float, ...], n: int = 100
                    ) -> tuple[float, dict[str, float]]:
    """The candidate guidance scale with the best mean all-5 adherence of ``test`` and
    ``test_compositional`` (DDIM 25) on ``n`` prompts per split drawn with seed 2 (the
    evaluation uses seed 1), and the rates measured for each candidate."""
    rates = {}
    for g in candidates:
        r = evaluate_t2i(pipe, n, guidance=g, prompt_seed=2)
        rates[g] = (r["test/adherence_all5"] + r["test_compositional/adherence_all5"]) / 2
        print(f"[guidance {g}] mean all-5 adherence {rates[g]:.3f} (selection prompts)",
              flush=True)
    best = max(candidates, key=lambda g: rates[g])
    return best, {f"selection/guidance_{g}/adherence_all5": round(v, 5)
                  for g, v in rates.items()} | {"guidance": best}


@torch.no_grad()
def evaluate_t2i(pipe: TextToImagePipeline, n: int = 500, sampler: str = "ddim",
                 steps: int = 25, guidance: float | None = None,
                 splits: tuple[str, ...] = ("test", "test_compositional"),
                 batch_size: int = 100, prompt_seed: int = 1) -> dict[str, float]:
    """Shapes adherence of images generated from ``n`` canonical prompts per split (the
    split's items ``0..n-1`` for ``prompt_seed``; image seed = prompt index), and the sampling
    seconds per image."""
    from mmgen.metrics.shapes import shapes_adherence

    results: dict[str, float] = {}
    for split in splits:
        prompts = [shapes.caption(shapes.sample_attrs(split, prompt_seed, i))
                   for i in range(n)]
        start = time.perf_counter()
        images = pipe(prompts, sampler=sampler, steps=steps, guidance=guidance, seed=0,
                      batch_size=batch_size, progress=False)
        seconds = (time.perf_counter() - start) / n
        adherence = shapes_adherence(images, prompts, progress=False)
        results[f"{split}/adherence_all5"] = round(adherence.all.value, 5)
        for attr, rate in adherence.per_attribute.items():
            results[f"{split}/{attr}"] = round(rate, 5)
        results[f"{split}/seconds_per_image"] = round(seconds, 4)
    return results


T2I_RECIPES = {
    "shapes-vae": VAERecipe(
        model="vae/f4",
        train=TrainConfig(steps=2500, batch_size=32, lr=5e-4, lr_schedule="cosine",
                          warmup_steps=100, ema_decay=0.999, mixed_precision="auto",
                          ckpt_every=250, log_every=25, seed=0),
        targets={"test/adherence_all5": 0.99, "test_compositional/adherence_all5": 0.99,
                 "test/psnr": 30.0},
        description="AutoencoderKL 64x64x3 -> 16x16x4 on Shapes (the shapes-t2i latent space)",
    ),
    "shapes-t2i": T2IRecipe(
        # 4.2 M parameters; self/cross-attention at 8x8 and 4x4 (one shape per image needs no
        # attention at 16x16, which would double the step time).
        unet={"block_out_channels": (32, 64, 128), "layers_per_block": 1,
              "attention_blocks": (False, True, True), "heads": (1, 2, 4),
              "cross_attention_dim": 256, "norm_num_groups": 16, "sample_size": 16},
        train=TrainConfig(steps=5500, batch_size=64, lr=6e-4, lr_schedule="cosine",
                          warmup_steps=300, ema_decay=0.999, mixed_precision="auto",
                          ckpt_every=250, log_every=50, seed=0),
        caption_mode="mixed",
        context="last+input",
        guidance_candidates=(1.5, 3.0, 5.0),
        targets={"test/adherence_all5": 0.90, "test_compositional/adherence_all5": 0.60},
        description="latent U-Net on shapes-vae latents, conditioned on shapes-clip's text "
                    "tower (DDIM 25, guidance chosen from 1.5/3/5)",
    ),
}
