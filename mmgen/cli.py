"""The ``mmgen`` command line.

Every subcommand is a function ``cmd_NAME(args) -> int`` registered in :func:`build_parser`.
A user error (bad value, missing file, unknown model) prints one line to stderr and exits 2;
``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mmgen.checkpoint import UnsafeCheckpointError

# Exceptions that mean "the input was wrong", not "mmgen is broken".
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, IsADirectoryError, PermissionError,
               NotADirectoryError, UnsafeCheckpointError)


class CLIError(Exception):
    """A user error detected by the CLI itself (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def cmd_info(args: argparse.Namespace) -> int:
    """Print versions, device, CPU capability and attention backends."""
    from mmgen.device import system_info

    info = system_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List registered architectures and bundled (pretrained) models."""
    from mmgen.registry import list_models, list_pretrained

    names = list_pretrained() if args.pretrained else list_models(args.pattern)
    print("\n".join(names) if names else "(none)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Describe a saved or bundled model: class, config and parameter count."""
    from mmgen.registry import PretrainedModel, model_dir, read_config

    directory = model_dir(args.model)
    model = PretrainedModel.from_pretrained(directory)
    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps({**read_config(directory), "parameters": n_params}, indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Run a recipe (``--recipe NAME``) or an ad-hoc classifier training."""
    from mmgen.recipes import list_recipes

    if args.list:
        from mmgen.recipes import RECIPES

        for name in list_recipes():
            print(f"{name:<20} {RECIPES[name].description}")
        return 0
    if args.recipe:
        return _run_recipe(args)
    if args.task == "classifier":
        return _train_classifier(args)
    if args.task == "clip":
        return _train_clip(args)
    raise CLIError("say what to train: --recipe NAME (see --list) or 'classifier --model ...'")


def _run_recipe(args: argparse.Namespace) -> int:
    import shutil

    from mmgen.recipes import get_recipe, missed_targets
    from mmgen.registry import BUNDLED_DIR

    recipe = get_recipe(args.recipe)
    out = Path(args.out or f"runs/{args.recipe}")
    results = recipe.run(out, name=args.recipe, resume=args.resume)
    _print_results(results)
    missed = missed_targets(results, recipe.targets)
    for line in missed:
        print(f"target missed: {line}", file=sys.stderr)
    if args.install:
        if missed and not args.allow_missed_targets:
            raise CLIError("not installing: the recipe missed its targets (see above); "
                           "--allow-missed-targets installs it anyway")
        dest = BUNDLED_DIR / args.recipe
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(out / "model", dest)
        print(f"installed {dest}")
    return 1 if missed else 0


def _train_classifier(args: argparse.Namespace) -> int:
    from mmgen.recipes.classifiers import ClassifierRecipe, run_classifier
    from mmgen.train import TrainConfig

    if args.data == "shapes":
        raise CLIError("use --recipe shapes-classifier for the Shapes attribute classifier")
    if args.data not in ("mnist", "mnist32"):
        raise CLIError(f"classifier --data must be mnist or mnist32, got {args.data!r}")
    model = args.model if "/" in args.model else f"cnn/{args.model}"
    model_args = {"num_classes": 10, "in_channels": 1}
    if model == "cnn/lenet5":
        model_args["input_size"] = 28 if args.data == "mnist" else 32
    else:
        model_args["stem"] = "small"
    recipe = ClassifierRecipe(
        model=model, data=args.data, model_args=model_args,
        train=TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                          lr_schedule="cosine", warmup_steps=min(200, args.steps // 10),
                          weight_decay=0.05, ema_decay=0.999 if args.steps >= 1000 else 0.0,
                          ckpt_every=max(1, args.steps // 5), seed=args.seed))
    out = Path(args.out or f"runs/{model.split('/')[-1]}-{args.data}")
    _print_results(run_classifier(recipe, out, name=out.name, resume=args.resume))
    print(f"model saved to {out / 'model'}")
    return 0


def _train_clip(args: argparse.Namespace) -> int:
    from mmgen.recipes.clip import ClipRecipe
    from mmgen.train import TrainConfig

    data = args.data if args.data != "mnist" else "shapes"  # --data defaults to mnist
    if data != "shapes" and not Path(data).is_dir():
        raise CLIError(f"clip --data must be 'shapes' or a folder of captioned images: {data!r}")
    model = args.model if args.model.startswith("clip/") else "clip/tiny"
    recipe = ClipRecipe(
        model=model, data=data,
        train=TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                          lr_schedule="cosine", warmup_steps=min(200, args.steps // 10),
                          weight_decay=0.1, ckpt_every=max(1, args.steps // 5), seed=args.seed))
    out = Path(args.out or "runs/clip")
    _print_results(recipe.run(out, name=out.name, resume=args.resume))
    print(f"model saved to {out / 'model'}")
    return 0


def _print_results(results: dict[str, float]) -> None:
    for key, value in results.items():
        print(f"{key:<32} {value}")


def cmd_search(args: argparse.Namespace) -> int:
    """Search a folder of images by text (or by an example image) with a CLIP model."""
    from mmgen.clip.search import ImageIndex
    from mmgen.registry import load, model_dir

    directory = model_dir(args.model)
    index = ImageIndex(args.folder, load(directory), model_id=_model_id(directory)).build()
    print(f"index: {len(index.files)} images ({index.embedded_now} embedded now, "
          f"{len(index.files) - index.embedded_now} from cache)", file=sys.stderr)
    hits = index.search(args.query, k=args.top_k)
    if args.json:
        print(json.dumps([{"file": h.file, "score": h.score} for h in hits], indent=2))
    else:
        for hit in hits:
            print(f"{hit.score:.4f}  {hit.file}")
    return 0


def _model_id(directory: Path) -> str:
    weights = directory / "model.safetensors"
    st = weights.stat()
    return f"{directory.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def cmd_classify(args: argparse.Namespace) -> int:
    """Classify image files with a bundled or saved classifier."""
    from mmgen.cnn.predict import classify_files

    rows = classify_files(args.images, args.model, top_k=args.top_k)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    def fmt(top: list[dict]) -> str:
        return ", ".join(f"{p['label']} ({p['prob']:.1%})" for p in top)

    for row in rows:
        if "attributes" in row:
            preds = "; ".join(f"{a}: {fmt(top)}" for a, top in row["attributes"].items())
        else:
            preds = fmt(row["top"])
        print(f"{row['file']}: {preds}")
    return 0


DEFAULT_T2I_MODEL = "shapes-t2i"


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate images from a prompt (or re-create one from a PNG's parameters)."""
    from mmgen.diffusion.metadata import read_params

    opts = {"negative_prompt": args.negative_prompt, "sampler": args.sampler,
            "steps": args.steps, "guidance": args.guidance, "seed": args.seed,
            "height": args.height, "width": args.width}
    prompt, model = args.prompt, args.model
    if args.from_image:
        params = read_params(args.from_image)
        if prompt is None:
            prompt = params.prompt
        model = model or params.model
        stored = {"negative_prompt": params.negative_prompt, "sampler": params.sampler,
                  "steps": params.steps, "guidance": params.guidance, "seed": params.seed,
                  "height": params.height, "width": params.width}
        opts = {k: v if v is not None else stored[k] for k, v in opts.items()}
    if prompt is None or not prompt.strip():
        raise CLIError("give a non-empty PROMPT (or --from-image PNG)")
    files, grid = _output_paths(args.out, prompt, args.num_images)
    from mmgen.registry import load  # imported late: argument errors stay instant

    pipe = load(model or DEFAULT_T2I_MODEL, dtype=args.dtype)
    if not hasattr(pipe, "decode_latents"):
        raise CLIError(f"{model} is not a text-to-image model")
    images = pipe(prompt, opts["negative_prompt"], steps=opts["steps"],
                  guidance=opts["guidance"], sampler=opts["sampler"], seed=opts["seed"],
                  num_images=args.num_images, height=opts["height"], width=opts["width"])
    return _write_outputs(images, files, grid, args.json)


def _output_paths(out: str | None, prompt: str, n: int) -> tuple[list[Path], Path | None]:
    """Image paths (and the grid's, for several images) for ``--out FILE.png`` or a folder."""
    import os
    import re

    if out is not None and not out.strip():
        raise CLIError("--out must not be empty: give a .png file or a folder")
    target = Path(out) if out else Path(".")
    as_file = target.suffix.lower() == ".png"
    if target.suffix and not as_file and not target.is_dir():
        raise CLIError(f"--out {out}: a file must end in .png (or give a folder)")
    folder = target.parent if as_file else target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"cannot create the output folder {folder}: {e.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise CLIError(f"cannot write to {folder}: permission denied")
    stem = target.stem if as_file else re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48]
    if as_file and n == 1:
        return [target], None
    files = [folder / f"{stem or 'image'}-{i:02d}.png" for i in range(n)]
    return files, (folder / f"{stem or 'image'}-grid.png" if n > 1 else None)


def _write_outputs(images: list, files: list[Path], grid: Path | None, as_json: bool) -> int:
    from mmgen.diffusion.images import image_grid
    from mmgen.diffusion.metadata import GenerationParams, save_png

    records = []
    for image, path in zip(images, files, strict=True):
        save_png(image, path)
        records.append({"path": str(path),
                        **json.loads(image.info["mmgen"])} if "mmgen" in image.info
                       else {"path": str(path)})
    if grid is not None:
        labels = [f"seed {GenerationParams.from_json(im.info['mmgen']).seed}" for im in images]
        scale = max(1, 256 // images[0].width)
        image_grid(images, labels=labels, scale=scale).save(grid)
    if as_json:
        print(json.dumps({"images": records, "grid": str(grid) if grid else None}, indent=2))
    else:
        for rec in records:
            print(rec["path"])
        if grid is not None:
            print(grid)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mmgen", description="mmgen: multimodal generative and vision models.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"mmgen {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("info", help="versions, device, CPU capability, attention backends")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="list registered architectures / bundled models")
    p.add_argument("pattern", nargs="?", default=None, help="glob, e.g. 'cnn/*'")
    p.add_argument("--pretrained", action="store_true", help="list bundled weights instead")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("inspect", help="show the config of a saved or bundled model")
    p.add_argument("model", help="a model folder or a bundled model name")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("train", help="train with a recipe or an ad-hoc config")
    p.add_argument("task", nargs="?", choices=["classifier", "clip"],
                   help="ad-hoc training task")
    p.add_argument("--recipe", help="a recipe name (see --list)")
    p.add_argument("--list", action="store_true", help="list the recipes")
    p.add_argument("--out", help="output folder (default runs/NAME)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--install", action="store_true",
                   help="copy the result into the package's bundled weights")
    p.add_argument("--allow-missed-targets", action="store_true",
                   help="with --install: install even if targets were missed (the measured "
                        "results stay in the model's config.json)")
    p.add_argument("--model", default="lenet5",
                   help="architecture: classifier (lenet5, resnet18, ...) or clip (clip/tiny)")
    p.add_argument("--data", default="mnist",
                   help="classifier: mnist or mnist32; clip: shapes or a folder of captioned "
                        "images")
    p.add_argument("--steps", type=_positive_int, default=2000)
    p.add_argument("--batch-size", type=_positive_int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="text-to-image: write PNGs with their parameters")
    p.add_argument("prompt", nargs="?", help="what to draw")
    p.add_argument("--negative-prompt", help="what to steer away from")
    p.add_argument("--model", help=f"bundled name, pipeline / Stable Diffusion folder, or "
                                    f"single file (default {DEFAULT_T2I_MODEL})")
    p.add_argument("--sampler", help="ddim, dpm++2m, euler, euler_a or ddpm (default: the "
                                     "model's)")
    p.add_argument("--steps", type=_positive_int, help="sampler steps (default: the model's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, help="seed of the first image (default: random)")
    p.add_argument("--num-images", type=_positive_int, default=1)
    p.add_argument("--height", type=_positive_int, help="pixels (default: the model's)")
    p.add_argument("--width", type=_positive_int, help="pixels (default: the model's)")
    p.add_argument("--out", help="a .png file, or a folder (default: the current folder)")
    p.add_argument("--json", action="store_true", help="print paths and parameters as JSON")
    p.add_argument("--from-image", metavar="PNG",
                   help="re-create an image from the parameters stored in a PNG")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "auto", "bf16"],
                   help="compute precision (fp32 is exact; auto uses bf16 where native)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("search", help="find images in a folder by text or by example image")
    p.add_argument("folder", help="a folder of images (searched recursively)")
    p.add_argument("query", help="a text, or the path of an image to find similar ones")
    p.add_argument("--model", default="shapes-clip",
                   help="a CLIP model folder or bundled name (default shapes-clip, which knows "
                        "only the words of Shapes captions)")
    p.add_argument("--top-k", type=_positive_int, default=5)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("classify", help="classify images with a trained classifier")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", default="mnist-lenet5", help="bundled name or model folder")
    p.add_argument("--top-k", type=_positive_int, default=1)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_classify)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _version() -> str:
    from mmgen import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (CLIError, *USER_ERRORS) as e:
        if args.debug:
            raise
        msg = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
        print(f"mmgen {args.command}: error: {'; '.join(msg.splitlines())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
