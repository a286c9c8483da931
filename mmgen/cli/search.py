"""``mmgen search`` (CLIP image search) and ``mmgen classify``: models applied to image files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmgen.cli.args import positive_int


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="find images in a folder by text or by example image")
    p.add_argument("folder", help="a folder of images (searched recursively)")
    p.add_argument("query", help="a text, or the path of an image to find similar ones")
    p.add_argument("--model", default="shapes-clip",
                   help="a CLIP model folder or bundled name (default shapes-clip, which knows "
                        "only the words of Shapes captions)")
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("classify", help="classify images with a trained classifier")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", default="mnist-lenet5", help="bundled name or model folder")
    p.add_argument("--top-k", type=positive_int, default=1)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_classify)


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
