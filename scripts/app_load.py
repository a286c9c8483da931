"""Measure the web app as a user's server: start ``mmgen app`` in its own process, send 16
text-to-image requests at once (each checked pixel for pixel against the library's image for
its prompt and seed), then 100 one after another while sampling the server's memory.

    python scripts/app_load.py            # prints what docs/app.md reports

Memory is the server process's resident set (``/proc/PID/status``): its peak (VmHWM) under the
concurrent load, and VmRSS after each sequential request; "flat" means the last 20 requests'
mean is within a few MB of the 20 after warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np
from PIL import Image

import mmgen
from mmgen_app.loadtest import (
    app_process,
    concurrent_generate,
    latency_summary,
    library_image,
    rss_mb,
    sequential_memory,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument("--sequential", type=int, default=100)
    parser.add_argument("--steps", type=int, default=25, help="sampler steps (model default)")
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}/"
    with app_process(args.port) as (proc, _):
        print(f"server pid {proc.pid}: {rss_mb(proc.pid):.0f} MB after start-up")
        results = concurrent_generate(url, args.concurrent, args.steps)
        pipe = mmgen.load("shapes-t2i")
        mixups = 0
        for r in results:
            if r.error:
                continue
            expected = library_image(pipe, r.prompt, r.seed, args.steps)
            mixups += not np.array_equal(np.asarray(Image.open(r.png)), np.asarray(expected))
        failures = sum(r.error is not None for r in results)
        print(f"concurrent: {latency_summary(results)}; failures {failures}, mix-ups {mixups}; "
              f"server peak memory {rss_mb(proc.pid, peak=True):.0f} MB")
        samples = sequential_memory(url, proc.pid, args.sequential, args.steps)
        window = max(1, min(20, len(samples) // 4))
        early = statistics.mean(samples[window:2 * window])
        late = statistics.mean(samples[-window:])
        print("sequential: server RSS (MB) every 10 requests: "
              + ", ".join(f"{m:.0f}" for m in samples[9::10]))
        print(f"sequential: {len(samples)} requests; server RSS after request {window + 1}-"
              f"{2 * window}: {early:.0f} MB, last {window}: {late:.0f} MB (change "
              f"{late - early:+.1f} MB); min {min(samples):.0f}, max {max(samples):.0f} MB")
        if failures or mixups:
            sys.exit(1)


if __name__ == "__main__":
    main()
