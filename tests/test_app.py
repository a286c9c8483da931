"""The web app's handlers, called as Gradio calls them (no browser): img2img, inpainting,
reuse parameters, per-user Cancel, CLIP, limits; and ``mmgen app``'s own errors."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
import torch
from cli_runner import run
from PIL import Image

from mmgen.data.shapes import render
from mmgen.device import native_cpu_convolutions
from mmgen_app import AppConfig, AppLimits, build_app

PROMPT = "a large red circle in the center on a white background"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("search")
    for name, attrs in (("red_circle", dict(color="red", shape="circle")),
                        ("blue_square", dict(color="blue", shape="square")),
                        ("green_triangle", dict(color="green", shape="triangle"))):
        render({"size": "large", "position": "center", "background": "white", **attrs}
               ).save(folder / f"{name}.png")
    return build_app(AppConfig(search_folder=str(folder),
                               limits=AppLimits(max_images=2, max_steps=30)))


def args(steps: int = 4, seed: int = 3, n: int = 1) -> tuple:
    return (PROMPT, "", "shapes-t2i", "ddim", steps, 5.0, seed, 64, 64, n)


def session(name: str) -> SimpleNamespace:
    return SimpleNamespace(session_hash=name)


def test_generate_random_seed_is_shown_and_reused(app):
    files, downloads, seed, text = app.t2i.generate(*args(seed=-1))
    assert files == downloads and 0 <= seed < 2**31 and f"Seed: {seed}" in text
    values = app.t2i.reuse(files[0])  # the dropped PNG fills the form
    assert values == (PROMPT, "", "shapes-t2i", "ddim", 4, 5.0, seed, 64, 64)
    again = app.t2i.generate(*values, 1)[0][0]
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(files[0])))


def test_img2img_and_inpaint(app, tmp_path):
    source = tmp_path / "in.png"
    render({"color": "blue", "shape": "square", "size": "large", "position": "center",
            "background": "white"}, size=96).save(source)  # resized to the form's 64x64
    files, _, _, text = app.t2i.img2img(str(source), 0.5, *args())
    assert Image.open(files[0]).size == (64, 64) and "Denoising strength: 0.5" in text
    layer = Image.new("RGBA", (96, 96), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (0, 0, 48, 96))  # the left half is painted over
    editor = {"background": Image.open(source), "layers": [layer], "composite": None}
    out = np.asarray(Image.open(app.t2i.inpaint(editor, 1.0, *args())[0][0]), np.float32)
    kept = np.asarray(Image.open(source).resize((64, 64), Image.Resampling.LANCZOS), np.float32)
    # the unpainted right half is kept (up to the VAE's round trip), the left repainted
    right = np.abs(out[:, 40:] - kept[:, 40:]).mean()
    assert right < 12, right
    empty = {"background": Image.open(source), "layers": [], "composite": None}
    with pytest.raises(ValueError, match="mask is empty"):
        app.t2i.inpaint(empty, 1.0, *args())


def test_cancel_stops_only_that_users_job(app):
    started, results = threading.Event(), {}

    class Progress:  # what gr.Progress receives; the first call means "running"
        def __call__(self, *a, **k):
            started.set()

    def run(user: str) -> None:
        try:
            results[user] = app.t2i.generate(*args(steps=30), request=session(user),
                                             progress=Progress())
        except Exception as e:
            results[user] = e

    threads = [threading.Thread(target=run, args=(u,)) for u in ("alice", "bob")]
    for t in threads:
        t.start()
    assert started.wait(60)
    app.jobs.cancel(session("alice"))
    for t in threads:
        t.join(120)
    assert isinstance(results["alice"], Exception) and "cancel" in str(results["alice"]).lower()
    assert isinstance(results["bob"], tuple) and len(results["bob"][0]) == 1
    assert len(app.jobs) == 0  # no flag left behind


def test_cancel_stops_a_style_transfer_between_evaluations(app):
    from mmgen.diffusion.denoise import GenerationCancelled

    calls = []

    class Progress:  # the user presses Cancel as soon as the bar moves
        def __call__(self, fraction, desc=""):
            calls.append(fraction)
            app.jobs.cancel(session("carol"))

    with pytest.raises(GenerationCancelled):
        app.style.style(None, "astronaut", None, "swirls", "gatys", 1.0, False, 64, 200,
                        request=session("carol"), progress=Progress())
    assert len(calls) == 1 and calls[0] < 0.05


def test_the_handlers_refuse_with_one_line(app):
    wrapped = app.blocks.fns  # what Gradio calls: the user_errors wrappers
    assert {fn.api_name for fn in wrapped.values() if fn.api_name} >= {
        "generate", "img2img", "inpaint", "style", "colorize", "zero_shot", "search"}
    generate = next(fn.fn for fn in wrapped.values() if fn.api_name == "generate")
    for bad, message in (((" ",) + args()[1:], "Write a prompt first"),
                         (args()[:4] + (31,) + args()[5:], "steps must be between 1 and 30"),
                         (args()[:9] + (3,), "number of images must be between 1 and 2"),
                         (args()[:6] + (1.5,) + args()[7:], "seed (-1: random) must be a whole")):
        with pytest.raises(gr.Error, match=message.replace("(", r"\(").replace(")", r"\)")):
            generate(*bad)
    style = next(fn.fn for fn in wrapped.values() if fn.api_name == "style")
    with pytest.raises(gr.Error, match="not available here"):
        style(None, "astronaut", None, "swirls", "nope", 1.0, False, 64, 10)
    colorize = next(fn.fn for fn in wrapped.values() if fn.api_name == "colorize")
    with pytest.raises(gr.Error, match="upload one"):
        colorize(__file__, "reference", 1.0, None, 64)


def test_clip_zero_shot_and_search(app, tmp_path):
    image = tmp_path / "shape.png"
    render({"color": "blue", "shape": "square", "size": "large", "position": "center",
            "background": "white"}).save(image)
    probs = app.clip.zero_shot(str(image), "red circle, blue square, green triangle", "{}")
    assert max(probs, key=probs.get) == "blue square" and abs(sum(probs.values()) - 1) < 1e-5
    with pytest.raises(ValueError, match="at least two labels"):
        app.clip.zero_shot(str(image), "blue square", "{}")
    hits = app.clip.search("green triangle", 2)
    assert hits[0][0].endswith("green_triangle.png") and len(hits) == 2


def test_native_convolutions_switch_is_safe_across_threads():
    """Two users' jobs overlap: oneDNN stays off until the last one leaves."""
    before = torch.backends.mkldnn.enabled
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a() -> None:
        with native_cpu_convolutions():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b() -> None:
        a_in.wait(10)
        with native_cpu_convolutions():
            b_in.set()
            a_out.wait(10)
            seen["b after a left"] = torch.backends.mkldnn.enabled

    threads = [threading.Thread(target=f) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == {"b after a left": False}
    assert torch.backends.mkldnn.enabled == before


def test_cli_app_refuses_bad_setup(capsys, tmp_path):
    code, _, err = run(capsys, "app --port 0")
    assert code == 2 and "--port" in err and "Traceback" not in err
    for argv, message in ((f"--search-folder {tmp_path / 'missing'}", "no such folder"),
                          (f"--model {tmp_path / 'missing'}", "missing")):
        code, out, err = run(capsys, f"app {argv}")
        assert code == 2 and err.startswith("mmgen app: error: ") and err.count("\n") == 1
        assert message in err and out == ""


def test_mmgen_app_command_serves_the_four_tabs(tmp_path):
    """The installed command, in its own process, as a user starts it."""
    from browser import free_port

    from mmgen_app.loadtest import app_process

    with app_process(free_port(), "--search-folder", str(tmp_path)) as (_, config):
        labels = {c["props"].get("label") for c in config["components"]
                  if c.get("type") == "tabitem"}
        assert {"Text to image", "Style transfer", "Colorize", "CLIP"} <= labels
        apis = {d.get("api_name") for d in config["dependencies"]}
        assert {"generate", "img2img", "inpaint", "style", "colorize", "zero_shot",
                "search"} <= apis

def test_installed_fast_and_adain_networks_are_offered_and_loaded_once(monkeypatch, tmp_path):
    import mmgen

    monkeypatch.setenv("MMGEN_HOME", str(tmp_path))
    fast = mmgen.create_model("style/transformer-net-small", styles=("swirls", "waves"))
    fast.save_pretrained(tmp_path / "models" / "style-fast")
    mmgen.create_model("style/adain-small").save_pretrained(tmp_path / "models" / "style-adain")
    import mmgen_app.style

    loads = []
    real = mmgen_app.style.load_style_network
    monkeypatch.setattr(mmgen_app.style, "load_style_network",
                        lambda method, source: loads.append(method) or real(method, source))
    app = build_app(AppConfig(preload=False))
    assert app.style.methods == ["gatys", "fast", "adain"]
    for method in ("fast", "adain"):
        for _ in range(2):
            _, path, text = app.style.style(None, "astronaut", None, "swirls", method, 1.0,
                                            False, 64, 1)
            assert f"Style transfer: {method}" in text and Image.open(path).size == (64, 64)
    assert loads == ["fast", "adain"]  # each network loaded once, for two requests
    with pytest.raises(ValueError, match="fast paints only the styles"):
        app.style.style(None, "astronaut", __file__, "swirls", "fast", 1.0, False, 64, 1)
