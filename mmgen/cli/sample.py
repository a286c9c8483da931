"""``mmgen sample`` and ``mmgen interpolate``: a one-step generator's (GAN, VAE) samples as
one grid PNG, and a latent walk as an animated GIF or a strip PNG (see :mod:`mmgen.onestep`).

Conditions depend on the model's ``conditioning``: ``--class`` (a class number or name) for a
class-conditional model, ``--prompt`` / ``--from`` / ``--to`` a Shapes caption for a Shapes
model, none for an unconditional one. Every check that needs no model is made before it is
loaded, and the output is written atomically (a failure leaves no file behind).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmgen.cli.args import out_file, positive_int, seed
from mmgen.cli.errors import CLIError

GRID_TILE = 128  # sample grids and strips: tiles upscaled to about this many pixels
GIF_TILE = 256  # GIF frames: upscaled to about this many pixels
METHODS = ("slerp", "lerp")  # mmgen.latents.METHODS (not imported: it needs torch)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="a grid of a one-step generator's (GAN, VAE) samples")
    p.add_argument("--model", required=True, help="a one-step pipeline folder or installed name")
    p.add_argument(
        "--class",
        dest="classes",
        action="append",
        metavar="K",
        help="class-conditional model: a class number or name (repeat for several; "
        "default: all classes in turn)",
    )
    p.add_argument(
        "--prompt",
        dest="prompts",
        action="append",
        metavar="CAPTION",
        help="Shapes model: a caption (repeat for several)",
    )
    p.add_argument(
        "-n",
        "--num-images",
        type=positive_int,
        default=64,
        help="samples per condition (without one: in all, cycling through the "
        "classes of a class-conditional model); default 64",
    )
    p.add_argument("--seed", type=seed, default=0, help="image i uses seed+i (default 0)")
    p.add_argument("--out", required=True, help="the grid's .png file")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _add_dtype(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "interpolate", help="a one-step generator's latent walk as a GIF or a strip PNG"
    )
    p.add_argument("--model", required=True, help="a one-step pipeline folder or installed name")
    p.add_argument(
        "--from",
        dest="start",
        metavar="COND",
        help="start condition: a class number or name, or a Shapes caption (none "
        "for an unconditional model)",
    )
    p.add_argument("--to", dest="end", metavar="COND", help="end condition (default: --from)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the start's latent (default 0)")
    p.add_argument("--end-seed", type=seed, help="seed of the end's latent (default: seed+1)")
    p.add_argument(
        "--frames", type=_frames, default=16, help="frames, both ends included (default 16)"
    )
    p.add_argument(
        "--method",
        default="slerp",
        choices=METHODS,
        help="how the latent moves: slerp (along the sphere, default) or lerp",
    )
    p.add_argument("--fps", type=positive_int, default=8, help="GIF frames per second (default 8)")
    p.add_argument("--out", required=True, help="a .gif (animated) or .png (one row) file")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _add_dtype(p)
    p.set_defaults(func=cmd_interpolate)


def _add_dtype(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", default="fp32", choices=["fp32", "auto", "bf16"],
                   help="compute precision (fp32 is exact; auto uses bf16 where native)")


def cmd_sample(args: argparse.Namespace) -> int:
    """Write a grid of samples: ``-n`` per condition, image i with seed ``--seed`` + i."""
    from mmgen.checkpoint import write_file
    from mmgen.diffusion.images import image_grid
    from mmgen.diffusion.metadata import GenerationRequest

    if args.classes and args.prompts:
        raise CLIError(
            "give --class (a class-conditional model) or --prompt (a Shapes model), not both"
        )
    given = args.classes or args.prompts
    out = out_file(args.out, (".png",), args.overwrite)
    GenerationRequest(given or "", seed=args.seed, num_images=args.num_images).check_limits()
    pipe = load_onestep(args.model, args.dtype)
    kind, n = pipe.config.conditioning, args.num_images
    check_conditioning(args.model, kind, bool(args.classes), bool(args.prompts))
    cols = None  # near-square
    if given:  # n of each, one row per condition when the rows stay short
        images = pipe(given, seed=args.seed, num_images=n)
        cols = n if len(given) > 1 and n <= 16 else None
    elif kind == "class":  # all classes in turn, one column each
        classes = pipe.model.config.conditions[0]
        images = pipe([i % classes for i in range(n)], seed=args.seed)
        cols = min(classes, n)
    elif kind == "none":
        images = pipe(None, seed=args.seed, num_images=n)
    else:
        raise CLIError(f"{args.model} is conditioned on Shapes captions: give --prompt CAPTION")
    prompts = [_prompt(im) for im in images]  # "class 3 (cat)": short enough to label
    labels = prompts if kind == "class" and len(set(prompts)) > 1 else None
    scale = max(1, GRID_TILE // images[0].width)
    chars = images[0].width * scale // 6  # characters per label line (~6 px each)
    grid = image_grid(images, cols=cols, labels=labels, scale=scale, label_width=chars)
    print(write_file(out, lambda tmp: grid.save(tmp, format="PNG"), args.overwrite))
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    """Write a latent walk from (--from, --seed) to (--to, --end-seed)."""
    from PIL import Image

    from mmgen.checkpoint import write_file
    from mmgen.diffusion.images import image_grid
    from mmgen.limits import MAX_IMAGES, check_seed

    out = out_file(args.out, (".gif", ".png"), args.overwrite)
    MAX_IMAGES.check(args.frames, f"{args.frames:,} frames")
    end_seed = args.seed + 1 if args.end_seed is None else args.end_seed
    check_seed(end_seed, what="end seed")
    pipe = load_onestep(args.model, args.dtype)
    kind = pipe.config.conditioning
    if kind == "none" and (args.start is not None or args.end is not None):
        raise CLIError(f"{args.model} is unconditional: give no --from / --to")
    if kind != "none" and args.start is None:
        what = "K (a class number or name)" if kind == "class" else "CAPTION (a Shapes caption)"
        raise CLIError(f"{args.model} is conditional: give --from {what}, and --to for another end")
    frames = pipe.interpolate(
        args.start,
        args.end,
        seed=args.seed,
        end_seed=end_seed,
        frames=args.frames,
        method=args.method,
    )
    w, h = frames[0].size
    if out.suffix.lower() == ".png":
        strip = image_grid(frames, cols=len(frames), scale=max(1, GRID_TILE // w))

        def save(tmp: Path) -> None:
            strip.save(tmp, format="PNG")
    else:
        s = max(1, GIF_TILE // w)
        big = [f.resize((w * s, h * s), Image.NEAREST) for f in frames]

        def save(tmp: Path) -> None:  # identical consecutive frames are merged by PIL
            big[0].save(
                tmp,
                format="GIF",
                save_all=True,
                append_images=big[1:],
                duration=round(1000 / args.fps),
                loop=0,
            )

    print(write_file(out, save, args.overwrite))
    return 0


def load_onestep(model: str, dtype: str) -> Any:
    """The one-step pipeline ``model``; a ``CLIError`` naming what it is otherwise."""
    from mmgen.dit import DiT
    from mmgen.hub import load, saved_class
    from mmgen.onestep import OneStepPipeline
    from mmgen.pipeline import Pipeline

    found = saved_class(model)
    if not issubclass(found, OneStepPipeline):
        if issubclass(found, (Pipeline, DiT)):
            hint = "; use mmgen generate"
        elif hasattr(found, "synthesize"):  # a bare DCGAN / ConvVAE network
            hint = (
                "; save it as a pipeline: mmgen.onestep.OneStepPipeline(model, "
                "OneStepConfig(...)).save_pretrained(folder)"
            )
        else:
            hint = ""
        raise CLIError(f"{model} is a {found.__name__}, not a one-step generator (GAN/VAE){hint}")
    return load(model, kind=OneStepPipeline, dtype=dtype)


def check_conditioning(
    model: str,
    kind: str,
    classes: bool,
    captions: bool = False,
    caption_flag: str = "--prompt CAPTION",
) -> None:
    """A ``CLIError`` for classes (--class) or captions (--prompt) given to a model of
    conditioning ``kind`` that takes other conditions (``caption_flag``: how the command
    takes a caption, for the hint)."""
    if kind == "none" and (classes or captions):
        raise CLIError(f"{model} is unconditional: give no {'--class' if classes else '--prompt'}")
    if kind == "class" and captions:
        raise CLIError(f"{model} is class-conditional: give --class K, not --prompt")
    if kind == "shapes" and classes:
        raise CLIError(
            f"{model} is conditioned on Shapes captions: give {caption_flag}, not --class"
        )


def _frames(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"a walk needs at least 2 frames, got {value}")
    return value


def _prompt(image: Any) -> str:
    from mmgen.diffusion.metadata import GenerationParams

    return GenerationParams.from_json(image.info["mmgen"]).prompt
