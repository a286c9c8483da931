"""``mmgen colorize``: colour a black-and-white photo (:mod:`mmgen.color.colorize`), written as
a PNG that carries its parameters.

    mmgen colorize grandma.jpg --out color.png                      # photo-colorizer
    mmgen colorize grandma.jpg --colorfulness 1.5 --out color.png   # more saturated
    mmgen colorize grandma.jpg --reference beach.jpg --out color.png  # colours of a photo
    mmgen colorize grandma.jpg --method zhang --weights siggraph17-df00044c.pth --out c.png

Every check that needs no network is made before one is loaded, and the output is written
atomically (a failure leaves no file behind).
"""

from __future__ import annotations

import argparse

from mmgen.cli.args import finite_float, out_file, pixels_at_least, seed
from mmgen.cli.errors import CLIError

METHODS = ("learned", "reference", "zhang")  # mmgen.color.colorize.METHODS (no torch import)
MIN_SIZE = 16  # mmgen.color.colorize.MIN_SIDE
MAX_COLORFULNESS = 4.0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "colorize",
        help="colorize a black-and-white photo (PNG with parameters)",
        description="Colour a black-and-white photo, keeping its lightness exactly. IMAGE is a "
        "file or a bundled photo name (a colour image is read as its black-and-white version). "
        "Methods: learned (mmgen's photo-colorizer, or --weights), reference (colours copied "
        "from --reference, no network), zhang (Zhang et al.'s published ECCV16 or SIGGRAPH17 "
        "file given with --weights).",
    )
    p.add_argument("image", metavar="IMAGE", help="the photo: a file or a bundled photo name")
    p.add_argument("--reference", metavar="IMG",
                   help="a colour photo whose colours to use (implies --method reference)")
    p.add_argument("--method", choices=METHODS,
                   help="learned (default), reference (default with --reference) or zhang")
    p.add_argument("--colorfulness", type=_colorfulness, default=1.0,
                   help=f"more (> 1) or less (< 1) colour, up to {MAX_COLORFULNESS:g} "
                        "(default 1): the temperature 0.38 / C of a class network, else a "
                        "chroma factor")
    p.add_argument("--weights", metavar="PATH",
                   help="learned: a model folder or name; zhang: the .pth/.safetensors file")
    p.add_argument("--size", type=pixels_at_least(MIN_SIZE), default=256,
                   help=f"long side at which the network (or the reference matching) sees "
                        f"the photo, >= {MIN_SIZE} (default 256); the output keeps its size")
    p.add_argument("--no-sepia-guard", action="store_true",
                   help="keep a sepia-looking result of a class network as it is")
    p.add_argument("--seed", type=seed, help="reference: seed of its sampling (default 0)")
    p.add_argument("--out", metavar="FILE.png", required=True, help="the output PNG")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks on errors (also: mmgen --debug colorize ...)")
    p.set_defaults(func=cmd_colorize)


def cmd_colorize(args: argparse.Namespace) -> int:
    """Colorize IMAGE and write --out."""
    method = args.method or ("reference" if args.reference else "learned")
    if args.reference and method != "reference":
        raise CLIError(f"--reference is read by --method reference, not {method}")
    if method == "reference" and not args.reference:
        raise CLIError("--method reference needs --reference IMG (a colour photo)")
    if args.seed is not None and method != "reference":
        raise CLIError("--seed: --method reference only (the networks are deterministic)")
    out = out_file(args.out, (".png",), args.overwrite)
    from mmgen.color.colorize import ColorizeRequest, colorize, save_png

    request = ColorizeRequest(method=method, colorfulness=args.colorfulness, size=args.size,
                              weights=args.weights, sepia_guard=not args.no_sepia_guard,
                              seed=args.seed or 0)
    image = colorize(args.image, request, reference=args.reference)
    print(save_png(image, out, args.overwrite))
    return 0


def _colorfulness(text: str) -> float:
    value = finite_float(text)
    if not 0 < value <= MAX_COLORFULNESS:
        raise argparse.ArgumentTypeError(f"must be in (0, {MAX_COLORFULNESS:g}], got {value:g}")
    return value

