"""The browser-test machinery itself: a real headless Chromium drives a tiny Gradio app."""

from pathlib import Path

import gradio as gr
from browser import browser_page, serve_blocks

PAYLOAD = b"mmgen \x00\x01\xff bytes\n\xc3\xa9t\xc3\xa9\n"  # binary and UTF-8 bytes


def test_type_click_read_and_download(tmp_path: Path):
    def greet(name: str) -> tuple[str, str]:
        path = tmp_path / f"greeting-{name}.bin"
        path.write_bytes(PAYLOAD + name.encode())
        return f"Hello, {name}!", str(path)

    with gr.Blocks() as demo:
        name = gr.Textbox(label="Name")
        button = gr.Button("Greet")
        greeting = gr.Textbox(label="Greeting")
        file = gr.File(label="Result file")
        button.click(greet, name, [greeting, file])

    with serve_blocks(demo, allowed_paths=[str(tmp_path)]) as url, browser_page() as page:
        from playwright.sync_api import expect  # here: browser_page() explains a missing one

        page.goto(url)
        page.get_by_label("Name", exact=True).fill("Ada")
        page.get_by_role("button", name="Greet").click()
        expect(page.get_by_label("Greeting", exact=True)).to_have_value("Hello, Ada!")

        with page.expect_download() as info:
            page.get_by_test_id("download-link").click()
        download = info.value
        assert download.suggested_filename == "greeting-Ada.bin"
        assert Path(download.path()).read_bytes() == PAYLOAD + b"Ada"
