"""The web app under load and bad input, through gradio_client (as a script would call it):
16 concurrent text-to-image requests, each pixel-identical to the library's image for its
prompt and seed; over-limit, corrupt and bomb inputs answered with a clear message while the
app keeps serving."""

from __future__ import annotations

import numpy as np
import pytest
from app_server import serve_app
from gradio_client import Client, handle_file
from PIL import Image

import mmgen
from mmgen_app import AppConfig, AppLimits
from mmgen_app.loadtest import (
    concurrent_generate,
    generate_args,
    latency_summary,
    library_image,
    rss_mb,
)

STEPS = 8
LIMITS = AppLimits(max_side=128, max_steps=50, max_images=2, max_input_pixels=1_000_000,
                   max_upload_mb=1.0)


@pytest.fixture(scope="module")
def served():
    with serve_app(AppConfig(concurrency=2, limits=LIMITS)) as (app, url):
        yield app, url


@pytest.fixture(scope="module")
def client(served, tmp_path_factory):
    return Client(served[1], verbose=False, download_files=str(tmp_path_factory.mktemp("dl")))


def test_sixteen_concurrent_requests_no_failure_no_mixup(served, tmp_path):
    app, url = served
    results = concurrent_generate(url, n=16, steps=STEPS, download=tmp_path)
    print("\n" + latency_summary(results) + f"; peak memory of this process (server and "
          f"clients) {rss_mb(peak=True):.0f} MB")
    assert [r.error for r in results] == [None] * 16
    assert len({r.prompt for r in results}) == 16
    pipe = mmgen.load("shapes-t2i")  # a separate copy: the library's own answer
    for r in results:
        expected = library_image(pipe, r.prompt, r.seed, STEPS)
        got = Image.open(r.png)
        assert got.info["parameters"] == expected.info["parameters"]
        assert np.array_equal(np.asarray(got), np.asarray(expected)), r.prompt


def _refused(client: Client, *args, api_name: str) -> str:
    with pytest.raises(Exception) as info:
        client.predict(*args, api_name=api_name)
    message = str(info.value)
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    return message


@pytest.mark.parametrize(("change", "expected"), [
    # over the size, steps and batch limits (Gradio checks its sliders' ranges first)
    ({7: 256}, "Value 256 is greater than maximum value 128"),
    ({4: 500}, "Value 500 is greater than maximum value 50"),
    ({9: 3}, "Value 3 is greater than maximum value 2"),
    ({0: "   "}, "Write a prompt first"),                   # an empty prompt
    ({3: "plms"}, "Value: plms is not in the list of choices"),
    ({2: "no-such-model"}, "Value: no-such-model is not in the list of choices"),
    ({6: 2**60}, "seed (-1: random) must be between 0"),
])
def test_bad_generate_requests_get_a_clear_message(client, change, expected):
    args = list(generate_args("a red circle", 1, STEPS))
    for i, value in change.items():
        args[i] = value
    assert expected in _refused(client, *args, api_name="/generate")


def test_bad_uploads_get_a_clear_message_and_the_app_keeps_serving(client, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    bomb = tmp_path / "bomb.png"  # 4 Mpx, a few KB: over the app's 1 Mpx decode limit
    Image.new("L", (2000, 2000), 255).save(bomb, optimize=True)
    assert bomb.stat().st_size < 50_000
    big = tmp_path / "big.png"  # 1.2 MB of noise: over the 1 MB upload limit
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (640, 640, 3), np.uint8)
                    ).save(big)
    rest = generate_args("a red circle", 1, STEPS)
    for path, expected in ((corrupt, "not a readable image"), (bomb, "pixels"),
                           (big, "")):
        message = _refused(client, handle_file(str(path)), 0.5, *rest, api_name="/img2img")
        assert expected in message, message
    message = _refused(client, handle_file(str(bomb)), "learned", 1.0, None, 64,
                       api_name="/colorize")
    assert "pixels" in message
    # still serving
    _, files, seed, _ = client.predict(*rest, api_name="/generate")
    assert seed == 1 and Image.open(files[0]).size == (64, 64)


def test_the_app_changes_no_process_wide_image_setting(served):
    """The pixel limit of uploads is the app's own check, not Pillow's global."""
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's default, untouched by build_app
