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
are computed once (:func:`~mmgen.data.shapes_training.latent_table`), and training costs only
U-Net steps. The exported pipeline keeps the text tower's vocabulary to the tokens of Shapes
captions (:class:`~mmgen.clip.shapes.ShapesTextModel`), which is what keeps it small.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from mmgen.data import shapes
from mmgen.data.shapes_text import shapes_vocabulary
from mmgen.data.shapes_training import LatentPairs, ShapesImages, collate_captions, latent_table
from mmgen.device import batched
from mmgen.diffusion.objective import DiffusionObjective, TextConditionedObjective
from mmgen.diffusion.pipeline import PipelineConfig, TextToImagePipeline
from mmgen.diffusion.schedule import NoiseSchedule
from mmgen.hub import model_dir
from mmgen.metrics.shapes_benchmark import evaluate_t2i, evaluate_vae, select_guidance
from mmgen.recipes.base import Recipe, Setup, register_recipes
from mmgen.registry import PretrainedModel, create_model
from mmgen.train import TrainConfig
from mmgen.vae.objective import VAEObjective


@dataclass(kw_only=True)
class VAERecipe(Recipe):
    model: str  # registered AutoencoderKL architecture
    model_args: dict[str, Any] = field(default_factory=dict)  # config overrides
    kl_weight: float = 1e-6  # VAEObjective.kl_weight
    eval_items: int = 1000  # images per evaluation split (and for the latent scale)

    def setup(self, out_dir: Path, resume: bool) -> Setup:
        model = create_model(self.model, **self.model_args)
        data = ShapesImages("train", self.train.steps * self.train.batch_size)
        return Setup(model, VAEObjective(self.kl_weight), data, info={"dataset": "shapes"})

    def export(self, model: torch.nn.Module, setup: Setup, folder: Path) -> Path:
        """Measure the latent scale (1 / std of training latents), then save."""
        images = shapes.ShapesDataset("train", length=self.eval_items).as_tensors()["image"]
        latents = batched(lambda x: model.encode(x).mean, images)  # (n, C, h, w)
        model.config = replace(model.config, scaling_factor=round(1.0 / latents.std().item(), 5),
                               shift_factor=0.0)
        return model.save_pretrained(folder, dtype=torch.float16)

    def evaluate(self, folder: Path, setup: Setup) -> dict[str, float]:
        return evaluate_vae(PretrainedModel.from_pretrained(folder), self.eval_items)


@dataclass(kw_only=True)
class T2IRecipe(Recipe):
    network: dict[str, Any]  # config fields of the denoiser (overrides of ``architecture``)
    architecture: str = "unet/tiny"  # registered denoiser: a U-Net or a text-conditioned DiT
    schedule: NoiseSchedule = field(default_factory=NoiseSchedule)  # training noise schedule
    vae: str = "shapes-vae"  # bundled name or folder of the (frozen) autoencoder
    clip: str = "shapes-clip"  # bundled name or folder of the CLIP whose text tower is used
    caption_mode: str = "varied"  # TRAINING_CAPTION_MODES; "mixed": half of them factored
    context: str = "last"  # what the U-Net attends to (ShapesTextConfig.context)
    cond_dropout: float = 0.1  # probability of training on the empty caption (for CFG)
    min_snr_gamma: float = 5.0  # Min-SNR-gamma loss weighting (Hang et al. 2023); 0 = off
    guidance: float = 3.0  # the exported pipeline's default guidance scale
    # If given, the default guidance is instead the candidate with the best mean all-5
    # adherence (DDIM 25) on 1/5 as many prompts as eval_prompts, drawn apart from them.
    guidance_candidates: tuple[float, ...] = ()
    eval_prompts: int = 500  # prompts per evaluation split

    def setup(self, out_dir: Path, resume: bool) -> Setup:
        vae = PretrainedModel.from_pretrained(model_dir(self.vae)).eval().float()
        clip = PretrainedModel.from_pretrained(model_dir(self.clip)).float()
        text = clip.text_model(keep_tokens=shapes_vocabulary(clip.tokenize),
                               context=self.context).eval()
        text.requires_grad_(False)
        denoiser = create_model(self.architecture, **self.network)
        vc = vae.config
        table = latent_table(lambda images: (batched(lambda x: vae.encode(x).mean, images)
                                             - vc.shift_factor) * vc.scaling_factor)
        data = LatentPairs("train", self.train.steps * self.train.batch_size,
                           self.caption_mode, table)
        objective = TextConditionedObjective(
            DiffusionObjective(self.schedule, self.min_snr_gamma), text, clip.tokenize,
            self.cond_dropout)
        return Setup(denoiser, objective, data, partial(collate_captions, key="latent"),
                     parts={"vae": vae, "text_encoder": text})

    def export(self, model: torch.nn.Module, setup: Setup, folder: Path) -> Path:
        """The pipeline (the denoiser, frozen VAE and text tower), its guidance chosen if
        asked."""
        pipe = TextToImagePipeline(model, setup.parts["vae"], setup.parts["text_encoder"],
                                   PipelineConfig(name=model.info["recipe"],
                                                  schedule=self.schedule, sampler="ddim",
                                                  steps=25, guidance=self.guidance, height=64,
                                                  width=64))
        setup.parts["selection"] = {}
        if self.guidance_candidates:
            pipe.config.guidance, setup.parts["selection"] = select_guidance(
                pipe, self.guidance_candidates, n=max(1, self.eval_prompts // 5))
        return pipe.save_pretrained(folder, dtype=torch.float16)

    def evaluate(self, folder: Path, setup: Setup) -> dict[str, float]:
        results = evaluate_t2i(TextToImagePipeline.from_pretrained(folder), self.eval_prompts)
        return results | setup.parts["selection"]

    def results_folder(self, folder: Path) -> Path:
        return folder / "unet"


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
        network={"block_out_channels": (32, 64, 128), "layers_per_block": 1,
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
# A text-conditioned DiT (adaLN-Zero on t, cross-attention to the text tokens in every block,
# as PixArt-alpha) trained exactly as shapes-t2i (latent space, text tower, data, captions,
# objective, guidance selection) but for its network and schedule length: 16x16x4 latents in
# 2x2 patches = 64 tokens, width 192, 6 blocks (5.2 M parameters).
T2I_RECIPES["shapes-dit"] = replace(
    T2I_RECIPES["shapes-t2i"],
    architecture="dit/tiny-text",
    network={"input_size": 16, "patch_size": 2, "hidden_size": 192, "depth": 6,
             "num_heads": 3, "cross_attention_dim": 256},
    train=TrainConfig(steps=6000, batch_size=64, lr=4e-4, lr_schedule="cosine",
                      warmup_steps=500, ema_decay=0.999, mixed_precision="auto",
                      ckpt_every=250, log_every=50, seed=0),
    targets={"test/adherence_all5": 0.97, "test_compositional/adherence_all5": 0.90},
    description="text-conditioned DiT (cross-attention) in shapes-t2i's latent space and text "
                "tower (DDIM 25, guidance chosen from 1.5/3/5)",
)
register_recipes(T2I_RECIPES)
