"""Colorization results (issue #20): numbers, a table and a picture grid for each method.

    python scripts/color_results.py                       # the bundled photo-colorizer only
    python scripts/color_results.py --l1 runs/photo-colorizer-l1/model \\
        --pix2pix runs/photo-colorizer-pix2pix/model      # with the two other objectives
    python scripts/color_results.py --classes runs/photo-colorizer/model ...  # another run

Every held-out photo (``HELD_OUT_PHOTOS`` of :mod:`mmgen.recipes.color`, never trained on) at
long side ``--size`` (512) is made gray (its L kept, a = b = 0), as is and degraded as a
user's scan may be (``DEGRADATIONS``: grain, blur, JPEG 70), then colorized by each method:

* ``gray``: the gray input itself (the baseline);
* ``classes``: the bundled ``photo-colorizer`` (or ``--classes``), through
  :func:`mmgen.color.colorize.run_network` with its defaults (T = 0.38, sepia guard on), and
  at the temperatures of ``--temperatures`` (the colourfulness control);
* ``l1`` and ``pix2pix``: the other two objectives' models, when given;
* ``reference``: :func:`mmgen.color.reference.colorize_reference` with the photo's reference
  of ``REFERENCES`` (a bundled photo; any photo may serve, training ones included, since the
  method learns nothing).

Measures (:mod:`mmgen.metrics.color`), means over the photos: PSNR and SSIM against the true
colour photo, colourfulness (Hasler & Suesstrunk); for every method on clean inputs, the ab
histogram distance to each photo's reference (the reference method must be nearer it than
the learned model: the issue's acceptance); and the largest |L_out - L_in| over every output
(8-bit PNG pixels; the issue's bound is 100/255 = 0.39 L units).

Writes ``docs/color_results.json``, ``docs/color_results.md`` and
``docs/images/color_grid.png`` (rows: photos; columns: the truth, the gray input, each
method's output, the reference).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = {"chelsea": "astronaut", "coffee": "motorcycle", "grace_hopper": "astronaut"}
TEMPERATURES = (1.0, 0.6, 0.38, 0.2, 0.1)
TILE = 160  # px per picture in the grid (long side)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", default="photo-colorizer",
                   help="the class model (name or folder; default the bundled one)")
    p.add_argument("--l1", help="the L1 regression model folder (recipe photo-colorizer-l1)")
    p.add_argument("--pix2pix", help="the pix2pix model folder (recipe photo-colorizer-pix2pix)")
    p.add_argument("--size", type=int, default=512, help="long side of the photos (px)")
    p.add_argument("--temperatures", type=float, nargs="*", default=list(TEMPERATURES))
    p.add_argument("--out", default=str(ROOT / "docs"), help="folder of the results")
    args = p.parse_args(argv)

    from mmgen.color.colorize import ColorizeRequest, run_network
    from mmgen.color.lab import rgb_to_lab
    from mmgen.color.reference import colorize_reference
    from mmgen.data.photos import load_photo
    from mmgen.hub import load
    from mmgen.metrics.color import ab_histogram_distance, colorfulness, psnr, ssim
    from mmgen.recipes.color import DEGRADATIONS, HELD_OUT_PHOTOS, eval_photo, gray_input

    torch.manual_seed(0)
    start = time.perf_counter()
    models = {"classes": args.classes, "l1": args.l1, "pix2pix": args.pix2pix}
    networks = {k: load(v).float().eval() for k, v in models.items() if v}

    truths = {photo: eval_photo(photo, args.size) for photo in HELD_OUT_PHOTOS}
    references = {photo: eval_photo(REFERENCES[photo], args.size) for photo in HELD_OUT_PHOTOS}

    def run(method: str, gray: torch.Tensor, photo: str, temperature: float | None = None):
        if method == "gray":
            return gray
        if method == "reference":
            return colorize_reference(gray, references[photo])
        request = ColorizeRequest(colorfulness=0.38 / temperature if temperature else 1.0,
                                  sepia_guard=temperature is None)
        return run_network(networks[method], gray, request)[0]

    methods = ["gray", *networks, "reference"]
    rows, outputs, per_photo, l_error = {}, {}, {}, 0.0
    variants = [(m, None) for m in methods] + [("classes", t) for t in args.temperatures]
    for method, temperature in variants:
        name = method if temperature is None else f"classes T={temperature:g}"
        for degradation in DEGRADATIONS if temperature is None else ("clean",):
            scores: dict[str, list[float]] = {}
            for photo in HELD_OUT_PHOTOS:
                truth = truths[photo]
                gray = gray_input(truth, degradation)
                out = (run(method, gray, photo, temperature) * 255).round() / 255  # 8-bit PNG
                l_error = max(l_error, float((rgb_to_lab(out)[:, 0]
                                              - rgb_to_lab(gray)[:, 0]).abs().max()))
                scores.setdefault("psnr", []).append(psnr(out, truth))
                scores.setdefault("ssim", []).append(ssim(out, truth))
                scores.setdefault("colorfulness", []).append(colorfulness(out))
                if degradation == "clean":
                    scores.setdefault("ab_distance_to_reference", []).append(
                        ab_histogram_distance(out, references[photo]))
                    if temperature is None:
                        outputs[method, photo] = out
                        per_photo[method, photo] = {"psnr": round(scores["psnr"][-1], 2),
                                                    "colorfulness": round(
                                                        scores["colorfulness"][-1], 1)}
            rows[name, degradation] = {k: round(statistics.fmean(v), 4)
                                       for k, v in scores.items()}
            print(name, degradation, rows[name, degradation], flush=True)
    truth_scores = {"colorfulness": round(statistics.fmean(map(colorfulness, truths.values())),
                                          4)}

    command = "python scripts/color_results.py " + shlex.join(
        argv if argv is not None else sys.argv[1:])
    table = {"command": command.strip(), "photos": list(HELD_OUT_PHOTOS),
             "references": REFERENCES, "size": args.size, "models": models,
             "max_lightness_error": round(l_error, 4), "truth": truth_scores,
             "rows": [{"method": m, "input": d, **v} for (m, d), v in rows.items()],
             "per_photo": [{"method": m, "photo": p, **v} for (m, p), v in per_photo.items()],
             "seconds": round(time.perf_counter() - start, 1)}
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "color_results.json").write_text(json.dumps(table, indent=2) + "\n")
    (out / "color_results.md").write_text(markdown(table))
    picture = grid(outputs, methods, load_photo)
    picture.save(out / "images" / "color_grid.png", optimize=True)
    print(f"wrote {out / 'color_results.md'}, {out / 'color_results.json'}, "
          f"{out / 'images' / 'color_grid.png'} ({picture.width}x{picture.height})")
    return 0


def grid(outputs: dict[tuple[str, str], torch.Tensor], methods: list[str],
         load_photo) -> Image.Image:
    """Rows: photos; columns: the truth, each method's output (gray first), the reference."""
    from mmgen.data.images import to_pil
    from mmgen.diffusion.images import image_grid
    from mmgen.recipes.color import HELD_OUT_PHOTOS, eval_photo

    def tile(image: Image.Image) -> Image.Image:
        image = image.copy()
        image.thumbnail((TILE, TILE), Image.LANCZOS)
        canvas = Image.new("RGB", (TILE, TILE), "white")
        canvas.paste(image, ((TILE - image.width) // 2, (TILE - image.height) // 2))
        return canvas

    tiles, labels = [], []
    for photo in HELD_OUT_PHOTOS:
        tiles.append(tile(to_pil(eval_photo(photo, TILE * 2))))
        labels.append(f"{photo} (truth)")
        for m in methods:
            tiles.append(tile(to_pil(outputs[m, photo])))
            labels.append(m)
        tiles.append(tile(load_photo(REFERENCES[photo])))
        labels.append(f"reference: {REFERENCES[photo]}")
    return image_grid(tiles, cols=len(methods) + 2, labels=labels, label_width=TILE // 6)


def markdown(table: dict) -> str:
    rows = table["rows"]
    lines = [
        "# Colorization results (issue #20)", "",
        f"Written by `{table['command']}` (see its docstring) in {table['seconds']:.0f} s. "
        f"Held-out photos (never trained on): {', '.join(table['photos'])}, at long side "
        f"{table['size']} px, made gray (their L kept), then colorized; the networks see them "
        "at long side 256. Models: " + ", ".join(f"{k}: `{v}`" for k, v in
                                                 table["models"].items() if v) + ".", "",
        "Measures ([mmgen/metrics/color.py](../mmgen/metrics/color.py)), means over the "
        "photos: PSNR (dB) and SSIM against the true colour photo; colourfulness M of Hasler "
        f"& Suesstrunk (the true photos: {table['truth']['colorfulness']:.1f}; gray: 0); ab "
        "distance: chi-square distance of the output's ab histogram to the reference photo's "
        "(0: same palette, 2: disjoint). References: " + ", ".join(
            f"{k} <- {v}" for k, v in table["references"].items()) + ".", "",
        f"Largest |L_out - L_in| over every output (8-bit PNG): "
        f"{table['max_lightness_error']:.3f} L units (bound: 100/255 = 0.392).", "",
        "## Clean gray inputs", "",
        "| method | PSNR | SSIM | colourfulness | ab distance to reference |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r["input"] == "clean":
            lines.append(f"| {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                         f"{r['colorfulness']:.1f} | {r['ab_distance_to_reference']:.3f} |")
    photos = table["photos"]
    lines += ["", "Per photo (clean inputs), PSNR / colourfulness:", "",
              "| method | " + " | ".join(photos) + " |", "|---|" + "---|" * len(photos)]
    cells = {(r["method"], r["photo"]): r for r in table["per_photo"]}
    for m in dict.fromkeys(r["method"] for r in table["per_photo"]):
        lines.append(f"| {m} | " + " | ".join(
            f"{cells[m, p]['psnr']:.2f} / {cells[m, p]['colorfulness']:.1f}" for p in photos)
            + " |")
    lines += ["", "## Degraded gray inputs (grain: noise sigma 8/255; blur: sigma 1 px; jpeg: "
              "quality 70)", "", "| method | input | PSNR | SSIM | colourfulness |",
              "|---|---|---|---|---|"]
    for r in rows:
        if r["input"] != "clean":
            lines.append(f"| {r['method']} | {r['input']} | {r['psnr']:.2f} | {r['ssim']:.4f} "
                         f"| {r['colorfulness']:.1f} |")
    lines += ["", "Rows: photos; columns: the truth, the gray input, each method's output, the "
              "reference photo.", "", "![photo x method](images/color_grid.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
