"""The web app in a real browser (Debian's Chromium driven by Playwright): a user types a
prompt, clicks Generate, gets the image and downloads a PNG that carries the right
parameters; the same for a style transfer and a colorization. Screenshots go to
``$MMGEN_SCREENSHOTS`` (``make screenshots`` writes the README's into docs/images)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from app_server import serve_app
from browser import browser_page
from PIL import Image

from mmgen.color.colorize import read_colorize_params
from mmgen.data.photos import load_photo
from mmgen.diffusion.metadata import read_params
from mmgen.style.transfer import read_style_params
from mmgen_app import AppConfig

PROMPT = "a large blue square in the center on a white background"


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("MMGEN_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _download(page, test_id_scope: str) -> Path:
    with page.expect_download() as info:
        page.locator(f"#{test_id_scope}").get_by_test_id("download-link").first.click()
    return Path(info.value.path())


def _shot(page, path: Path) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)


def _set_number(page, elem_id: str, value: int) -> None:
    """A slider's or number box's value, typed into its number field."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Tab")


def test_generate_style_and_colorize_in_a_browser(tmp_path: Path, shots: Path):
    photo = tmp_path / "grandma.png"
    load_photo("grace_hopper", 96).convert("L").save(photo)
    with serve_app(AppConfig()) as (app, url), \
            browser_page(screenshot=tmp_path / "last.png") as page:
        from playwright.sync_api import expect  # here: browser_page() explains a missing one

        page.set_viewport_size({"width": 1280, "height": 1400})
        page.goto(url)
        # text to image: prompt, seed, Generate; the gallery shows it; download the PNG
        page.locator("#t2i-prompt textarea").fill(PROMPT)
        _set_number(page, "t2i-seed", 7)
        page.locator("#t2i-generate").click()
        expect(page.locator("#t2i-gallery img").first).to_be_visible()
        expect(page.locator("#t2i-used-seed input")).to_have_value("7")
        _shot(page, shots / "app.png")
        params = read_params(_download(page, "t2i-files"))
        assert (params.prompt, params.seed, params.model) == (PROMPT, 7, "shapes-t2i")
        # the same image as the library gives for that prompt and seed
        expected = app.store.pipeline("shapes-t2i")(PROMPT, seed=7, progress=False)[0]
        assert json.loads(expected.info["mmgen"]) == json.loads(params.to_json())

        # style transfer: a bundled photo in a bundled style, small and quick
        page.get_by_role("tab", name="Style transfer").click()
        _set_number(page, "style-size", 64)
        _set_number(page, "style-steps", 30)
        page.locator("#style-run").click()
        expect(page.locator("#style-result img")).to_be_visible(timeout=60_000)
        _shot(page, shots / "app_style.png")
        style = read_style_params(_download(page, "style-file"))
        assert (style.method, style.content, style.styles, style.steps) == \
            ("gatys", "astronaut", ("swirls",), 30)
        assert (style.width, style.height) == (64, 64)

        # colorization: upload a black-and-white photo
        page.get_by_role("tab", name="Colorize").click()
        page.locator("#color-image input[type=file]").set_input_files(str(photo))
        page.locator("#color-run").click()
        expect(page.locator("#color-result img")).to_be_visible(timeout=60_000)
        _shot(page, shots / "app_colorize.png")
        result = _download(page, "color-file")
        color = read_colorize_params(result)
        assert (color.method, color.input_mode, color.weights) == \
            ("learned", "gray", "photo-colorizer")
        assert Image.open(result).size == (96, 96) and Image.open(result).mode == "RGB"
