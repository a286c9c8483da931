"""The ``mmgen`` command line.

Every subcommand is a function ``cmd_NAME(args) -> int`` registered in :func:`build_parser`.
A user error (bad value, missing file, unknown model) prints one line to stderr and exits 2;
``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmgen.checkpoint import UnsafeCheckpointError

# Exceptions that mean "the input (or the machine) said no", not "mmgen is broken": bad
# values, unknown names, unreadable, missing, corrupt or unsafe files, full disks, refused
# limits (mmgen.limits.LimitError and mmgen's other checks are ValueErrors).
USER_ERRORS = (ValueError, KeyError, OSError, UnsafeCheckpointError, MemoryError)


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
    from mmgen.hub import list_pretrained
    from mmgen.registry import list_models

    names = list_pretrained() if args.pretrained else list_models(args.pattern)
    print("\n".join(names) if names else "(none)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Describe a saved or bundled model or pipeline: class, config, parameter count; the
    weight files are checked against the config from their headers (nothing is loaded)."""
    from mmgen.hub import model_dir
    from mmgen.pipeline import PIPELINE_CONFIG, Pipeline, read_pipeline_config
    from mmgen.registry import resolve_class

    directory = model_dir(args.model)
    if (directory / PIPELINE_CONFIG).is_file():
        meta = read_pipeline_config(directory)
        components = resolve_class(meta["class"], Pipeline,
                                   directory / PIPELINE_CONFIG).components
        report = {**meta, "components": {name: _describe_model(directory / name)
                                         for name in components}}
    else:
        report = _describe_model(directory)
    print(json.dumps(report, indent=2))
    return 0


def _describe_model(directory: Path) -> dict:
    from mmgen.checkpoint import check_shapes, safetensors_shapes
    from mmgen.registry import WEIGHTS_NAME, PretrainedModel, probe_model, read_saved_config

    meta, cls, config = read_saved_config(directory, PretrainedModel)
    probe = probe_model(cls, config, str(directory))
    weights = directory / WEIGHTS_NAME
    check_shapes({k: tuple(v.shape) for k, v in probe.state_dict().items()},
                 safetensors_shapes(weights), f"{weights} into {cls.__name__}")
    return {**meta, "parameters": sum(p.numel() for p in probe.parameters())}


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
    """``recipe`` with the --steps / --batch-size / --lr / --seed given on the command line
    (the run keeps its shape: see TrainConfig.with_steps)."""
    from dataclasses import replace

    train = recipe.train if args.steps is None else recipe.train.with_steps(args.steps)
    given = {"batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    return replace(recipe, train=replace(train, **{k: v for k, v in given.items()
                                                   if v is not None}))


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


def cmd_search(args: argparse.Namespace) -> int:
    """Search a folder of images by text (or by an example image) with a CLIP model."""
    from mmgen.clip import CLIP
    from mmgen.clip.search import ImageIndex
    from mmgen.hub import load, model_dir

    directory = model_dir(args.model)
    model = load(directory, kind=CLIP)
    index = ImageIndex(args.folder, model, model_id=_model_id(directory))
    query = index.encode_query(args.query)  # a bad image query fails before the folder is read
    hits = index.build().search(query, k=args.top_k)
    print(f"index: {len(index.files)} images ({index.embedded_now} embedded now, "
          f"{len(index.files) - index.embedded_now} from cache)", file=sys.stderr)
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
    from mmgen.cnn import Classifier
    from mmgen.cnn.predict import classify_files
    from mmgen.hub import load

    rows = classify_files(args.images, load(args.model, kind=Classifier), top_k=args.top_k)
    for row in rows:  # the readable files are classified; each other one is an error line
        if "error" in row:
            print(f"mmgen classify: error: {row['error']}", file=sys.stderr)
    failed = 2 if any("error" in row for row in rows) else 0
    if args.json:
        print(json.dumps(rows, indent=2))
        return failed
    def fmt(top: list[dict]) -> str:
        return ", ".join(f"{p['label']} ({p['prob']:.1%})" for p in top)

    for row in rows:
        if "error" in row:
            continue
        if "attributes" in row:
            preds = "; ".join(f"{a}: {fmt(top)}" for a, top in row["attributes"].items())
        else:
            preds = fmt(row["top"])
        print(f"{row['file']}: {preds}")
    return failed


DEFAULT_T2I_MODEL = "shapes-t2i"


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate images from a prompt, or of classes with a class-conditional DiT (--class);
    or re-create one from a PNG's parameters."""
    from dataclasses import replace

    from mmgen.diffusion.metadata import GenerationRequest, read_params
    from mmgen.diffusion.outputs import OutputTarget

    given = {"prompt": args.prompt, "negative_prompt": args.negative_prompt,
             "sampler": args.sampler, "steps": args.steps, "guidance": args.guidance,
             "seed": args.seed, "height": args.height, "width": args.width}
    given = {k: v for k, v in given.items() if v is not None}
    model = args.model
    if args.from_image:
        params = read_params(args.from_image)
        request = replace(params.request(), **given)
        model = model or params.model
    else:
        request = GenerationRequest(**{"prompt": None, **given})
    request = replace(request, num_images=args.num_images)
    classes = _is_class_model(model)
    if classes:
        request = replace(request, prompt=_class_prompts(args, request.prompt, model))
    elif args.classes or args.vae:
        raise CLIError(f"--class and --vae go with a class-conditional DiT; "
                       f"{model or DEFAULT_T2I_MODEL} is a text-to-image model: give a PROMPT")
    elif request.prompt is None or not request.prompt.strip():
        raise CLIError("give a non-empty PROMPT (or --from-image PNG)")
    request.check_limits()  # sizes, steps, counts, seeds: before anything is loaded
    prompts = request.distinct_prompts()
    out = OutputTarget.parse(args.out, " ".join(prompts), len(prompts) * args.num_images,
                             args.overwrite)
    from mmgen.diffusion.pipeline import TextToImagePipeline  # late: argument errors stay instant
    from mmgen.hub import load, load_class_pipeline

    pipe = load_class_pipeline(model, args.vae, dtype=args.dtype) if classes else \
        load(model or DEFAULT_T2I_MODEL, kind=TextToImagePipeline, dtype=args.dtype)
    images = pipe.generate(request)
    paths, grid = out.write(images)
    records = [{"path": str(path), **json.loads(image.info["mmgen"])}
               for path, image in zip(paths, images, strict=True)]
    return _print_outputs(records, grid, args.json)


def _is_class_model(model: str | None) -> bool:
    """Whether ``model`` is a class-conditional DiT or DiT pipeline (from its saved class)."""
    if model is None:
        return False
    from mmgen.dit import ClassConditionalPipeline, DiT
    from mmgen.hub import saved_class

    return issubclass(saved_class(model), (DiT, ClassConditionalPipeline))


def _class_prompts(args: argparse.Namespace, prompt: Any, model: str) -> Any:
    """A class-conditional model's prompts: the --class values (or a --from-image PNG's)."""
    if args.prompt is not None or args.negative_prompt is not None:
        raise CLIError(f"{model} is class-conditional: give --class N (a class number or "
                       "name), not a prompt")
    if not args.classes and not args.from_image:
        raise CLIError(f"{model} is class-conditional: say which class with --class N")
    return args.classes or prompt


def _print_outputs(records: list[dict], grid: Path | None, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"images": records, "grid": str(grid) if grid else None}, indent=2))
    else:
        print("\n".join([r["path"] for r in records] + ([str(grid)] if grid else [])))
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
                                   "shapes (default) or a folder of captioned images")
    p.add_argument("--steps", type=_positive_int,
                   help="optimizer steps (default: the recipe's; warm-up, checkpoints and EMA "
                        "scale with it)")
    p.add_argument("--batch-size", type=_positive_int, help="default: the recipe's")
    p.add_argument("--lr", type=_finite_float, help="peak learning rate (default: the "
                                                     "recipe's)")
    p.add_argument("--seed", type=_train_seed, help="0 to 2**32-1 (default: the recipe's)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="text- or class-to-image: write PNGs with their "
                                        "parameters")
    p.add_argument("prompt", nargs="?", help="what to draw")
    p.add_argument("--class", dest="classes", action="append", metavar="CLASS",
                   help="with a class-conditional DiT: a class number or name (repeat for "
                        "several). DiT defaults: DDIM, 50 steps, guidance 4.0 (diffusers' DiT "
                        "example; the paper used 250 DDPM steps), 256 px for XL/2-256 + SD VAE")
    p.add_argument("--vae", help="with a bare DiT (official .pt, diffusers or mmgen folder): "
                                 "the AutoencoderKL folder (diffusers or mmgen) to decode with")
    p.add_argument("--negative-prompt", help="what to steer away from")
    p.add_argument("--model", help=f"bundled name, pipeline / Stable Diffusion folder, or "
                                    f"single file, or a DiT (default {DEFAULT_T2I_MODEL})")
    p.add_argument("--sampler", help="ddim, dpm++2m, euler, euler_a or ddpm (default: the "
                                     "model's)")
    p.add_argument("--steps", type=_positive_int, help="sampler steps (default: the model's)")
    p.add_argument("--guidance", type=_finite_float, help="classifier-free guidance scale")
    p.add_argument("--seed", type=_seed, help="seed of the first image, 0 to 2**64-1; image i "
                                              "uses seed+i (default: random)")
    p.add_argument("--num-images", type=_positive_int, default=1)
    p.add_argument("--height", type=_positive_int, help="pixels (default: the model's)")
    p.add_argument("--width", type=_positive_int, help="pixels (default: the model's)")
    p.add_argument("--out", help="a folder, where each image gets a new name NNNNN-SEED-"
                                 "prompt.png (default: the current folder), or a .png file")
    p.add_argument("--overwrite", action="store_true",
                   help="with --out FILE.png: replace the file if it exists")
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


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _seed(text: str, top: int = 2**64 - 1) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= top:
        raise argparse.ArgumentTypeError(f"must be in [0, {top}], got {value}")
    return value


def _train_seed(text: str) -> int:
    return _seed(text, top=2**32 - 1)  # numpy's seeds are 32-bit


def _version() -> str:
    from mmgen.version import __version__

    return __version__


def _one_line_warning(command: str):
    """``warnings.showwarning`` for the CLI: ``mmgen COMMAND: warning: ...`` on one line."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = "; ".join(part.strip() for part in str(message).splitlines() if part.strip())
        print(f"mmgen {command}: warning: {text}", file=sys.stderr)

    return show


def _message(e: BaseException) -> str:
    """One line for a user error."""
    if isinstance(e, KeyError) and e.args:
        text = str(e.args[0])
    elif isinstance(e, MemoryError):
        text = (f"out of memory ({e or 'the allocator gave up'}); ask for less (smaller images, "
                "fewer at once) or lower the limits of docs/reliability.md")
    elif isinstance(e, OSError) and e.strerror and e.filename:  # "[Errno 2] ..." -> "f: ..."
        text = f"{e.filename}: {e.strerror}"
    else:
        text = str(e) or type(e).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command)
            return args.func(args)
    except (CLIError, *USER_ERRORS) as e:
        if args.debug:
            raise
        print(f"mmgen {args.command}: error: {_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
