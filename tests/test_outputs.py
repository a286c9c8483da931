"""Generated images are never overwritten: numbered names claimed atomically in a folder,
explicit files refused unless --overwrite, nothing half-written on failure."""

import errno
import multiprocessing
import os
import subprocess
import sys

import pytest
from PIL import Image

from mmgen import cli
from mmgen.checkpoint import write_new, write_numbered
from mmgen.diffusion.metadata import GenerationParams, attach, read_params, save_png_numbered

PARAMS = GenerationParams("a red circle", "", 0, "ddim", 2, 3.0, 8, 8, "m", "0")


def _image(seed: int) -> Image.Image:
    return attach(Image.new("RGB", (8, 8), (seed % 256, 0, 0)),
                  GenerationParams(**{**PARAMS.__dict__, "seed": seed}))


def _writer(folder: str, worker: int, count: int) -> None:
    for i in range(count):
        seed = 1000 * worker + i
        save_png_numbered(_image(seed), folder, f"{seed}-a-red-circle")


def test_concurrent_writers_keep_every_image(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    files = sorted(tmp_path.iterdir())
    assert len(files) == 60 and not [f for f in files if f.name.startswith(".")]
    numbers = sorted(int(f.name[:5]) for f in files)
    assert numbers == list(range(1, 61))  # every name claimed once, no gaps
    for f in files:  # each file holds the image its name says
        assert read_params(f).seed == int(f.name.split("-")[1])


def test_numbering_continues_after_the_highest(tmp_path):
    (tmp_path / "00041-7-old.png").write_bytes(b"keep me")
    (tmp_path / "notes.txt").write_text("unrelated")
    path = save_png_numbered(_image(3), tmp_path, "3-a-red-circle")
    assert path.name == "00042-3-a-red-circle.png"
    assert (tmp_path / "00041-7-old.png").read_bytes() == b"keep me"


def test_without_hard_links_names_are_still_claimed_once(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    first = save_png_numbered(_image(1), tmp_path, "x")
    with pytest.raises(FileExistsError):
        write_new(first, lambda p: p.write_bytes(b"new"))
    taken = {}

    def racing_writer(n):  # another writer takes 00002 between our listing and our claim
        if n == 2 and not taken:
            taken[n] = (tmp_path / "00002-x.png").write_bytes(b"taken")
        return f"{n:05d}-x.png"

    second = write_numbered(tmp_path, lambda p: p.write_bytes(b"new"), racing_writer)
    assert (first.name, second.name) == ("00001-x.png", "00003-x.png")
    assert (tmp_path / "00002-x.png").read_bytes() == b"taken"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00001-x.png", "00002-x.png",
                                                         "00003-x.png"]


def test_write_new_refuses_an_existing_file_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.png"
    target.write_bytes(b"original")
    with pytest.raises(FileExistsError, match="x.png exists"):
        write_new(target, lambda p: p.write_bytes(b"new"))

    def crash(path):
        path.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_new(tmp_path / "y.png", crash)
    assert target.read_bytes() == b"original"
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from mmgen.hub import BUNDLED_DIR

    return str(BUNDLED_DIR / "shapes-t2i")


def test_same_prompt_and_seed_twice_keeps_both(model, tmp_path, capsys):
    args = ["generate", "a red circle", "--model", model, "--seed", "4", "--steps", "2",
            "--out", str(tmp_path)]
    assert cli.main(args) == 0
    first = (tmp_path / "00001-4-a-red-circle.png").read_bytes()
    assert cli.main([*args[:5], "6", *args[6:]]) == 0
    assert cli.main(args) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["00001-4-a-red-circle.png", "00002-6-a-red-circle.png",
                     "00003-4-a-red-circle.png"]
    assert (tmp_path / "00001-4-a-red-circle.png").read_bytes() == first
    assert (tmp_path / "00003-4-a-red-circle.png").read_bytes() == first  # same seed, same image


def test_explicit_file_is_replaced_only_with_overwrite(model, tmp_path, capsys):
    out = tmp_path / "x.png"
    out.write_bytes(b"precious")
    args = ["generate", "a red circle", "--model", model, "--steps", "1", "--out", str(out)]
    assert cli.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert cli.main([*args, "--overwrite"]) == 0
    assert read_params(out).steps == 1


def test_concurrent_cli_runs_into_one_folder_keep_every_image(model, tmp_path):
    cmd = [sys.executable, "-m", "mmgen.cli", "generate", "a blue square", "--model", model,
           "--seed", "9", "--steps", "2", "--out", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"0000{i}-9-a-blue-square.png" for i in (1, 2, 3)]
    assert len({(tmp_path / n).read_bytes() for n in names}) == 1  # identical, none lost
