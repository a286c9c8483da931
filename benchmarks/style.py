"""Seconds per 512 x 512 style transfer, each method through ``stylize`` as a user calls it.

    python benchmarks/style.py                                  # gatys, fast, adain
    python benchmarks/style.py --methods fast adain --threads 1 \\
        --fast-weights runs/style-fast/model --adain-weights runs/style-adain/model

The content is the bundled photo ``astronaut`` resized and centre-cropped to ``--size``
square, the style the procedural ``swirls`` (drawn at ``--size``). Each time is one
``stylize(content, ["swirls"], StyleRequest(method=..., size=...))`` call: loading the
network from disk (gatys: building the random feature network), preparing the images and
running the method. gatys runs once with its default settings (about a minute); fast and
adain once to warm up, then the median of 3 calls is printed. The CPU seconds of the same
calls (all threads) are printed next to them: on a busy machine wall time well above CPU
time / threads means the call waited for a core.

Targets of issue #19 on a 2-core CPU: gatys under 120 s, fast and adain under 1.5 s. fast and
adain default to the installed models ``style-fast`` and ``style-adain``
(``mmgen train --recipe NAME --install``); a method whose model is not installed is reported
as "not installed" unless ``--fast-weights`` / ``--adain-weights`` gives one. Exit code 1 if
a measured method misses its target or fails, else 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

METHODS = ("gatys", "fast", "adain")
TARGET_SECONDS = {"gatys": 120.0, "fast": 1.5, "adain": 1.5}
INSTALLED = {"fast": "style-fast", "adain": "style-adain"}  # default model of each method
PHOTO, STYLE = "astronaut", "swirls"
REPEATS = 3  # fast, adain: timed calls after the warm-up


def time_method(method: str, size: int, weights: str | None) -> tuple[float, float]:
    """(wall, CPU) seconds of one gatys call, or the medians of REPEATS fast / adain calls
    after a warm-up."""
    from mmgen.data.photos import load_photo
    from mmgen.style.transfer import StyleRequest, stylize

    content = load_photo(PHOTO, size)  # (size, size) RGB
    request = StyleRequest(method=method, size=size, weights=weights)

    def call() -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        stylize(content, [STYLE], request, progress=False)
        return time.perf_counter() - start, time.process_time() - cpu

    if method == "gatys":
        return call()
    call()  # warm-up: lazy kernel selection, file cache
    walls, cpus = zip(*(call() for _ in range(REPEATS)), strict=True)
    return statistics.median(walls), statistics.median(cpus)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--size", type=int, default=512, help="side of the square image (px)")
    parser.add_argument("--fast-weights", default=None,
                        help=f"fast model folder or installed name (default {INSTALLED['fast']})")
    parser.add_argument("--adain-weights", default=None,
                        help="AdaIN model folder, installed name or ENCODER,DECODER files "
                             f"(default {INSTALLED['adain']})")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's, i.e. OMP_NUM_THREADS or the "
                             "number of cores)")
    args = parser.parse_args(argv)

    import torch

    from mmgen.hub import list_pretrained

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    given = {"gatys": None, "fast": args.fast_weights, "adain": args.adain_weights}
    print(f"stylize {PHOTO} x {STYLE} at {args.size}x{args.size}, "
          f"{torch.get_num_threads()} torch thread(s)")
    rows, failed = [], False
    for method in args.methods:
        target = TARGET_SECONDS[method]
        weights = given[method]
        if method != "gatys" and weights is None and INSTALLED[method] not in list_pretrained():
            rows.append((method, "-", "-", target, f"not installed ({INSTALLED[method]}; make it "
                         f"with mmgen train --recipe {INSTALLED[method]} --install, or give "
                         f"--{method}-weights)"))
            continue
        try:
            seconds, cpu = time_method(method, args.size, weights)
        except (ValueError, FileNotFoundError) as e:  # stylize's checked errors
            rows.append((method, "-", "-", target, f"error: {e}"))
            failed = True
            continue
        passed = seconds < target
        failed |= not passed
        rows.append((method, f"{seconds:.2f}", f"{cpu:.2f}", target,
                     "pass" if passed else "FAIL"))
        print(f"{method}: {seconds:.2f} s ({cpu:.2f} CPU s)", flush=True)
    print()
    print("| method | seconds | CPU seconds | target | result |")
    print("|---|---|---|---|---|")
    for method, seconds, cpu, target, result in rows:
        print(f"| {method} | {seconds} | {cpu} | < {target:g} s | {result} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
