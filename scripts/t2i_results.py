"""Measure a Shapes text-to-image pipeline and write docs/results.md (+ results JSON, grid).

For each sampler setting (DDIM 10/25/50, DPM-Solver++ 10/20, Euler 25, DDPM 1000)
and a guidance sweep (DDIM 25): Shapes adherence (all five attributes right, and per
attribute) on ``--n`` canonical prompts of ``test`` and of ``test_compositional`` (held-out
colour-shape pairs), Shapes FID against the real renders of the same prompts, and sampling
seconds per image on this machine. The DDIM 25 / DDPM 1000 Shapes FID ratio is checked
against the DDIM paper's claim (within 10 %), on ``--claim-n`` prompts of the ``--ddpm-splits``
(1000 by default, more than ``--n``: a ratio of two FIDs this small moves with the prompt
sample; the page also gives its bootstrap interval and the ratio on subsets of the prompts).

    python scripts/t2i_results.py --workers 2          # the bundled shapes-t2i, n=500
    python scripts/t2i_results.py --model runs/shapes-t2i/model --n 100 --quick

Work is saved at two levels so that a long run (DDPM 1000 steps costs hours on a CPU) can be
stopped and started again, in another session too:

* every batch of generated images goes to ``--work`` (uint8 arrays, written atomically);
* every finished row is appended to ``--cache`` (JSON lines keyed by the model's hash, ``n``
  and the setting; committed beside the docs, so a later run only measures what is new).

The batches of a setting do not depend on ``n`` (image i of a split always uses prompt i and
seed i), so a row on more prompts only generates the images it adds.

``--workers K`` generates the missing batches in K processes of one thread each (on the
2-core development machine two such workers made 1.6x the images per second of one
2-thread process); the rows are then measured from the saved batches. Images do not depend
on how they were split up: image i of a split always uses seed i.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [("ddim", 10), ("ddim", 25), ("ddim", 50), ("dpm++2m", 10), ("dpm++2m", 20),
            ("euler", 25), ("ddpm", 1000)]
GUIDANCE_SWEEP = [1.0, 2.0, 3.0, 5.0, 7.5]
SPLITS = ("test", "test_compositional")
FID_CLAIM = 1.10  # DDIM 25 steps' Shapes FID at most 10 % above DDPM 1000 steps'


def measure(images, prompts, real_features, features, clip=None) -> dict:
    """Adherence of generated ``images`` to ``prompts``, and their Shapes FID from the
    classifier features of the real renders and of the images (:func:`shapes_features`);
    with a ``clip`` model also its reading of them (:func:`clip_reading`)."""
    from mmgen.metrics.fid import fid
    from mmgen.metrics.shapes import shapes_adherence

    adherence = shapes_adherence(images, prompts, progress=False)
    row = {"adherence": round(adherence.all.value, 4),
           **{k: round(v, 4) for k, v in adherence.per_attribute.items()},
           "shapes_fid": round(fid(real_features, features).value, 3)}
    return row | (clip_reading(images, prompts, clip) if clip is not None else {})


def clip_reading(images, prompts, clip) -> dict:
    """A second adherence measure, by a CLIP model rather than the classifier:
    ``clip_score`` (100 * cos(image, prompt), mean) and ``clip_top1``, how often the prompt is
    the best of all 1,296 canonical captions for its image; ``clip_hash`` names the model."""
    from mmgen.metrics.clip_robustness import caption_retrieval
    from mmgen.metrics.clip_score import ScoringCLIP, clip_score
    from mmgen.pipeline import weights_hash

    score = clip_score(images, prompts, ScoringCLIP(clip), progress=False)
    return {"clip_score": round(score.value, 3),
            "clip_top1": round(caption_retrieval(clip, images, prompts), 4),
            "clip_hash": weights_hash(clip)}


@functools.cache
def _judge():
    from mmgen.metrics.shapes import CLASSIFIER, ShapesFeatures

    return ShapesFeatures(CLASSIFIER)


def shapes_features(images) -> torch.Tensor:
    """(N, D) features of images in [0, 1] in the space of Shapes FID (``shapes_fid``)."""
    from mmgen.metrics.features import extract_features

    return extract_features(images, _judge(), 100, progress=False)


class Batches:
    """The first ``n`` generated images of one setting, saved batch by batch under ``root``.

    ``key`` is (sampler, steps, guidance, split, n); rows that differ only in ``n`` share
    their folder, and the larger row reuses the smaller one's batches."""

    def __init__(self, root: Path, key: tuple, batch_size: int):
        sampler, steps, guidance, split, n = key
        self.key, self.n, self.batch_size = key, n, batch_size
        self.dir = root / f"{sampler}-{steps}-g{guidance:g}-{split}"
        self.starts = list(range(0, n, batch_size))
        self._loaded = self._features = None

    def path(self, start: int) -> Path:
        return self.dir / f"{start:06d}-{min(start + self.batch_size, self.n):06d}.npz"

    def missing(self) -> list[int]:
        return [s for s in self.starts if not self.path(s).is_file()]

    def generate(self, pipe, prompts: list[str], shard: tuple[int, int] = (0, 1)) -> None:
        from mmgen.checkpoint import atomic_path

        sampler, steps, guidance, split, _ = self.key
        index, count = shard
        todo = [s for i, s in enumerate(self.starts) if i % count == index
                and not self.path(s).is_file()]
        for start in todo:
            stop = min(start + self.batch_size, self.n)
            began = time.perf_counter()
            images = pipe(prompts[start:stop], sampler=sampler, steps=steps, guidance=guidance,
                          seed=start, batch_size=self.batch_size, progress=False)
            seconds = time.perf_counter() - began
            with atomic_path(self.path(start)) as tmp:
                with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz"
                    np.savez(f, images=np.stack([np.asarray(im) for im in images]),
                             seconds=seconds, threads=torch.get_num_threads())
            print(f"[{os.getpid()}] {sampler} {steps} g={guidance:g} {split}: images "
                  f"{start}-{stop} of {self.n} in {seconds:.0f} s", file=sys.stderr, flush=True)

    def load(self):
        """(PIL images, seconds per image, threads per process) of the complete row."""
        from PIL import Image

        if self._loaded is not None:
            return self._loaded
        images, seconds, threads = [], 0.0, set()
        for start in self.starts:
            with np.load(self.path(start)) as f:
                images += [Image.fromarray(a) for a in f["images"]]
                seconds += float(f["seconds"])
                threads.add(int(f["threads"]))
        self._loaded = images, seconds / self.n, max(threads)
        return self._loaded

    def features(self) -> torch.Tensor:
        """(n, D) Shapes-classifier features of the complete row, extracted once."""
        if self._features is None:
            self._features = shapes_features(self.load()[0])
        return self._features


def plan(default_g: float, quick: bool, ddpm_splits: tuple[str, ...], n: int, claim_n: int
         ) -> tuple[list, list, list]:
    """(sampler rows, guidance-sweep rows, FID-claim rows) as
    (sampler, steps, guidance, split, n) keys."""
    samplers = [(s, k, default_g, split, n) for s, k in SETTINGS for split in SPLITS
                if not (s == "ddpm" and (quick or split not in ddpm_splits))]
    sweep = [("ddim", 25, g, split, n) for g in GUIDANCE_SWEEP for split in SPLITS]
    ddpm_steps = max((k for s, k in SETTINGS if s == "ddpm"), default=None)  # the full chain
    claim = [] if quick or ddpm_steps is None else [
        key for split in ddpm_splits for key in (("ddim", 25, default_g, split, claim_n),
                                                 ("ddpm", ddpm_steps, default_g, split, claim_n))]
    return samplers, sweep, claim


def measurement_order(keys: list, default_g: float) -> list:
    """Unique keys, the DDIM 25 / DDPM 1000 pairs first (the FID claim), then the rest."""
    def rank(key):
        return (0 if key[:3] == ("ddim", 25, default_g) else 1 if key[0] == "ddpm" else 2,
                -key[4])
    return sorted(dict.fromkeys(keys), key=rank)


def parse_shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise argparse.ArgumentTypeError(f"expected I/K with 0 <= I < K, got {text!r}")
    return int(index), int(count)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes-t2i")
    parser.add_argument("--n", type=int, default=500, help="prompts per split")
    parser.add_argument("--claim-n", type=int, default=1000,
                        help="prompts for the DDIM 25 / DDPM 1000 FID claim (on --ddpm-splits)")
    parser.add_argument("--batch-size", type=int, default=50,
                        help="images per saved batch (and per U-Net call)")
    parser.add_argument("--quick", action="store_true", help="skip DDPM 1000 steps")
    parser.add_argument("--ddpm-splits", default="test",
                        help="comma-separated splits that get the DDPM 1000 row (the slowest: "
                             "~100 min per 500 prompts on 2 CPU cores)")
    parser.add_argument("--workers", type=int, default=1,
                        help="generate in this many single-thread processes")
    parser.add_argument("--shard", type=parse_shard, default=None,
                        help="(used by --workers) generate only batches i with i %% K == I")
    parser.add_argument("--clip", default="shapes-clip",
                        help="the CLIP model of the CLIP-score columns (bundled name or folder)")
    parser.add_argument("--keep-rows", default="ddpm",
                        help="comma-separated samplers whose cached rows are kept when they "
                             "lack this CLIP model's columns, rather than generated again "
                             "(DDPM 1000 takes hours); their CLIP cells read 'not measured'")
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--cache", default=str(ROOT / "docs" / "results_rows.jsonl"),
                        help="rows measured so far (reused when the model and n match)")
    parser.add_argument("--work", default=str(ROOT / "runs" / "t2i_results"),
                        help="folder for the generated batches")
    args = parser.parse_args(argv)
    for name, low in (("n", 2), ("claim_n", 2), ("batch_size", 1), ("workers", 1)):
        if getattr(args, name) < low:
            parser.error(f"--{name.replace('_', '-')} must be at least {low}")
    ddpm_splits = tuple(s for s in args.ddpm_splits.split(",") if s)
    if unknown := set(ddpm_splits) - set(SPLITS):
        parser.error(f"unknown split(s) {sorted(unknown)}; choose from {list(SPLITS)}")
    if args.shard is not None:
        torch.set_num_threads(1)

    import mmgen
    from mmgen.data import shapes
    from mmgen.diffusion.images import image_grid
    from mmgen.pipeline import weights_hash

    pipe = mmgen.load(args.model)
    clip = mmgen.load(args.clip).float().eval()
    clip_hash = weights_hash(clip)
    keep_rows = set(args.keep_rows.split(",")) - {""}
    default_g = pipe.config.guidance
    samplers, sweep, claim_rows = plan(default_g, args.quick, ddpm_splits, args.n,
                                       args.claim_n)
    grid_rows = [("ddim", 25, default_g, s, args.n) for s in SPLITS]
    order = measurement_order(claim_rows + grid_rows + samplers + sweep, default_g)
    data = {}  # split -> (prompts, real renders in [0, 1]) of the longest row
    for split in SPLITS:
        length = max(key[4] for key in order if key[3] == split)
        batch = shapes.ShapesDataset(split, length=length, seed=1).as_tensors()
        data[split] = (list(batch["caption"]), (batch["image"] + 1) / 2)
    real_features = {}  # split -> features of data[split][1], extracted when first needed

    def real(split: str, n: int) -> torch.Tensor:
        if split not in real_features:
            real_features[split] = shapes_features(data[split][1])
        return real_features[split][:n]

    cache = Path(args.cache)
    done = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            row = json.loads(line)
            if row.pop("model_hash") == pipe.model_hash:
                n = row.pop("n")
                key = (row["sampler"], row["steps"], row["guidance"], row["split"], n)
                # a sampler row needs this CLIP model's reading (unless kept as it is)
                if (row.get("clip_hash") == clip_hash or key not in samplers
                        or key[0] in keep_rows):
                    done[key] = row
                else:
                    done.pop(key, None)
    work = Path(args.work) / pipe.model_hash
    batches = {key: Batches(work, key, args.batch_size) for key in order}
    todo = [key for key in order if key not in done]

    if args.shard is not None:  # a worker: generate its share of the batches, then stop
        for key in todo:
            batches[key].generate(pipe, data[key[3]][0], args.shard)
        return 0
    workers = []
    if args.workers > 1 and any(batches[key].missing() for key in todo):
        torch.set_num_threads(1)  # the workers have the cores; this process only measures
        base = [sys.executable, str(Path(__file__).resolve()), "--model", args.model,
                "--n", str(args.n), "--claim-n", str(args.claim_n),
                "--batch-size", str(args.batch_size),
                "--ddpm-splits", args.ddpm_splits, "--cache", args.cache, "--work", args.work,
                "--clip", args.clip, "--keep-rows", args.keep_rows]
        base += ["--quick"] if args.quick else []
        workers = [subprocess.Popen(base + ["--shard", f"{i}/{args.workers}"])
                   for i in range(args.workers)]

    for key in order:  # each row is measured as soon as its batches are there
        if key not in done:
            while batches[key].missing() and any(w.poll() is None for w in workers):
                time.sleep(2)
            if any(w.poll() for w in workers):
                print("error: a generation worker failed (see above)", file=sys.stderr)
                for w in workers:
                    w.kill()
                return 1
            n = key[4]
            prompts = data[key[3]][0][:n]
            batches[key].generate(pipe, prompts)  # whatever the workers have not made
            images, seconds, threads = batches[key].load()
            done[key] = {"sampler": key[0], "steps": key[1], "guidance": key[2],
                         "split": key[3], **measure(images, prompts, real(key[3], n),
                                                    batches[key].features(), clip),
                         "seconds_per_image": round(seconds, 4), "threads": threads}
            cache.parent.mkdir(parents=True, exist_ok=True)
            with cache.open("a") as f:  # one complete line per measured row
                f.write(json.dumps({"model_hash": pipe.model_hash, "n": n,
                                    **done[key]}) + "\n")
        print(json.dumps({**done[key], "n": key[4]}), file=sys.stderr, flush=True)

    grid_images: list = []
    for key in grid_rows:  # the picture grid: the first 8 prompts of each split, DDIM 25
        images, _, _ = batches[key].load()
        grid_images += list(zip(images[:8], data[key[3]][0][:min(8, key[4])], strict=True))

    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    record = {"model": args.model, "model_hash": pipe.model_hash, "clip": args.clip,
              "n": args.n,
              "claim_n": args.claim_n, "batch_size": args.batch_size,
              "default_guidance": default_g, "samplers": [done[k] for k in samplers],
              "guidance_sweep": [done[k] for k in sweep],
              "fid_claim": fid_claim(done, claim_rows, batches, real)}
    (out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    grid = image_grid([im for im, _ in grid_images], cols=8, scale=2,
                      labels=[p for _, p in grid_images], label_width=18)
    grid.save(out / "images" / "t2i_grid.png")
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when imported (tests)
    from docs_sections import sections

    doc = out / "results.md"  # keeps the sections other scripts own (scripts/dit_study.py's)
    kept = sections(doc.read_text()) if doc.is_file() else ""
    doc.write_text(render(record) + ("\n" + kept if kept else ""))
    print(f"wrote {out / 'results.md'}")
    return 0


def fid_claim(done: dict, claim_rows: list, batches: dict | None = None,
              real=None, resamples: int = 200) -> list[dict]:
    """Per (DDIM 25, full-chain DDPM) pair of ``claim_rows``: both Shapes FIDs and their ratio.

    Where the generated batches of both rows are at hand (and ``real(split, n)`` gives the
    real renders' features), also how far the ratio could move
    with other prompts: a 90 % paired-bootstrap interval (the same resampled prompts for the
    real renders and both samplers; ``resamples`` draws, seed 0) and the ratio on the first
    quarter, half and three quarters of the prompts."""
    claims = []
    for keys in zip(claim_rows[::2], claim_rows[1::2], strict=True):
        split, n = keys[0][3], keys[0][4]
        ddim, ddpm = (done[k] for k in keys)
        ratio = ddim["shapes_fid"] / ddpm["shapes_fid"]
        claim = {"split": split, "n": n, "ddim_fid": ddim["shapes_fid"],
                 "ddpm_steps": keys[1][1], "ddpm_fid": ddpm["shapes_fid"],
                 "ratio": round(ratio, 3), "holds": ratio <= FID_CLAIM,
                 "ddim_adherence": ddim["adherence"], "ddpm_adherence": ddpm["adherence"],
                 "interval": None,
                 "prefix_ratios": {}}
        if batches and real and not any(batches[k].missing() for k in keys):
            claim.update(ratio_spread(real(split, n), *(batches[k].features() for k in keys),
                                      resamples))
        claims.append(claim)
    return claims


def ratio_spread(real, a, b, resamples: int) -> dict:
    """From the Shapes-classifier features of the real renders and of the DDIM (``a``) and
    DDPM (``b``) images: ``interval``, the 90 % paired-bootstrap interval of
    FID(ddim) / FID(ddpm), and ``prefix_ratios``, the ratio on the first n/4, n/2 and 3n/4
    prompts."""
    from mmgen.metrics.fid import fid

    prefixes = sorted({len(real) * q // 4 for q in (1, 2, 3)} - {0, 1})
    prefix_ratios = {}
    for k in prefixes:
        denominator = fid(real[:k], b[:k]).value
        if denominator > 0:  # (only tiny test runs have identical images)
            prefix_ratios[k] = round(fid(real[:k], a[:k]).value / denominator, 3)
    return {"interval": bootstrap_ratio(real, a, b, resamples), "prefix_ratios": prefix_ratios}


def bootstrap_ratio(real, a, b, resamples: int) -> list[float] | None:
    """90 % interval of FID(real, a) / FID(real, b) over paired resamples of the features."""
    from mmgen.metrics.fid import fid

    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(resamples):
        i = torch.from_numpy(rng.integers(0, len(real), len(real)))
        denominator = fid(real[i], b[i]).value
        if denominator > 0:  # a draw of one repeated image has no spread (tiny n only)
            ratios.append(fid(real[i], a[i]).value / denominator)
    return [round(float(q), 3) for q in np.percentile(ratios, [5, 95])] if ratios else None


def render(record: dict) -> str:
    def table(rows, first, clip=False):
        extra = ["CLIP score", "CLIP top-1"] if clip else []
        head = ("| " + " | ".join([first, "split", "all 5 right", "color", "shape", "size",
                                   "position", "background", "Shapes FID", *extra,
                                   "s / image", "threads"]) + " |\n"
                + "|---" * (11 + len(extra)) + "|\n")

        def clip_cells(r):
            if not clip:
                return ""
            if "clip_score" not in r:
                return "not measured | not measured | "
            return f"{r['clip_score']:.2f} | {r['clip_top1']:.1%} | "

        body = "".join(
            f"| {r[first] if first != 'sampler' else r['sampler'] + ' ' + str(r['steps'])} | "
            f"{r['split']} | {r['adherence']:.1%} | {r['color']:.1%} | {r['shape']:.1%} | "
            f"{r['size']:.1%} | {r['position']:.1%} | {r['background']:.1%} | "
            f"{r['shapes_fid']:.2f} | {clip_cells(r)}{r['seconds_per_image']:.3f} | "
            f"{r['threads']} |\n"
            for r in rows)
        return head + body

    claim = "".join(
        f"- `{c['split']}`, {c['n']} prompts: DDIM 25 {c['ddim_fid']:.2f} / "
        f"DDPM {c['ddpm_steps']} "
        f"{c['ddpm_fid']:.2f} = "
        f"{c['ratio']:.3f} ({'holds' if c['holds'] else 'does not hold'}: at most "
        f"{FID_CLAIM:.2f}; all 5 right {c['ddim_adherence']:.1%} / "
        f"{c['ddpm_adherence']:.1%})"
        + (f"; 90 % paired-bootstrap interval of the ratio {c['interval'][0]:.2f} - "
           f"{c['interval'][1]:.2f}" if c["interval"] else "")
        + ("; the ratio on the first " + ", ".join(
            f"{k} prompts: {r:.3f}" for k, r in c["prefix_ratios"].items())
           if c["prefix_ratios"] else "") + "\n"
        for c in record["fid_claim"]) or "- not measured (no DDPM row)\n"
    ddpm = sorted({r["split"] for r in record["samplers"] if r["sampler"] == "ddpm"})
    return (
        "# Shapes text-to-image results\n\n"
        f"Produced by `python scripts/t2i_results.py --model {record['model']} --n "
        f"{record['n']} --workers 2` (model hash `{record['model_hash']}`), on the 2-core CPU "
        "of the development machine. Prompts: the canonical captions of the first "
        f"{record['n']} items of `test` and of `test_compositional` (colour-shape pairs never "
        "seen in training); image i of a split uses seed i. *All 5 right*: the bundled "
        "`shapes-classifier` reads every attribute of the image as the prompt says. "
        "*Shapes FID*: Fréchet distance between the classifier features of the generated "
        "images and of the real renders of the same prompts (see docs/metrics.md; with "
        f"{record['n']} images it is biased upwards, so compare rows, not other papers). "
        "*s / image*: sampling time per image in one process using *threads* threads, batches "
        f"of {record['batch_size']}, classifier-free guidance included (two such processes ran "
        "side by side, one per core; other work on the machine meanwhile slows a row down, so "
        "compare timings loosely). "
        + (f"DDPM 1000 steps is measured on {', '.join(f'`{s}`' for s in ddpm)} only: it costs "
           "~85 min per 500 prompts with two workers here.\n\n" if ddpm else "\n\n")
        + f"## Samplers (guidance {record['default_guidance']})\n\n"
        + "*CLIP score* (100 x the cosine of image and prompt, mean) and *CLIP top-1* (the "
        "prompt is the best of all 1,296 canonical captions for its image) are a second "
        f"adherence measure, read by `{record['clip']}` rather than the classifier "
        "(docs/clip.md measures how well it reads generated images: where CLIP top-1 falls "
        "far below *all 5 right*, check there whether the CLIP model misreads them). Rows "
        "measured before "
        "these columns whose images were not kept (`--keep-rows`) say *not measured*.\n\n"
        + table(record["samplers"], "sampler", clip=True)
        + "\n## DDIM 25 steps against DDPM 1000 steps (Shapes FID)\n\n"
        "The DDIM paper's claim, checked on this model: 25 deterministic DDIM steps come "
        "within 10 % of the FID of the full 1000-step ancestral DDPM chain. It is measured "
        f"on the first {record['claim_n']} prompts of the splits with a DDPM row (the "
        f"tables' {record['n']} images of both rows are among them): a ratio of two FIDs "
        "this small moves with the prompt sample, as the interval and the prefix ratios "
        "show.\n\n" + claim
        + "\n## Guidance sweep (DDIM, 25 steps)\n\n" + table(record["guidance_sweep"], "guidance")
        + "\n## Samples (DDIM 25)\n\n![grid](images/t2i_grid.png)\n")


if __name__ == "__main__":
    sys.exit(main())
