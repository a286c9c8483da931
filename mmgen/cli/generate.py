"""``mmgen generate``: text- or class-to-image, written as PNGs that carry their parameters.

The model decides the path: a class-conditional DiT (``--class``), a one-step generator (a
GAN or VAE pipeline of :mod:`mmgen.onestep`: ``--class``, a Shapes caption as the prompt, or
nothing), or a text-to-image pipeline (the prompt)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mmgen.cli.args import finite_float, positive_int, seed
from mmgen.cli.errors import CLIError

DEFAULT_T2I_MODEL = "shapes-t2i"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="text- or class-to-image (diffusion, DiT, GAN, VAE): "
                                        "write PNGs with their parameters")
    p.add_argument("prompt", nargs="?", help="what to draw")
    p.add_argument("--class", dest="classes", action="append", metavar="CLASS",
                   help="with a class-conditional DiT or GAN: a class number or name (repeat "
                        "for several). DiT defaults: DDIM, 50 steps, guidance 4.0 (diffusers' DiT "
                        "example; the paper used 250 DDPM steps), 256 px for XL/2-256 + SD VAE")
    p.add_argument("--vae", help="with a bare DiT (official .pt, diffusers or mmgen folder): "
                                 "the AutoencoderKL folder (diffusers or mmgen) to decode with")
    p.add_argument("--negative-prompt", help="what to steer away from")
    p.add_argument("--model", help=f"bundled name, pipeline / Stable Diffusion folder, or "
                                    f"single file, or a DiT (default {DEFAULT_T2I_MODEL})")
    p.add_argument("--sampler", help="ddim, dpm++2m, euler, euler_a or ddpm (default: the "
                                     "model's)")
    p.add_argument("--steps", type=positive_int, help="sampler steps (default: the model's)")
    p.add_argument("--guidance", type=finite_float, help="classifier-free guidance scale")
    p.add_argument("--seed", type=seed, help="seed of the first image, 0 to 2**64-1; image i "
                                             "uses seed+i (default: random)")
    p.add_argument("--num-images", type=positive_int, default=1)
    p.add_argument("--height", type=positive_int, help="pixels (default: the model's)")
    p.add_argument("--width", type=positive_int, help="pixels (default: the model's)")
    p.add_argument("--out", help="a folder, where each image gets a new name NNNNN-SEED-"
                                 "prompt.png (default: the current folder), or a .png file")
    p.add_argument("--overwrite", action="store_true",
                   help="with --out FILE.png: replace the file if it exists")
    p.add_argument("--json", action="store_true", help="print paths and parameters as JSON")
    p.add_argument("--from-image", metavar="PNG",
                   help="re-create an image from the parameters stored in a PNG")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "auto", "bf16"],
                   help="compute precision (fp32 is exact; auto uses bf16 where native)")
    p.add_argument("--fast", action="store_true",
                   help="the fast path for diffusion models: bf16 weights where native, "
                        "tiled attention, oneDNN kernels (images differ from fp32 by bf16 "
                        "rounding; docs/performance.md)")
    p.add_argument("--compile", action="store_true",
                   help="--fast plus torch.compile (the first run per image size compiles, "
                        "about a minute; later runs reuse ~/.cache/mmgen/inductor)")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate images from a prompt, or of classes with a class-conditional DiT (--class), or
    with a one-step generator (a class, a caption or nothing); or re-create one from a PNG's
    parameters."""
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
    kind = _model_kind(model)
    if kind == "class":
        request = replace(request, prompt=_class_prompts(args, request.prompt, model))
    elif kind == "one-step":
        request = replace(request, prompt=_onestep_prompts(args, request.prompt, model))
    elif args.classes or args.vae:
        raise CLIError(f"--class and --vae go with a class-conditional DiT; "
                       f"{model or DEFAULT_T2I_MODEL} is a text-to-image model: give a PROMPT")
    elif request.prompt is None or not request.prompt.strip():
        raise CLIError("give a non-empty PROMPT (or --from-image PNG)")
    request.check_limits()  # sizes, steps, counts, seeds: before anything is loaded
    prompts = request.distinct_prompts()
    out = OutputTarget.parse(args.out, " ".join(prompts), len(prompts) * args.num_images,
                             args.overwrite)
    from mmgen.cli.sample import check_conditioning, load_onestep
    from mmgen.diffusion.pipeline import TextToImagePipeline  # late: argument errors stay instant
    from mmgen.hub import load, load_class_pipeline

    fast = args.fast or args.compile
    if fast and args.dtype != "fp32":
        raise CLIError("--fast sets its own precision (bf16 where native); drop --dtype")
    if kind == "one-step":
        if fast:
            raise CLIError(f"--fast and --compile are for diffusion models; {model} is a "
                           "one-step generator (already well under a second per batch)")
        pipe = load_onestep(model, args.dtype)
        check_conditioning(model, pipe.config.conditioning, classes=bool(args.classes),
                           caption_flag="a PROMPT")  # (generate checks --steps etc. first)
    elif kind == "class":
        pipe = load_class_pipeline(model, args.vae, dtype=args.dtype)
    else:
        pipe = load(model or DEFAULT_T2I_MODEL, kind=TextToImagePipeline, dtype=args.dtype)
    if fast:
        pipe.enable_fast(compile=args.compile)
    images = pipe.generate(request)
    paths, grid = out.write(images)
    records = [{"path": str(path), **json.loads(image.info["mmgen"])}
               for path, image in zip(paths, images, strict=True)]
    return _print_outputs(records, grid, args.json)


def _model_kind(model: str | None) -> str:
    """From ``model``'s saved class: "class" (a class-conditional DiT or DiT pipeline),
    "one-step" (a GAN or VAE pipeline) or "t2i" (text-to-image, also the default model)."""
    if model is None:
        return "t2i"
    from mmgen.dit import ClassConditionalPipeline, DiT
    from mmgen.hub import saved_class
    from mmgen.onestep import OneStepPipeline

    found = saved_class(model)
    if issubclass(found, (DiT, ClassConditionalPipeline)):
        return "class"
    return "one-step" if issubclass(found, OneStepPipeline) else "t2i"


def _class_prompts(args: argparse.Namespace, prompt: Any, model: str) -> Any:
    """A class-conditional model's prompts: the --class values (or a --from-image PNG's)."""
    if args.prompt is not None or args.negative_prompt is not None:
        raise CLIError(f"{model} is class-conditional: give --class N (a class number or "
                       "name), not a prompt")
    if not args.classes and not args.from_image:
        raise CLIError(f"{model} is class-conditional: say which class with --class N")
    return args.classes or prompt


def _onestep_prompts(args: argparse.Namespace, prompt: Any, model: str) -> Any:
    """A one-step generator's conditions: the --class values, else the prompt (a caption, a
    class, or a --from-image PNG's), else none (an unconditional model)."""
    if args.vae:
        raise CLIError(f"--vae goes with a bare DiT; {model} is a one-step generator (GAN/VAE)")
    if args.classes and args.prompt is not None:
        raise CLIError("give --class K or a PROMPT, not both")
    return args.classes or ("" if prompt is None else prompt)


def _print_outputs(records: list[dict], grid: Path | None, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"images": records, "grid": str(grid) if grid else None}, indent=2))
    else:
        print("\n".join([r["path"] for r in records] + ([str(grid)] if grid else [])))
    return 0
