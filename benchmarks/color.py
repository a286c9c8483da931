"""Seconds per colorization of a 512 x 512 photo, each method through ``colorize`` as a user
calls it (no speed target in issue #20; the numbers say what a user waits for).

    python benchmarks/color.py                       # learned (photo-colorizer), reference
    python benchmarks/color.py --threads 1 --zhang eccv16 siggraph17   # + random-weight
                                                     #   Zhang et al. networks of their size

The photo is the bundled ``chelsea`` resized and centre-cropped to ``--size`` square, made
gray; the reference method's reference is ``astronaut`` at the same size. Each time is one
``colorize(photo, ColorizeRequest(method=...), reference=...)`` call (loading the network
from disk included), the median of 3 after a warm-up, with the CPU seconds of the same calls
next to it (wall well above CPU / threads: the call waited for a core). ``--zhang`` times the
published architectures with random weights saved in a temporary file (the real files cannot
be downloaded here; their speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPEATS = 3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--zhang", nargs="*", default=[], choices=["eccv16", "siggraph17"])
    args = p.parse_args(argv)

    import torch

    from mmgen.color.colorize import ColorizeRequest, colorize
    from mmgen.color.predict import grayscale
    from mmgen.color.zhang import ECCV16Colorizer, SIGGRAPH17Colorizer
    from mmgen.data.images import to_pil, to_tensor
    from mmgen.data.photos import load_photo

    if args.threads:
        torch.set_num_threads(args.threads)
    photo = to_pil(grayscale(to_tensor(load_photo("chelsea", args.size))))
    reference = load_photo("astronaut", args.size)
    tmp = Path(tempfile.mkdtemp())
    cases = {"learned": (ColorizeRequest(), None),
             "reference": (ColorizeRequest(method="reference"), reference)}
    for arch in args.zhang:
        net = ECCV16Colorizer() if arch == "eccv16" else SIGGRAPH17Colorizer()
        torch.save(net.state_dict(), tmp / f"{arch}.pth")
        cases[f"zhang {arch}"] = (ColorizeRequest(method="zhang",
                                                  weights=str(tmp / f"{arch}.pth")), None)
    print(f"colorize, {args.size} x {args.size} px, {torch.get_num_threads()} thread(s)")
    for name, (request, ref) in cases.items():
        times = []
        for i in range(REPEATS + 1):
            start, cpu = time.perf_counter(), time.process_time()
            colorize(photo, request, reference=ref)
            if i:  # the first call warms up
                times.append((time.perf_counter() - start, time.process_time() - cpu))
        wall, cpu = (statistics.median(t) for t in zip(*times, strict=True))
        print(f"{name:<18} {wall:6.2f} s  (CPU {cpu:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
