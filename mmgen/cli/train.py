"""``mmgen train``: run a recipe, or a registered recipe's training on another model or data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmgen.cli.args import finite_float, positive_int, train_seed
from mmgen.cli.errors import CLIError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train with a recipe or an ad-hoc config")
    p.add_argument("task", nargs="?", choices=["classifier", "clip"],
                   help="ad-hoc training task")
    p.add_argument("--recipe", help="a recipe name (see --list)")
    p.add_argument("--list", action="store_true", help="list the recipes")
    p.add_argument("--out", help="output folder (default runs/NAME)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--install", action="store_true",
                   help="copy the result into your model directory ($MMGEN_HOME/models or "
                        "~/.local/share/mmgen/models), where mmgen.load(NAME) finds it")
    p.add_argument("--install-dir", metavar="DIR",
                   help="install into DIR/NAME instead (mmgen/weights to bundle it with the "
                        "package)")
    p.add_argument("--allow-missed-targets", action="store_true",
                   help="with --install: install even if targets were missed (the measured "
                        "results stay in the model's config.json)")
    p.add_argument("--model", help="ad-hoc architecture: classifier (lenet5, resnet18, ...; "
                                    "default lenet5) or clip (default clip/shapes-tiny)")
    p.add_argument("--data", help="ad-hoc data: classifier mnist (default) or mnist32; clip "
                                   "shapes (default) or a folder of captioned images; with "
                                   "--recipe photo-colorizer*: a folder of colour photos")
    p.add_argument("--steps", type=positive_int,
                   help="optimizer steps (default: the recipe's; warm-up, checkpoints and EMA "
                        "scale with it)")
    p.add_argument("--batch-size", type=positive_int, help="default: the recipe's")
    p.add_argument("--lr", type=finite_float, help="peak learning rate (default: the "
                                                    "recipe's)")
    p.add_argument("--seed", type=train_seed, help="0 to 2**32-1 (default: the recipe's)")
    p.add_argument("--mixed-precision", metavar="{no,auto,bf16,fp16}",
                   help="autocast dtype: auto (bf16 where the CPU computes it natively), no, "
                        "bf16, fp16 (default: the recipe's)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="convolutions in channels_last (NHWC) memory format (default: the "
                        "recipe's; docs/training.md)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction,
                   help="train through torch.compile; checkpoints and resuming are unchanged "
                        "(default: the recipe's; docs/training.md)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """Run a recipe (``--recipe NAME``) or an ad-hoc training (``classifier``, ``clip``)."""
    from mmgen.recipes import RECIPES, list_recipes

    if args.list:
        for name in list_recipes():
            print(f"{name:<20} {RECIPES[name].description}")
        return 0
    if args.recipe:
        from mmgen.recipes import get_recipe

        recipe, name = get_recipe(args.recipe), args.recipe
    elif args.task:
        recipe = _adhoc_recipe(args)
        name = Path(args.out).name if args.out else \
            f"{recipe.model.split('/')[-1]}-{Path(recipe.data).name}"
    else:
        raise CLIError("say what to train: --recipe NAME (see --list), or 'classifier' / "
                       "'clip' with --model and --data")
    recipe = _with_overrides(recipe, args)
    out = Path(args.out or f"runs/{name}")
    _check_run_folder(out, args.resume)
    results = recipe.run(out, name=name, resume=args.resume)
    _print_results(results)
    print(f"model saved to {out / 'model'}")
    return _check_and_install(recipe, results, out / "model", name, args)


def _check_run_folder(out: Path, resume: bool) -> None:
    """Refuse to start a fresh run over an earlier one's checkpoints (before any work)."""
    from mmgen.train.state import list_checkpoints

    existing = list_checkpoints(out / "run")
    if existing and not resume:
        raise CLIError(f"{out} already holds a training run (checkpoints up to "
                       f"{existing[-1].name}); --resume continues it, --out NEW starts another")


def _adhoc_recipe(args: argparse.Namespace):
    """A registered recipe's training, for another model or data set."""
    from dataclasses import replace

    from mmgen.recipes import CLIP_RECIPES, mnist_classifier

    if args.task == "classifier":
        return mnist_classifier(args.model or "lenet5", args.data or "mnist")
    base = CLIP_RECIPES["shapes-clip-joint"]  # clip
    data = args.data or base.data
    if data != "shapes" and not Path(data).is_dir():
        raise CLIError(f"clip --data must be 'shapes' or a folder of captioned images: {data!r}")
    return replace(base, model=args.model or base.model, data=data, targets={},
                   description=f"CLIP on {data}")


def _with_overrides(recipe, args: argparse.Namespace):
    """``recipe`` with the --steps / --batch-size / --lr / --seed / --mixed-precision /
    --channels-last / --compile given on the command line (the run keeps its shape: see
    TrainConfig.with_steps), and a recipe's --data folder."""
    from dataclasses import replace

    from mmgen.recipes.color import ColorRecipe

    if args.recipe and args.data:  # a recipe that reads a folder of images instead of its own
        if not isinstance(recipe, ColorRecipe):
            raise CLIError(f"--data: recipe {args.recipe} takes no folder of images (the "
                           "photo-colorizer recipes do; clip and classifier train ad hoc)")
        if not Path(args.data).is_dir():
            raise CLIError(f"--data {args.data}: no such folder of images")
        recipe = replace(recipe, data=args.data, targets={})
    train = recipe.train if args.steps is None else recipe.train.with_steps(args.steps)
    given = {"batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
             "mixed_precision": args.mixed_precision, "channels_last": args.channels_last,
             "compile": args.compile}
    try:  # TrainConfig checks the values (the CLI does not import it to start up)
        train = replace(train, **{k: v for k, v in given.items() if v is not None})
    except ValueError as e:
        raise CLIError(str(e)) from None
    return replace(recipe, train=train)


def _check_and_install(recipe, results: dict[str, float], folder: Path, name: str,
                       args: argparse.Namespace) -> int:
    """Report missed targets (exit 1), and copy the model where ``mmgen.load`` finds it."""
    import shutil

    from mmgen.checkpoint import atomic_path
    from mmgen.hub import user_model_dir
    from mmgen.recipes import missed_targets

    missed = missed_targets(results, recipe.targets)
    for line in missed:
        print(f"target missed: {line}", file=sys.stderr)
    if args.install or args.install_dir:
        if missed and not args.allow_missed_targets:
            raise CLIError("not installing: the recipe missed its targets (see above); "
                           "--allow-missed-targets installs it anyway")
        dest = Path(args.install_dir or user_model_dir()) / name
        with atomic_path(dest) as tmp:
            shutil.copytree(folder, tmp)
        print(f"installed {dest} (mmgen.load({name!r}) finds it)"
              if args.install_dir is None else f"installed {dest}")
    return 1 if missed else 0


def _print_results(results: dict[str, float]) -> None:
    for key, value in results.items():
        print(f"{key:<32} {value}")
