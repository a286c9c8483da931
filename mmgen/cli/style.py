"""``mmgen style``: paint a photo in the style of others (:mod:`mmgen.style.transfer`), written
as a PNG that carries its parameters.

    mmgen style photo.jpg swirls --out out.png                      # gatys, offline
    mmgen style photo.jpg starry.jpg waves --style-weights 2 1 --method adain --out out.png
    mmgen style photo.jpg swirls --method fast --out out.png        # style-fast's swirls
    mmgen style --list                                              # names and models

Every check that needs no network is made before one is loaded, and the output is written
atomically (a failure leaves no file behind).
"""

from __future__ import annotations

import argparse

from mmgen.cli.args import finite_float, out_file, pixels_at_least, positive_int, seed
from mmgen.cli.errors import CLIError

METHODS = ("gatys", "fast", "adain")  # mmgen.style.transfer.METHODS (not imported: torch)
MIN_SIZE = 32  # mmgen.style.images.MIN_SIDE


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "style",
        help="style transfer: paint CONTENT in the style of STYLE images (PNG with parameters)",
        description="Paint CONTENT in the style of STYLE. CONTENT and STYLE are image files or "
        "names (mmgen style --list); several styles are blended. Methods: gatys (optimisation, "
        "any style, about a minute at 512 px on a CPU), fast (a network trained on a few styles: "
        "style-fast and the styles it knows, or --weights gives it), adain (one network for "
        "any style, style-adain or --weights).",
    )
    p.add_argument("content", nargs="?", metavar="CONTENT",
                   help="the image to repaint: a file or a bundled photo name")
    p.add_argument("styles", nargs="*", metavar="STYLE",
                   help="style images: files, style names or photo names (fast: names of the "
                        "styles the network knows; none for a one-style --weights file)")
    p.add_argument("--list", action="store_true",
                   help="list the style and photo names and the style models")
    p.add_argument("--method", choices=METHODS, default="gatys",
                   help="gatys (default), fast or adain")
    p.add_argument("--strength", type=_unit, default=1.0,
                   help="how much style, 0 to 1 (default 1). gatys: style weight x S^3; fast: "
                        "output blended with the content; adain: alpha")
    p.add_argument("--preserve-color", action="store_true",
                   help="keep the content's colours (gatys, fast: luminance-only transfer; "
                        "adain: styles recoloured to the content's first)")
    p.add_argument("--size", type=pixels_at_least(MIN_SIZE), default=512,
                   help=f"long side of the output in px, >= {MIN_SIZE} (default 512)")
    p.add_argument("--vgg-weights", metavar="PATH",
                   help="gatys: a torchvision VGG-19/16 file (default: offline random features)")
    p.add_argument("--weights", metavar="PATH",
                   help="fast: a TransformerNet .pth/.safetensors file, model folder or name; "
                        "adain: an AdaIN model folder or name, or ENCODER,DECODER files")
    p.add_argument("--style-weights", nargs="+", type=finite_float, metavar="W",
                   help="one weight per STYLE, normalised (default: equal); fast blends the "
                        "styles inside its network")
    p.add_argument("--steps", type=positive_int,
                   help="gatys: loss evaluations in all (default 380)")
    p.add_argument("--seed", type=seed, help="gatys: seed of the random features (default 0)")
    p.add_argument("--out", metavar="FILE.png", help="the output PNG")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks on errors (also: mmgen --debug style ...)")
    p.set_defaults(func=cmd_style)


def cmd_style(args: argparse.Namespace) -> int:
    """Stylize CONTENT with STYLE(s) and write --out; or list the names (--list)."""
    if args.list:
        return _print_list()
    if args.content is None or args.out is None:
        raise CLIError("give CONTENT, STYLE and --out FILE.png (mmgen style --list shows the "
                       "names of styles and photos)")
    if args.method != "gatys":
        given = [flag for flag, value in (("--steps", args.steps), ("--seed", args.seed),
                                          ("--vgg-weights", args.vgg_weights)) if value is not None]
        if given:
            raise CLIError(f"{', '.join(given)}: gatys only; {args.method} runs one pass of a "
                           "trained network (--weights)")
    elif args.weights is not None:
        raise CLIError("--weights: fast and adain only; gatys takes a VGG file as --vgg-weights")
    out = out_file(args.out, (".png",), args.overwrite)
    from mmgen.style.transfer import GATYS_STEPS, StyleRequest, save_png, stylize

    request = StyleRequest(
        method=args.method, strength=args.strength, preserve_color=args.preserve_color,
        size=args.size, vgg_weights=args.vgg_weights, weights=args.weights,
        style_weights=tuple(args.style_weights or ()),
        steps=GATYS_STEPS if args.steps is None else args.steps,
        seed=0 if args.seed is None else args.seed)
    image = stylize(args.content, args.styles, request, progress=True)
    print(save_png(image, out, args.overwrite))
    return 0


def _print_list() -> int:
    from mmgen.data.photos import list_photos
    from mmgen.hub import BUNDLED_DIR, list_pretrained, model_dir
    from mmgen.registry import read_config
    from mmgen.style.styles import list_styles
    from mmgen.style.transfer import DEFAULT_ADAIN, DEFAULT_FAST

    def model(name: str, method: str) -> str:
        if name not in list_pretrained():
            return f"none (make it with mmgen train --recipe {name} --install)"
        folder = model_dir(name)
        where = "bundled" if folder.parent == BUNDLED_DIR else f"installed in {folder.parent}"
        styles = read_config(folder).get("config", {}).get("styles") or []
        knows = f"; styles {', '.join(styles)}" if styles else ""
        return f"{name} ({where}{knows}; --method {method} runs it)"

    lines = [
        "styles (STYLE; drawn or cropped to --size x --size):",
        f"  painted: {', '.join(list_styles('procedural'))}",
        f"  photos:  {', '.join(list_styles('photo'))}",
        f"bundled photos (CONTENT or STYLE): {', '.join(list_photos())}",
        "style models (installed, else bundled):",
        f"  fast:  {model(DEFAULT_FAST, 'fast')}",
        f"  adain: {model(DEFAULT_ADAIN, 'adain')}",
    ]
    print("\n".join(lines))
    return 0


def _unit(text: str) -> float:
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value:g}")
    return value

