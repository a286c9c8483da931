"""Style transfer results (issue #19): numbers, a table and a picture grid for each method.

    python scripts/style_results.py                    # gatys, fast, adain; 4 photos x 3 styles
    python scripts/style_results.py --methods gatys --photos astronaut --styles swirls --size 128
    python scripts/style_results.py --fast-weights runs/style-fast/model \\
        --adain-weights runs/style-adain/model --styles swirls pointillism waves

Every photo of ``--photos`` (default ``EVAL_PHOTOS``), resized and centre-cropped to ``--size``
square as the style recipes evaluate, is stylized with every style of ``--styles`` (drawn at
``--size``) by ``stylize(photo, [style], StyleRequest(method=..., size=...))`` with the
method's defaults. fast and adain run the installed ``style-fast`` and ``style-adain`` unless
``--fast-weights`` / ``--adain-weights`` names a model; AdaIN's held-out styles (never seen in
its training: ``waves``, ``immunohistochemistry``) are styles like any other here.

Measures per method, over its (photo, style) pairs:

* :func:`mmgen.recipes.style.stylization_results`: the Gram style loss on the random network
  (content's / output's, geometric mean; issue target >= 10), and three measures that do not
  use that network: colour-histogram and texture (LBP + gradient) distances to the style
  (content's / output's, > 1: the output is nearer the style) and edge-map correlation with
  the content (structure, target >= 0.5). See :mod:`mmgen.metrics.style`.
* content loss: ``mean (phi(output) - phi(content))^2 / mean phi(content)^2`` with ``phi`` the
  random feature network at ``CONTENT_LAYER`` (relu4_2, Gatys et al.'s content layer), so 0
  is the content's features exactly and the value is a fraction of their energy. The same
  number with the other content photos in the output's place (``content_loss_unrelated``,
  their mean) is the level of an image that shares nothing with the content;
  ``content_loss_style`` is the style image's. The bound is on the ratio to the unrelated
  level, ``content_loss_ratio`` (mean over the pairs) <= ``CONTENT_LOSS_BOUND``. relu4_2,
  not the fast models' relu2_1: at relu2_1 the random network sees texture as much as
  layout, and Gatys' outputs (structure 0.66-0.71) score 0.79-0.90 of an unrelated photo
  there, against 0.52-0.53 at relu4_2 (astronaut, chelsea x swirls at 128 px).

Writes ``docs/style_results.json``, ``docs/style_results.md`` (the tables) and
``docs/images/style_grid.png`` (rows: photos; columns: the photo, the styles, then each
method's outputs style by style). Outputs are cached as PNGs in ``--work``, keyed by method,
weights hash (gatys: of the random feature network, its steps and content layers), photo,
style and size, so a re-run only computes what is new.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("gatys", "fast", "adain")
INSTALLED = {"fast": "style-fast", "adain": "style-adain"}  # default model of each method
DEFAULT_STYLES = ("swirls", "pointillism", "waves")
CONTENT_LAYER = "relu4_2"  # of feature_network("random"): Gatys et al.'s content layer
# content_loss_ratio at most (output's content loss / unrelated photos'; those score 1 by
# definition, style images about 1.1): Gatys at 128 px, astronaut and chelsea x swirls, 0.53.
CONTENT_LOSS_BOUND = 0.75
MAX_GRID_BYTES = 1_500_000  # a larger grid PNG is saved with a 256-colour palette instead
TILE = 128  # px per picture in the grid


@dataclass(frozen=True)
class Method:
    """One method as it runs: the weights ``StyleRequest`` gets and the cache key."""

    name: str  # "gatys", "fast" or "adain"
    weights: str | None  # StyleRequest.weights (gatys: None, the random features)
    key: str  # weights hash (gatys: of the random feature network, + "-s" steps)
    steps: int  # gatys: loss evaluations (StyleRequest.steps); unused otherwise


def files_hash(source: str) -> str:
    """First 10 hex digits of the SHA-256 of a model's files (names and bytes): a folder, an
    installed name or ``ENCODER,DECODER`` files."""
    from mmgen.hub import model_dir

    if "," in source and not Path(source).exists():
        paths = [Path(p) for p in source.split(",")]
    elif Path(source).is_file():
        paths = [Path(source)]
    else:
        folder = model_dir(source)
        paths = sorted(p for p in folder.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:10]


def resolve_methods(names: list[str], weights: dict[str, str | None],
                    steps: int | None) -> list[Method]:
    """The methods to run; a ``FileNotFoundError`` naming the fix when a model is missing."""
    from mmgen.hub import list_pretrained
    from mmgen.pipeline import weights_hash
    from mmgen.style.features import feature_network
    from mmgen.style.transfer import CONTENT_LAYERS, StyleRequest

    steps = steps if steps is not None else StyleRequest().steps
    methods = []
    for name in names:
        if name == "gatys":
            net_hash = weights_hash(feature_network("random", seed=StyleRequest().seed))
            layers = "+".join(CONTENT_LAYERS["random"])
            methods.append(Method(name, None, f"{net_hash}-s{steps}-{layers}", steps))
            continue
        source = weights.get(name) or INSTALLED[name]
        # "," : adain's ENCODER,DECODER files, which files_hash reads
        known = Path(source).exists() or source in list_pretrained() or "," in source
        if not known and weights.get(name) is None:
            raise FileNotFoundError(
                f"method {name} needs a trained model: {source} is not installed (make it with "
                f"`mmgen train --recipe {source} --install`), or give --{name}-weights "
                f"(a model folder or installed name), or leave {name} out of --methods")
        if not known:
            raise FileNotFoundError(f"--{name}-weights {source}: no such folder, nor an "
                                    "installed model name (mmgen models --pretrained)")
        methods.append(Method(name, source, files_hash(source), 0))
    return methods


def stylized(method: Method, photo: str, style: str, size: int,
             work: Path) -> tuple[Image.Image, bool]:
    """(``photo`` (``size`` px square) in ``style`` by ``method``, whether it came from the
    cache in ``work``)."""
    from mmgen.data.photos import load_photo
    from mmgen.style.transfer import StyleRequest, save_png, stylize

    path = work / method.name / f"{method.key}-{photo}-{style}-{size}.png"
    if path.is_file():
        with Image.open(path) as image:
            return image.convert("RGB"), True
    request = StyleRequest(method=method.name, size=size, weights=method.weights,
                           **({"steps": method.steps} if method.name == "gatys" else {}))
    image = stylize(load_photo(photo, size), [style], request, progress=False)
    save_png(image, path)
    return image, False


@torch.no_grad()
def content_losses(net: Any, contents: list[torch.Tensor], images: list[torch.Tensor]) -> \
        list[float]:
    """``mean (phi(image) - phi(content))^2 / mean phi(content)^2`` per pair, at
    ``CONTENT_LAYER`` of ``net``: 0 when the features are the content's."""
    from mmgen.style.losses import content_loss

    losses = []
    for content, image in zip(contents, images, strict=True):
        target = net(content, [CONTENT_LAYER])  # {layer: (1, C, h, w)}
        loss = content_loss(net(image, [CONTENT_LAYER]), target) \
            / target[CONTENT_LAYER].square().mean()
        losses.append(float(loss))
    return losses


def unrelated_loss(net: Any, photo: str, size: int) -> float:
    """Mean content loss of the other content photos against ``photo`` (all ``size`` px
    squares): what an image that shares nothing with it scores."""
    from mmgen.data.photos import load_photo
    from mmgen.recipes.style import content_photos, image_tensor

    others = [image_tensor(load_photo(q, size)) for q in content_photos() if q != photo]
    content = image_tensor(load_photo(photo, size))
    return statistics.fmean(content_losses(net, [content] * len(others), others))


def measure(net: Any, contents: list[torch.Tensor], outputs: list[torch.Tensor],
            styles: list[torch.Tensor], unrelated: list[float]) -> dict[str, float]:
    """``stylization_results`` of the pairs, and their content losses: the outputs', the
    style images' in their place, and the outputs' over ``unrelated`` (one per pair)."""
    from mmgen.recipes.style import stylization_results

    results = stylization_results(contents, outputs, styles, net=net)
    ours = content_losses(net, contents, outputs)
    style_level = content_losses(net, contents, [
        s if s.shape == c.shape else _resized(s, c) for s, c in zip(styles, contents, strict=True)])
    ratios = [a / b for a, b in zip(ours, unrelated, strict=True)]
    losses = {"content_loss": statistics.fmean(ours),
              "content_loss_unrelated": statistics.fmean(unrelated),
              "content_loss_style": statistics.fmean(style_level),
              "content_loss_ratio": statistics.fmean(ratios),
              "content_loss_ratio_max": max(ratios)}
    return results | {k: round(v, 4) for k, v in losses.items()}


def _resized(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """``style`` resized to ``content``'s (H, W)."""
    return torch.nn.functional.interpolate(style, size=content.shape[-2:], mode="bilinear",
                                           antialias=True, align_corners=False)


def checks(results: dict[str, float]) -> dict[str, bool]:
    """Which targets ``results`` reach: the recipes' minimums and the content-loss bound."""
    from mmgen.recipes.style import TARGETS

    passed = {key: results[key] >= goal for key, goal in TARGETS.items()}
    return passed | {"content_loss_ratio": results["content_loss_ratio"] <= CONTENT_LOSS_BOUND}


def run(methods: list[Method], photos: list[str], styles: list[str], size: int,
        work: Path) -> tuple[dict[str, Any], dict[tuple[str, str, str], Image.Image]]:
    """Stylize every (method, photo, style) and measure each method, overall and per style.

    Returns:
        (results by method: ``weights``, ``key``, ``results``, ``passed``, ``per_style``;
        the output images by (method, photo, style)).
    """
    from mmgen.data.photos import load_photo
    from mmgen.recipes.style import image_tensor
    from mmgen.style.features import feature_network
    from mmgen.style.styles import load_style

    net = feature_network("random")  # stylization_results' default loss network
    content = {p: image_tensor(load_photo(p, size)) for p in photos}  # (1, 3, size, size)
    unrelated = {p: unrelated_loss(net, p, size) for p in photos}
    style = {s: image_tensor(load_style(s, size)) for s in styles}
    images, table = {}, {}
    total, done = len(methods) * len(photos) * len(styles), 0
    for method in methods:
        for s in styles:
            for p in photos:
                start = time.perf_counter()
                images[method.name, p, s], cached = stylized(method, p, s, size, work)
                done += 1
                took = "cached" if cached else f"{time.perf_counter() - start:.1f} s"
                print(f"[{done}/{total}] {method.name} {p} x {s} at {size} px: {took}",
                      flush=True)

        def numbers(chosen: list[str], m: Method = method) -> dict[str, float]:
            pairs = [(p, s) for s in chosen for p in photos]
            return measure(net, [content[p] for p, _ in pairs],
                           [image_tensor(images[m.name, p, s]) for p, s in pairs],
                           [style[s] for _, s in pairs], [unrelated[p] for p, _ in pairs])

        overall = numbers(styles)
        table[method.name] = {"weights": method.weights or "random", "key": method.key,
                              "results": overall, "passed": checks(overall),
                              "per_style": {s: numbers([s]) for s in styles}}
    return table, images


def grid(images: dict[tuple[str, str, str], Image.Image], methods: list[str],
         photos: list[str], styles: list[str], tile: int = TILE) -> Image.Image:
    """Rows: photos; columns: the photo, each style, then each method's output per style;
    ``tile`` px pictures with a label under each."""
    from mmgen.data.photos import load_photo
    from mmgen.diffusion.images import image_grid
    from mmgen.style.styles import load_style

    tiles, labels = [], []
    for p in photos:
        tiles += [load_photo(p, tile)] + [load_style(s, tile) for s in styles]
        labels += [p] + [f"style: {s}" for s in styles]
        for m in methods:
            tiles += [images[m, p, s].resize((tile, tile), Image.LANCZOS) for s in styles]
            labels += [f"{m}: {s}" for s in styles]
    return image_grid(tiles, cols=1 + len(styles) * (1 + len(methods)), labels=labels,
                      label_width=tile // 6)


def save_grid(picture: Image.Image, path: Path) -> None:
    """Save ``picture`` as a PNG; with a 256-colour palette if it would exceed
    ``MAX_GRID_BYTES`` in full colour (about 3x smaller)."""
    picture.save(path, optimize=True)
    if path.stat().st_size > MAX_GRID_BYTES:
        picture.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def markdown(table: dict[str, Any], photos: list[str], styles: list[str], size: int,
             command: str) -> str:
    """docs/style_results.md: the measures, one row per method and per (method, style)."""
    from mmgen.recipes.style import TARGETS
    from mmgen.style.train import FAST_STYLE_LAYERS

    lines = [
        "# Style transfer results (issue #19)",
        "",
        f"Written by `{command}` (see its docstring). Photos {', '.join(photos)} at {size} px "
        f"(centre-cropped squares) x styles {', '.join(styles)}; each method with its defaults "
        "through `stylize`.",
        "",
        "Measures (means over the pairs; [mmgen/metrics/style.py](../mmgen/metrics/style.py)):",
        "",
        "* **style loss**: Gram style loss of the content / of the output against the style "
        f"image, on the random feature network at {', '.join(FAST_STYLE_LAYERS)} "
        f"(geometric mean, worst pair in brackets; target >= "
        f"{TARGETS['style_loss_reduction']:g}). The fast models are trained on this loss.",
        "* **colour**, **texture**: chi-square distance to the style image of the content -> "
        "of the output, and their ratio (> 1: the output is nearer the style). Colour: joint "
        "RGB histograms, 8x8x8 bins; texture: histograms of uniform LBPs (radii 1 and 3) and "
        "Sobel magnitudes of the luminance. No network involved.",
        "* **structure**: correlation of the Sobel edge maps of output and content, blurred "
        f"by 2 px (worst pair in brackets; target >= {TARGETS['structure_similarity']:g}; "
        "unrelated images score about 0).",
        "* **content loss**: mean (phi(output) - phi(content))^2 / mean phi(content)^2 at "
        f"{CONTENT_LAYER} of the random network (0: the content's features), with the same "
        "number for the other content photos in the output's place (unrelated) and for the "
        "style image; **ratio**: output's / unrelated photos', per pair (worst in brackets; "
        f"bound <= {CONTENT_LOSS_BOUND:g}).",
        "",
        "| method | style | style loss (x lower) | colour | texture | structure | content loss "
        "(unrelated; style image) | ratio | targets |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in table.items():
        missed = [k for k, ok in entry["passed"].items() if not ok]
        verdict = "all met" if not missed else "missed: " + ", ".join(missed)
        rows = [("all", entry["results"], verdict)]
        if len(styles) > 1:
            rows += [(s, r, "") for s, r in entry["per_style"].items()]
        for style, r, note in rows:
            lines.append(
                f"| {name} | {style} | {r['style_loss_reduction']:.1f} "
                f"({r['style_loss_reduction_min']:.1f}) | {_change(r, 'color_distance')} | "
                f"{_change(r, 'texture_distance')} | {r['structure_similarity']:.2f} "
                f"({r['structure_similarity_min']:.2f}) | {r['content_loss']:.3f} "
                f"({r['content_loss_unrelated']:.3f}; {r['content_loss_style']:.3f}) | "
                f"{r['content_loss_ratio']:.2f} ({r['content_loss_ratio_max']:.2f}) | {note} |")
    weights = ", ".join(f"{n}: {e['weights']} ({e['key']})" for n, e in table.items())
    lines += ["", f"Networks (weights hash): {weights}.", "",
              "Rows: photos; columns: the photo, the styles, then each method's outputs.", "",
              "![content x style x method](images/style_grid.png)", ""]
    return "\n".join(lines)


def _change(results: dict[str, float], name: str) -> str:
    """"content's -> output's (ratio)" of distance ``name``."""
    return (f"{results[name + '_content']:.3f} -> {results[name]:.3f} "
            f"({results[name + '_reduction']:.2f}x)")


def main(argv: list[str] | None = None) -> int:
    from mmgen.recipes.style import EVAL_PHOTOS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--photos", nargs="+", default=list(EVAL_PHOTOS))
    parser.add_argument("--styles", nargs="+", default=list(DEFAULT_STYLES))
    parser.add_argument("--size", type=int, default=256, help="side of the square images (px)")
    parser.add_argument("--steps", type=int, default=None, help="gatys: loss evaluations "
                        "(default: StyleRequest's)")
    parser.add_argument("--fast-weights", default=None,
                        help=f"fast model folder or installed name (default {INSTALLED['fast']})")
    parser.add_argument("--adain-weights", default=None,
                        help="AdaIN model folder, installed name or ENCODER,DECODER files "
                             f"(default {INSTALLED['adain']})")
    parser.add_argument("--work", default=str(ROOT / "runs" / "style_results"),
                        help="cache of the stylized images")
    parser.add_argument("--out", default=str(ROOT / "docs"), help="where the docs files go")
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "scripts/style_results.py", *given])
    try:
        methods = resolve_methods(args.methods, {"fast": args.fast_weights,
                                                 "adain": args.adain_weights}, args.steps)
        table, images = run(methods, args.photos, args.styles, args.size, Path(args.work))
    except (ValueError, FileNotFoundError) as e:  # checked before the slow part where possible
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not all(math.isfinite(v) for e in table.values() for v in e["results"].values()):
        print("error: a measure is not finite", file=sys.stderr)
        return 1
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    record = {"command": command, "size": args.size, "photos": args.photos,
              "styles": args.styles, "content_loss_bound": CONTENT_LOSS_BOUND, "methods": table}
    (out / "style_results.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "style_results.md").write_text(markdown(table, args.photos, args.styles, args.size,
                                                   command))
    picture = grid(images, [m.name for m in methods], args.photos, args.styles)
    save_grid(picture, out / "images" / "style_grid.png")
    print(json.dumps({n: e["results"] | {"passed": e["passed"]} for n, e in table.items()},
                     indent=2))
    kib = (out / "images" / "style_grid.png").stat().st_size / 1024
    print(f"wrote {out / 'style_results.json'}, {out / 'style_results.md'} and "
          f"{out / 'images' / 'style_grid.png'} ({picture.width}x{picture.height}, {kib:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
