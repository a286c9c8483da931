"""Recipes: the seeded, versioned training runs that produce mmgen's bundled weights.

``mmgen train --recipe NAME`` runs one (:func:`~mmgen.recipes.base.run_recipe`); ``--install``
copies the result (fp16 safetensors + config.json with its measured results) into the user's
model directory (:func:`mmgen.hub.user_model_dir`), where ``mmgen.load(NAME)`` finds it
offline. Only recipes that meet their targets are registered here; experiments live in
``scripts/experiments/``.
"""

from mmgen.recipes.base import (
    RECIPES,
    Recipe,
    Setup,
    get_recipe,
    missed_targets,
    register_recipes,
    run_recipe,
)
from mmgen.recipes.classifiers import CLASSIFIER_RECIPES, ClassifierRecipe, mnist_classifier
from mmgen.recipes.clip import CLIP_RECIPES, ClipRecipe
from mmgen.recipes.color import COLOR_RECIPES, ColorRecipe  # noqa: F401
from mmgen.recipes.onestep import ONESTEP_RECIPES, ConvVAERecipe, GANRecipe
from mmgen.recipes.style import STYLE_RECIPES, AdaINRecipe, FastStyleRecipe  # noqa: F401
from mmgen.recipes.t2i import T2I_RECIPES, T2IRecipe, VAERecipe


def list_recipes() -> list[str]:
    """Names of all registered recipes."""
    return sorted(RECIPES)


__all__ = ["CLASSIFIER_RECIPES", "CLIP_RECIPES", "ONESTEP_RECIPES", "RECIPES", "T2I_RECIPES",
           "ClassifierRecipe", "ClipRecipe", "ConvVAERecipe", "GANRecipe", "Recipe", "Setup",
           "T2IRecipe", "VAERecipe", "get_recipe", "list_recipes", "missed_targets",
           "mnist_classifier", "register_recipes", "run_recipe"]
