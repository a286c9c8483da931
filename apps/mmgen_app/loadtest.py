"""Load and leak tests of a running app through ``gradio_client`` (what ``make test`` and
``scripts/app_load.py`` run; also usable against a deployment)::

    python -m mmgen_app.loadtest http://127.0.0.1:7860 --requests 16

:func:`concurrent_generate` sends text-to-image requests all at once, each with its own prompt
and seed, and returns every result's PNG with its latency; :func:`sequential_memory` sends
requests one after another and samples the server's resident memory after each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgen.data.shapes import all_combinations, caption


@dataclass
class Result:
    """One request: what was asked, what came back (a PNG path, or the error) and its
    latency in seconds."""

    prompt: str
    seed: int
    png: str | None
    error: str | None
    seconds: float


def shapes_prompts(n: int) -> list[str]:
    """``n`` distinct canonical Shapes captions, spread over the combinations."""
    combos = all_combinations()
    return [caption(combos[(i * 97) % len(combos)]) for i in range(n)]


def generate_args(prompt: str, seed: int, steps: int, model: str = "shapes-t2i",
                  size: int = 64, sampler: str = "ddim", guidance: float = 5.0) -> tuple:
    """The ``/generate`` API's positional arguments (docs/app.md)."""
    return (prompt, "", model, sampler, steps, guidance, seed, size, size, 1)


def library_image(pipe, prompt: str, seed: int, steps: int) -> Any:
    """What the library gives for the ``/generate`` request of :func:`generate_args` (the
    image an app's answer must equal pixel for pixel)."""
    prompt, _, _, sampler, steps, guidance, seed, w, h, _ = generate_args(prompt, seed, steps)
    return pipe(prompt, steps=steps, guidance=guidance, sampler=sampler, seed=seed, width=w,
                height=h, progress=False)[0]


@contextlib.contextmanager
def app_process(port: int, *args: str, timeout: float = 180) -> Iterator[tuple[Any, dict]]:
    """``mmgen app --port PORT ARGS`` in its own process, as a user starts it; yields
    (the process, the served app's Gradio config) once it answers, and stops it after."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a full pipe would block the server
    proc = subprocess.Popen([sys.executable, "-m", "mmgen.cli", "app", "--port", str(port),
                             *args], env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, config = time.time() + timeout, None
        while config is None:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"mmgen app exited with code {proc.returncode}: "
                                   f"{log.read()[-2000:]}")
            if time.time() > deadline:
                raise TimeoutError(f"mmgen app did not answer within {timeout:.0f} s")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as r:
                    config = json.load(r)
            except OSError:
                time.sleep(0.5)
        yield proc, config
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def concurrent_generate(url: str, n: int = 16, steps: int = 10, model: str = "shapes-t2i",
                        download: str | Path | None = None) -> list[Result]:
    """``n`` ``/generate`` requests sent at once (prompt i of :func:`shapes_prompts`, seed
    1000 + i), each by its own client thread."""
    from gradio_client import Client

    download = str(download or tempfile.mkdtemp(prefix="mmgen-load-"))
    client = Client(url, verbose=False, download_files=download, max_workers=n)
    prompts = shapes_prompts(n)

    def one(i: int) -> Result:
        start = time.perf_counter()
        try:
            _, files, seed, _ = client.predict(*generate_args(prompts[i], 1000 + i, steps, model),
                                               api_name="/generate")
            return Result(prompts[i], 1000 + i, files[0], None, time.perf_counter() - start)
        except Exception as e:  # the failure is the result
            return Result(prompts[i], 1000 + i, None, f"{type(e).__name__}: {e}",
                          time.perf_counter() - start)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def rss_mb(pid: int | str = "self", peak: bool = False) -> float:
    """Resident memory of process ``pid`` in MB (its peak with ``peak``), from /proc."""
    key = "VmHWM:" if peak else "VmRSS:"
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    raise OSError(f"/proc/{pid}/status has no {key}")


def sequential_memory(url: str, pid: int | str, n: int = 100, steps: int = 10,
                      model: str = "shapes-t2i") -> list[float]:
    """Server RSS (MB) after each of ``n`` sequential ``/generate`` requests."""
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=tempfile.mkdtemp(prefix="mmgen-mem-"))
    prompts = shapes_prompts(n)
    samples = []
    for i in range(n):
        client.predict(*generate_args(prompts[i], i, steps, model), api_name="/generate")
        samples.append(rss_mb(pid))
    return samples


def latency_summary(results: list[Result]) -> str:
    """p50 / p95 / max latency of the requests, one line."""
    times = sorted(r.seconds for r in results)
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return (f"{len(results)} requests, {sum(r.error is None for r in results)} ok: latency "
            f"p50 {statistics.median(times):.2f} s, p95 {p95:.2f} s, max {times[-1]:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    results = concurrent_generate(args.url, args.requests, args.steps)
    for r in results:
        if r.error:
            print(f"FAILED {r.prompt!r} seed {r.seed}: {r.error}")
    print(latency_summary(results))


if __name__ == "__main__":
    main()
