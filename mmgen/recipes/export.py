"""What every recipe does at the end: record the results with the weights and in a file."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from mmgen.checkpoint import atomic_path
from mmgen.registry import PretrainedModel


def export_results(model: PretrainedModel, folder: Path, out_dir: Path, name: str,
                   recipe: Any, results: dict[str, float], started: float) -> None:
    """Store ``results`` in the model's ``info`` (re-saving ``folder`` in fp16) and write
    ``out_dir/results.json`` with the recipe, its targets and the wall time since ``started``."""
    model.info["results"] = results
    model.save_pretrained(folder, dtype=torch.float16)
    record = {"recipe": name, "results": results, "targets": recipe.targets,
              "recipe_config": json.loads(json.dumps(asdict(recipe), default=str)),
              "wall_seconds": round(time.perf_counter() - started, 1)}
    with atomic_path(out_dir / "results.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
