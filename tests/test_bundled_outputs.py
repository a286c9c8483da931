"""Every bundled model gives bit-identical outputs to those recorded in
tests/data/bundled_outputs.json (SHA-256 of each output tensor's bytes), so a refactor that
changes any number a user would see fails here.

A change that is meant to change outputs (new weights, a fixed bug) records new ones:
``OMP_NUM_THREADS=1 python tests/test_bundled_outputs.py --update`` (and says why in its
commit)."""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mmgen

REFERENCE = Path(__file__).parent / "data" / "bundled_outputs.json"


def digest(t: torch.Tensor) -> str:
    t = t.detach().contiguous()
    return hashlib.sha256(str((t.dtype, tuple(t.shape))).encode()
                          + t.numpy().tobytes()).hexdigest()


@torch.no_grad()
def outputs() -> dict[str, torch.Tensor]:
    """Fixed inputs through every bundled model (one thread: summation order is fixed)."""
    out = {}
    g = torch.Generator().manual_seed(0)
    out["mnist-lenet5"] = mmgen.load("mnist-lenet5")(torch.randn(4, 1, 28, 28, generator=g))
    out["mnist-resnet18"] = mmgen.load("mnist-resnet18")(torch.randn(2, 1, 32, 32, generator=g))
    heads = mmgen.load("shapes-classifier")(torch.randn(2, 3, 64, 64, generator=g))
    out.update({f"shapes-classifier/{k}": v for k, v in heads.items()})
    clip = mmgen.load("shapes-clip")
    images = torch.rand(3, 3, 64, 64, generator=g)
    out["shapes-clip/image"] = clip.encode_image(clip.normalize_images(images))
    tokens = clip.tokenize(["a large red circle in the center on a white background",
                            "a purple plus", ""])
    out["shapes-clip/text"] = clip.encode_text(tokens)
    vae = mmgen.load("shapes-vae")
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    out["shapes-vae/mean"] = vae.encode(x).mean
    out["shapes-vae/decode"] = vae.decode(vae.encode(x).mean)
    pipe = mmgen.load("shapes-t2i")
    pixels = lambda ims: torch.from_numpy(np.stack([np.asarray(i) for i in ims]))  # noqa: E731
    out["shapes-t2i/ddim8"] = pixels(pipe(
        ["a small purple circle in the top right on a gray background",
         "a large green triangle in the center on a black background"],
        seed=3, steps=8, progress=False))
    out["shapes-t2i/euler_a"] = pixels(pipe(
        "a blue plus", negative_prompt="red", sampler="euler_a", steps=5, guidance=3.0,
        seed=11, num_images=2, progress=False))
    dit = mmgen.load("shapes-dit")
    out["shapes-dit/ddim8"] = pixels(dit(["a small purple circle in the top right on a gray "
                                          "background", "a large green triangle in the center "
                                          "on a black background"], seed=3, steps=8,
                                         progress=False))
    out["mnist-dcgan"] = pixels(mmgen.load("mnist-dcgan")([0, "7", "class 3"], seed=5))
    out["shapes-dcgan"] = pixels(mmgen.load("shapes-dcgan")(
        ["a small purple circle in the top right on a gray background",
         "a large green triangle in the center on a black background"], seed=3))
    vae = mmgen.load("mnist-vae")
    out["mnist-vae/samples"] = pixels(vae(num_images=3, seed=1))
    digits = (torch.rand(2, 1, 28, 28, generator=g) > 0.5).float()
    out["mnist-vae/mean"] = vae.model.encode(digits).mean
    return out


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_bundled_models_give_the_recorded_outputs(one_thread):
    expected = json.loads(REFERENCE.read_text())
    got = {k: digest(v) for k, v in outputs().items()}
    assert sorted(got) == sorted(expected)
    assert [k for k in expected if got[k] != expected[k]] == []


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    torch.set_num_threads(1)
    REFERENCE.write_text(json.dumps({k: digest(v) for k, v in outputs().items()},
                                    indent=1, sort_keys=True) + "\n")
