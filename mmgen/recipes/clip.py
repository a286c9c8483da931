"""The ``shapes-clip`` recipe: a tiny CLIP trained contrastively on Shapes captions.

Training captions: the Shapes "varied" captions by default; ``caption_mode="factored"``
names random subsets of the attributes instead (:func:`factored_caption`).

Evaluation (on the exported fp16 weights):
  * zero-shot classification of each attribute on ``test`` and ``test_compositional``, with
    one prompt per class built from the attribute name (``ATTRIBUTE_TEMPLATES``: colour
    "red" -> "a red shape", position "top left" -> "a shape in the top left", ...);
  * text -> image retrieval over 1,000 ``test`` images with their canonical captions: the
    fraction of queries whose top hit has all five attributes of the query.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgen.clip.train import ContrastiveObjective, caption_collate
from mmgen.clip.zero_shot import class_embeddings, encode_images, retrieve
from mmgen.data import shapes
from mmgen.recipes.export import export_results
from mmgen.registry import PretrainedModel, create_model
from mmgen.train import TrainConfig, Trainer


@dataclass
class ClipRecipe:
    model: str  # registered CLIP architecture
    train: TrainConfig  # steps, batch size, learning rate, ...
    data: str = "shapes"  # "shapes", or a folder of captioned images (see mmgen.data.folder)
    model_args: dict[str, Any] = field(default_factory=dict)  # config overrides
    caption_mode: str = "varied"  # Shapes captions: "varied", "factored" or "canonical"
    eval_items: int = 1000  # images per evaluation split
    targets: dict[str, float] = field(default_factory=dict)  # minimum per result key
    description: str = ""  # one line for `mmgen train --list`

    def run(self, out_dir: str | Path, name: str, resume: bool = False) -> dict[str, float]:
        """Train, evaluate and export to ``out_dir/model`` (see module docstring)."""
        return run_clip(self, Path(out_dir), name, resume)


def factored_caption(attrs: shapes.ShapeAttrs, rng: np.random.Generator,
                     canonical_prob: float = 0.3, keep_prob: float = 0.5) -> str:
    """A caption naming a random subset of the attributes ("a green shape", "a triangle in
    the top left", ...), or the canonical one with probability ``canonical_prob``.

    Naming attributes on their own teaches the text tower one concept per attribute, which is
    what lets CLIP generalise to colour-shape pairs it never saw and classify each attribute
    zero-shot from its name alone."""
    if rng.random() < canonical_prob:
        return shapes.caption(attrs)
    keep = rng.random(5) < keep_prob  # size, color, shape, position, background
    if not keep.any():
        keep[rng.integers(5)] = True
    words = [attrs.size if keep[0] else "", attrs.color if keep[1] else "",
             attrs.shape if keep[2] else "shape"]
    text = "a " + " ".join(w for w in words if w)
    if keep[3]:
        text += f" in the {attrs.position}"
    if keep[4]:
        text += f" on a {attrs.background} background"
    return text


class _ShapesPairs(torch.utils.data.Dataset):
    """Shapes items as {"image": model-ready tensor, "caption": str}."""

    def __init__(self, split: str, length: int, mode: str, model: torch.nn.Module,
                 seed: int = 0):
        factored = mode == "factored"
        self.data = shapes.ShapesDataset(split, length=length,
                                         caption_mode="canonical" if factored else mode)
        self.factored, self.seed, self.model = factored, seed, model

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.data[i]
        text = item["caption"]
        if self.factored:  # a pure function of (seed, i), like the images
            text = factored_caption(self.data.attrs(i), np.random.default_rng([self.seed, 77, i]))
        return {"image": to_model_input(self.model, item["image"]), "caption": text}


class _FolderPairs(torch.utils.data.Dataset):
    """Captioned images of a folder (``captions.jsonl`` or sidecar ``.txt``) for CLIP."""

    def __init__(self, root: str, model: torch.nn.Module):
        from mmgen.data.folder import ImageFolderDataset

        self.data = ImageFolderDataset(root, size=model.config.vision.image_size)
        missing = [f for f, c in zip(self.data.files, self.data.captions, strict=True) if not c]
        if missing:
            raise ValueError(f"{len(missing)} image(s) in {root} have no caption (e.g. "
                             f"{missing[0]}); add captions.jsonl or sidecar .txt files")
        self.model = model

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.data[i]
        return {"image": self.model.normalize_images(item["image"]), "caption": item["caption"]}


def to_model_input(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Shapes images in [-1, 1] -> the CLIP model's normalised input."""
    return model.normalize_images((images + 1) / 2)


def run_clip(recipe: ClipRecipe, out_dir: Path, name: str, resume: bool) -> dict[str, float]:
    cfg = replace(recipe.train, out_dir=str(out_dir / "run"))
    torch.manual_seed(cfg.seed)
    model = create_model(recipe.model, **recipe.model_args)
    tok = model.tokenize  # CLIP's BPE at the model's context length
    if recipe.data == "shapes":
        data = _ShapesPairs("train", cfg.steps * cfg.batch_size, recipe.caption_mode, model)
    else:
        data = _FolderPairs(recipe.data, model)
    trainer = Trainer(model, ContrastiveObjective(tok), data, cfg, collate_fn=caption_collate)
    start = time.perf_counter()
    trainer.fit(resume="latest" if resume else None)
    final = trainer.ema_model() if trainer.ema is not None else model
    final.info = {"recipe": name, "train_seconds": round(trainer.elapsed, 1),
                  "dataset": "shapes", "attributes": {a: list(v) for a, v in
                                                      shapes.CLASS_NAMES.items()}}
    folder = final.save_pretrained(out_dir / "model", dtype=torch.float16)
    results = evaluate_shapes_clip(PretrainedModel.from_pretrained(folder), tok,
                                   recipe.eval_items) if recipe.data == "shapes" else {}
    results["train_seconds"] = round(trainer.elapsed, 1)
    export_results(final, folder, out_dir, name, recipe, results, start)
    return results


ATTRIBUTE_TEMPLATES = {  # zero-shot prompts: the class name alone, in a caption's words
    "color": "a {} shape",
    "shape": "a {}",
    "size": "a {} shape",
    "position": "a shape in the {}",
    "background": "a shape on a {} background",
}


def attribute_templates(attribute: str) -> list[str]:
    """Prompt template(s) for zero-shot classification of one Shapes attribute."""
    if attribute not in ATTRIBUTE_TEMPLATES:
        raise ValueError(f"unknown Shapes attribute {attribute!r}; expected one of "
                         f"{shapes.ATTRIBUTES}")
    return [ATTRIBUTE_TEMPLATES[attribute]]


@torch.no_grad()
def evaluate_shapes_clip(model: torch.nn.Module, tokenize, n: int = 1000) -> dict[str, float]:
    """Zero-shot accuracy per attribute and split, and text->image retrieval on ``test``."""
    model.eval()
    results: dict[str, float] = {}
    for split in ("test", "test_compositional"):
        batch = shapes.ShapesDataset(split, length=n, seed=1).as_tensors()
        image_emb = encode_images(model, to_model_input(model, batch["image"]))  # (n, D)
        for attr in shapes.ATTRIBUTES:
            classes = class_embeddings(model, tokenize, shapes.CLASS_NAMES[attr],
                                       attribute_templates(attr)).cpu()  # (C, D)
            pred = (image_emb @ classes.t()).argmax(1)
            results[f"{split}/zero_shot_{attr}"] = round(
                (pred == batch[attr]).float().mean().item(), 5)
        if split == "test":
            results["test/retrieval_all5"] = _retrieval(model, tokenize, batch, image_emb)
    return results


def _retrieval(model, tokenize, batch: dict[str, Any], image_emb: torch.Tensor) -> float:
    device = next(model.parameters()).device
    queries = torch.cat([model.encode_text(tokenize(batch["caption"][i:i + 256]).to(device),
                                           normalize=True).cpu()
                         for i in range(0, len(batch["caption"]), 256)])  # (n, D)
    _, top = retrieve(queries, image_emb, k=1)  # (n, 1)
    labels = torch.stack([batch[a] for a in shapes.ATTRIBUTES], 1)  # (n, 5)
    hit = (labels[top[:, 0]] == labels).all(1)
    return round(hit.float().mean().item(), 5)


_TARGETS = {"test/zero_shot_color": 0.98, "test/zero_shot_shape": 0.98,
            "test/zero_shot_position": 0.95, "test/zero_shot_background": 0.98,
            "test_compositional/zero_shot_color": 0.95,
            "test_compositional/zero_shot_shape": 0.95, "test/retrieval_all5": 0.90}

CLIP_RECIPES = {
    "shapes-clip": ClipRecipe(
        model="clip/tiny",
        model_args={},
        train=TrainConfig(steps=2500, batch_size=128, lr=1e-3, lr_schedule="cosine",
                          warmup_steps=200, weight_decay=0.1, ema_decay=0.998,
                          mixed_precision="bf16", ckpt_every=250, log_every=50, seed=0),
        targets=_TARGETS,
        description="tiny CLIP (ViT 64px / 4-layer text) trained contrastively on Shapes",
    ),
}
