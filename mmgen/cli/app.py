"""``mmgen app``: serve the Gradio web app (:mod:`mmgen_app`, installed with the ``app``
extra) on loopback by default.

    mmgen app                                   # http://127.0.0.1:7860
    mmgen app --model runs/my-t2i --search-folder outputs --port 8000
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgen.cli.args import positive_int
from mmgen.cli.errors import CLIError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="serve the web app (text-to-image, style transfer, "
                                   "colorization, CLIP) in a browser")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; "
                        "0.0.0.0 serves your network)")
    p.add_argument("--port", type=positive_int, default=7860)
    p.add_argument("--model", action="append", default=[], metavar="NAME_OR_PATH",
                   help="another text-to-image model to serve (a name, folder or file; repeat "
                        "for several); the bundled ones are always there")
    p.add_argument("--clip-model", default="shapes-clip", help="the CLIP tab's model")
    p.add_argument("--search-folder", metavar="FOLDER",
                   help="a folder of images for the CLIP tab's text search")
    p.add_argument("--concurrency", type=positive_int, default=2,
                   help="jobs that run at once (default 2)")
    p.add_argument("--queue-size", type=positive_int, default=64,
                   help="jobs that may wait (default 64); more are refused")
    p.add_argument("--max-side", type=positive_int, default=512,
                   help="largest text-to-image width/height in px (default 512)")
    p.add_argument("--max-steps", type=positive_int, default=100,
                   help="most sampler steps (default 100)")
    p.add_argument("--max-images", type=positive_int, default=4,
                   help="most images per request (default 4)")
    p.add_argument("--max-upload-mb", type=positive_int, default=20,
                   help="largest uploaded file in MB (default 20)")
    p.add_argument("--fast", action="store_true",
                   help="text-to-image on the fast path (bf16 where native, tiled attention; "
                        "images differ from fp32 by bf16 rounding)")
    p.add_argument("--compile", action="store_true",
                   help="--fast plus torch.compile (each new image size compiles once)")
    p.set_defaults(func=cmd_app)


def cmd_app(args: argparse.Namespace) -> int:
    """Build the app and serve it until interrupted."""
    import importlib.util

    missing = [m for m in ("gradio", "mmgen_app") if importlib.util.find_spec(m) is None]
    if missing:
        raise CLIError(f"the web app needs the app extra ({', '.join(missing)} not installed): "
                       "pip install 'mmgen[app]'")
    from mmgen_app import AppConfig, AppLimits, build_app

    for model in args.model:
        from mmgen.hub import saved_class  # checks the name, folder or file exists

        saved_class(model)
    if args.search_folder and not Path(args.search_folder).is_dir():
        raise CLIError(f"--search-folder {args.search_folder}: no such folder")
    config = AppConfig(host=args.host, port=args.port, models=tuple(args.model),
                       clip_model=args.clip_model, search_folder=args.search_folder,
                       concurrency=args.concurrency, queue_size=args.queue_size,
                       fast=args.fast, compile=args.compile,
                       limits=AppLimits(max_side=args.max_side, max_steps=args.max_steps,
                                        max_images=args.max_images,
                                        max_upload_mb=float(args.max_upload_mb)))
    app = build_app(config)
    print(f"mmgen app: serving on http://{args.host}:{args.port} (Ctrl+C stops it)")
    app.launch(quiet=True)
    return 0
