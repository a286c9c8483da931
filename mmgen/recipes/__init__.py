"""Recipes: the seeded, versioned training runs that produce mmgen's bundled weights.

``mmgen train --recipe NAME`` runs one; ``--install`` copies the result (fp16 safetensors +
config.json with its measured results) into ``mmgen/weights/NAME``, where ``mmgen.load(NAME)``
finds it offline.
"""

from mmgen.recipes.classifiers import (
    CLASSIFIER_RECIPES,
    ClassifierRecipe,
    missed_targets,
    run_classifier,
)
from mmgen.recipes.clip import CLIP_RECIPES, ClipRecipe
from mmgen.recipes.t2i import T2I_RECIPES, T2IRecipe, VAERecipe

RECIPES = {**CLASSIFIER_RECIPES, **CLIP_RECIPES, **T2I_RECIPES}


def list_recipes() -> list[str]:
    """Names of all recipes."""
    return sorted(RECIPES)


def get_recipe(name: str):
    """The recipe called ``name``; a clear error listing the others."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; available: {', '.join(list_recipes())}")
    return RECIPES[name]


__all__ = ["RECIPES", "ClassifierRecipe", "ClipRecipe", "T2IRecipe", "VAERecipe",
           "get_recipe", "list_recipes", "missed_targets", "run_classifier"]
