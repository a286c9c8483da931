"""Every bundled model gives the outputs recorded in tests/data/bundled_outputs.safetensors
(fixed inputs, one thread), so a refactor that changes any number a user would see fails here.

The comparison allows what differs between CPUs, not what a change to a model does: kernels
pick their instructions per CPU (AVX2, AVX-512), which moves fp32 results by about 1e-6
relative and can turn a pixel by one level; so float outputs must agree within 1e-4 of their
scale, images within 2 levels per pixel on at most 1 % of the pixels (a changed weight, sampler
or preprocessing moves them far more; a test checks that a one-step difference is caught).

A change that is meant to change outputs (new weights, a fixed bug) records new ones:
``OMP_NUM_THREADS=1 python tests/test_bundled_outputs.py --update`` (and says why in its
commit)."""

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import mmgen
from mmgen.color.colorize import ColorizeRequest, colorize
from mmgen.data.photos import load_photo
from mmgen.style.styles import load_style

REFERENCE = Path(__file__).parent / "data" / "bundled_outputs.safetensors"


def mismatch(got: torch.Tensor, ref: torch.Tensor) -> str:
    """"" if ``got`` matches ``ref`` within the tolerance of the module docstring, else why."""
    if got.dtype != ref.dtype or got.shape != ref.shape:
        return f"{got.dtype} {tuple(got.shape)} instead of {ref.dtype} {tuple(ref.shape)}"
    if ref.dtype == torch.uint8:  # images
        diff = (got.int() - ref.int()).abs()
        changed = float((diff > 0).float().mean())
        if int(diff.max()) > 2 or changed > 0.01:
            return f"max pixel difference {int(diff.max())}, {changed:.2%} of pixels changed"
        return ""
    scale = float(ref.abs().max()) + 1e-12
    err = float((got - ref).abs().max())
    return f"max difference {err:.3g} (scale {scale:.3g})" if err > 1e-4 * scale else ""


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
    colorizer = mmgen.load("photo-colorizer")
    out["photo-colorizer/ab"] = colorizer.predict_ab(100 * torch.rand(1, 1, 32, 48, generator=g))
    chelsea = load_photo("chelsea", 80)  # 80 x 80 px, seen by the network at 64
    out["photo-colorizer/chelsea"] = pixels([colorize(chelsea, ColorizeRequest(size=64))])
    photo = torch.from_numpy(np.array(load_photo("astronaut", 64))).permute(2, 0, 1)
    photo = photo[None].float() / 255  # (1, 3, 64, 64)
    out["style-fast/waves"] = mmgen.load("style-fast").stylize(photo, 2)
    waves = torch.from_numpy(np.array(load_style("waves", 48))).permute(2, 0, 1)[None] / 255
    out["style-adain/waves"] = mmgen.load("style-adain").stylize(photo, waves.float())
    return out


def test_bundled_models_give_the_recorded_outputs():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = {k: v.detach().contiguous() for k, v in outputs().items()}
    finally:
        torch.set_num_threads(threads)
    expected = load_file(REFERENCE)
    assert sorted(got) == sorted(expected)
    assert {k: why for k in expected if (why := mismatch(got[k], expected[k]))} == {}


def test_the_tolerance_catches_real_changes():
    expected = load_file(REFERENCE)
    image, embedding = expected["shapes-t2i/ddim8"], expected["shapes-clip/image"]
    assert mismatch(image, image) == "" and mismatch(embedding, embedding) == ""
    brighter = (image.int() + 1).clamp(0, 255).to(torch.uint8)  # every pixel one level up
    assert mismatch(brighter, image)
    assert mismatch(embedding * (1 + 1e-3), embedding)  # a 0.1 % change of the output
    assert mismatch(embedding.half().float(), embedding)  # fp16 rounding of the result
    assert mismatch(embedding[:2], embedding)


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    torch.set_num_threads(1)
    save_file({k: v.detach().contiguous() for k, v in outputs().items()}, str(REFERENCE))
