"""`mmgen search`'s cache heals itself, and unreadable images are skipped, never fatal."""

import json
import warnings

import pytest
import torch
from faults import bomb_png, truncate

import mmgen
from mmgen import cli
from mmgen.checkpoint import save_state_dict
from mmgen.clip.search import ImageIndex
from mmgen.data.shapes import ShapesDataset, render


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return mmgen.create_model("clip/tiny", vision={"layers": 1}, text={"layers": 1}).eval()


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """Four 64x64 Shapes images, with the search cache under tmp_path."""
    monkeypatch.setenv("MMGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MMGEN_MAX_INPUT_PIXELS", raising=False)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        render(ShapesDataset("test", length=4).attrs(i)).save(folder / f"{i}.png")
    return folder


def build(folder, model):
    return ImageIndex(folder, model, "m1").build()


def build_silently(folder, model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return build(folder, model)


# ----------------------------------------------------------------------------- corruptions


def edit_index(cache, edit):
    meta = json.loads((cache / "index.json").read_text())
    (cache / "index.json").write_text(json.dumps(edit(meta)))


def edit_embeddings(cache, edit):
    path = cache / "embeddings.safetensors"
    save_state_dict(edit(mmgen.checkpoint.load_safetensors(path)["embeddings"]), path)


CORRUPTIONS = {
    "garbage json": lambda c: (c / "index.json").write_bytes(b"\x89{not json"),
    "list json": lambda c: edit_index(c, lambda m: [m]),
    "files a list": lambda c: edit_index(c, lambda m: {**m, "files": list(m["files"])}),
    "files values not stamps": lambda c: edit_index(
        c, lambda m: {**m, "files": {f: "x" for f in m["files"]}}),
    "bad a list": lambda c: edit_index(c, lambda m: {**m, "bad": []}),
    "index missing": lambda c: (c / "index.json").unlink(),
    "truncated embeddings": lambda c: truncate(c / "embeddings.safetensors"),
    "embeddings missing": lambda c: (c / "embeddings.safetensors").unlink(),
    "no embeddings key": lambda c: edit_embeddings(c, lambda e: {"other": e}),
    "integer embeddings": lambda c: edit_embeddings(c, lambda e: {"embeddings": e.long()}),
    "1-d embeddings": lambda c: edit_embeddings(c, lambda e: {"embeddings": e.flatten()}),
    "row count mismatch": lambda c: edit_embeddings(c, lambda e: {"embeddings": e[:-1]}),
    "width mismatch": lambda c: edit_embeddings(c, lambda e: {"embeddings": e[:, :-1]}),
    "nan embeddings": lambda c: edit_embeddings(c, lambda e: {"embeddings": e * torch.nan}),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_damaged_cache_is_rebuilt_with_a_warning(tiny, folder, corrupt):
    fresh = build_silently(folder, tiny)
    corrupt(fresh.cache)

    with pytest.warns(UserWarning, match="search cache .* is unreadable .*; rebuilding it"):
        healed = build(folder, tiny)
    assert healed.files == fresh.files and healed.embedded_now == len(fresh.files)
    assert torch.allclose(healed.embeddings, fresh.embeddings, atol=1e-6)

    again = build_silently(folder, tiny)  # the rebuilt cache was saved
    assert again.embedded_now == 0 and again.files == fresh.files
    assert torch.equal(again.embeddings, healed.embeddings)


def test_cache_warning_names_the_folder_and_the_reason(tiny, folder):
    cache = build_silently(folder, tiny).cache
    edit_embeddings(cache, lambda e: {"embeddings": e[:-1]})
    with pytest.warns(UserWarning) as record:
        build(folder, tiny)
    (message,) = [str(w.message) for w in record]
    assert message.startswith(f"search cache {cache} is unreadable (the embeddings have shape")
    assert "index.json lists 4 files" in message


# ----------------------------------------------------------------------------- images


def test_unreadable_images_are_skipped_with_one_warning(tiny, folder):
    data = (folder / "0.png").read_bytes()
    (folder / "damaged.png").write_bytes(data[: len(data) * 2 // 3])
    (folder / "text.png").write_text("not a png")
    bomb_png(folder / "bomb.png")

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        index = build(folder, tiny)
    (message,) = [str(w.message) for w in record]
    assert message.startswith("skipped 3 unreadable image(s): bomb.png (refused as a "
                              "decompression bomb")
    assert "damaged.png (not a readable image" in message and "truncated" in message
    assert "text.png (not a readable image" in message and str(folder) not in message
    assert index.files == ["0.png", "1.png", "2.png", "3.png"] and index.embedded_now == 4
    assert index.search(str(folder / "2.png"), k=1)[0].file == str(folder / "2.png")

    with pytest.warns(UserWarning) as again_record:  # remembered (reasons too), not re-read
        again = build(folder, tiny)
    assert [str(w.message) for w in again_record] == [message] and again.embedded_now == 0


def test_images_over_the_pixel_limit_are_reread_when_the_limit_changes(tiny, folder,
                                                                       monkeypatch):
    render(ShapesDataset("val", length=1).attrs(0)).resize((128, 128)).save(folder / "big.png")
    monkeypatch.setenv("MMGEN_MAX_INPUT_PIXELS", str(64 * 64))
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\): big.png \(image "
                                         r"size 128x128 .* MMGEN_MAX_INPUT_PIXELS"):
        assert len(build(folder, tiny).files) == 4

    monkeypatch.delenv("MMGEN_MAX_INPUT_PIXELS")
    index = build_silently(folder, tiny)
    assert "big.png" in index.files and index.embedded_now == 1


def test_a_bad_pixel_limit_fails_before_any_file_is_read(tiny, folder, monkeypatch):
    monkeypatch.setenv("MMGEN_MAX_INPUT_PIXELS", "lots")
    with pytest.raises(ValueError, match="MMGEN_MAX_INPUT_PIXELS='lots'"):
        build(folder, tiny)


def test_unreadable_image_query_is_a_value_error(tiny, folder, tmp_path, capsys):
    index = build_silently(folder, tiny)
    query = tmp_path / "query.png"
    query.write_text("not a png")
    with pytest.raises(ValueError, match=f"image query {query}: not a readable image"):
        index.search(str(query))

    model_dir = tiny.save_pretrained(tmp_path / "clip")
    assert cli.main(["search", str(folder), str(query), "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"mmgen search: error: image query {query}: not a readable")
