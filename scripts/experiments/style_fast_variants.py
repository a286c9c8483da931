"""Issue #19 experiments: why the fast-style network loses the content, and what was tried.

    python scripts/experiments/style_fast_variants.py noise-start           # the losses alone
    python scripts/experiments/style_fast_variants.py gatys-layers          # Gatys' content layer
    python scripts/experiments/style_fast_variants.py texture               # style-fast's texture
    python scripts/experiments/style_fast_variants.py skip --steps 600 --out runs/fast-skip
    python scripts/experiments/style_fast_variants.py skip-1e6 --steps 2400 --out runs/s6
    python scripts/experiments/style_fast_variants.py content-10 --steps 2400 --out runs/c10
    python scripts/experiments/style_fast_variants.py multinet-style-3x --steps 2400 --out DIR
    python scripts/experiments/style_fast_variants.py adain-anchor-10 --out DIR
    python scripts/experiments/style_fast_variants.py inversion --depth 4   # can g invert f?
    python scripts/experiments/style_fast_variants.py checkpoint --variant skip-1e6 \\
        --weights runs/s6/run/checkpoints/step_00000400/model.safetensors

``noise-start`` optimises pixels (Gatys, L-BFGS, 150 evaluations at 256 px, astronaut x
swirls) from uniform noise, as a feed-forward network must start, with the ``style-fast``
losses (random network, style layers ``FAST_STYLE_LAYERS``, style weight 3e5) and several
content layers and weights, and prints the structure similarity of each result: whether the
loss itself keeps the contours. The training variants run the ``style-fast`` recipe with one
change each (results.json in OUT, the recipe's evaluation):

* ``skip``: ``TransformerNetConfig.content_skip`` (the input added to the output), the
  recipe's style weights;
* ``skip-1e6``: the same at the Gatys default weights (swirls 1e6, pointillism 3e6, waves 1e6);
* ``content-10``: no skip, content weight 10 instead of 1;
* ``multinet``: the loss measured, each step, on one of four random loss networks (seeds
  0-3: ``FastStyleRecipe.loss_seeds``) instead of one; ``multinet-content-10`` with content
  weight 10 too (the bundled recipe's settings, but EMA 0.999); ``multinet-style-1.7x`` and
  ``-3x`` with the style weights 1.7x and 3x (EMA 0.99); ``multinet-layers-3x`` with the
  content at relu1_1 and relu2_1; ``wide`` the bundled recipe with the published-width
  TransformerNet;
* ``adain-anchor-3`` / ``adain-anchor-10``: ``style-adain`` with AdaINObjective's layout
  anchor at that weight (four random networks); ``adain-gram-300000``: the anchor at 10 and
  AdaINObjective's Gram term at 3e5 on the same networks; ``adain-long``: that recipe
  with 12,000 steps instead of 1,800 (checkpoints every 500). All AdaIN variants change
  ``style-adain`` as registered until 2026-12-03 (:data:`ADAIN_BASE`: relu4_1, the paper's
  style weight 10, the anchor at 10);
* ``adain-relu3``: AdaIN at relu3_1 (``AdaINConfig.depth`` 3); ``adain-relu3-paper`` the
  same without the anchor; ``adain-relu3-style-50`` / ``-200`` with style weight 50 / 200
  (``-50`` is the registered recipe since); ``adain-relu3-style-50-wide`` with the published
  decoder width; ``adain-relu3-gram`` / ``adain-relu3-paper-gram``: the Gram term at 3e5,
  with and without the anchor.

``inversion`` trains the ``style/adain-slim`` decoder (``--depth 4``) or the
``style/adain-slim-relu3`` one (``--depth 3``) to reconstruct crops of the content photos
from the random encoder's features with a pixel MSE alone (96 px, batch 8, Adam 1e-3,
``--steps`` 1,000) and prints the PSNR of a running mean of the loss every 100 steps: how
well a decoder can invert that encoder at all.

``texture`` prints, for the bundled ``style-fast``, the Gram loss reduction per layer and
the share of smooth-ramp pixels (LBP code 4 at radius 1) in style, content and output.

``checkpoint`` also prints the style loss reduction on a random network of seed 7, which no
variant trains on (``held_out_network_*``).

``gatys-layers`` runs ``stylize``'s Gatys settings at 256 px (astronaut x swirls, chelsea x
pointillism) with the content at relu4_2 (the paper's, for VGG), at relu2_1 (the default for
the random network since this experiment) and at relu4_2 with style weight 3e5, and prints
the recipe evaluation's measures of each.

``checkpoint`` evaluates a training checkpoint of a variant as the recipe evaluates its
final model (model weights, not EMA). Numbers: docs/style.md.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

VARIANTS = {
    "skip": {"model_args": {"content_skip": True}},
    "skip-1e6": {"model_args": {"content_skip": True}, "style_weights": (1e6, 3e6, 1e6)},
    "content-10": {"content_weight": 10.0},
    "multinet": {"loss_seeds": (0, 1, 2, 3)},
    "multinet-content-10": {"loss_seeds": (0, 1, 2, 3), "content_weight": 10.0},
    **{f"multinet-style-{k}x": {"loss_seeds": (0, 1, 2, 3), "content_weight": 10.0,
                                "style_weights": (3e5 * k, 9e5 * k, 3e5 * k),
                                "train": {"ema_decay": 0.99}} for k in (1.7, 3)},
    "multinet-layers-3x": {"loss_seeds": (0, 1, 2, 3), "content_weight": 10.0,
                           "content_layers": ("relu1_1", "relu2_1"),
                           "style_weights": (9e5, 2.7e6, 9e5), "train": {"ema_decay": 0.99}},
    # the bundled recipe with the published-width TransformerNet (32/64/128 channels)
    "wide": {"model": "style/transformer-net"},
    # style-adain with the layout anchor (AdaINObjective.anchor_weight)
    **{f"adain-anchor-{w:g}": {"anchor_weight": w, "anchor_seeds": (0, 1, 2, 3)}
       for w in (3.0, 10.0)},
    # the registered style-adain recipe trained 6.7x longer (12,000 steps): whether the
    #   decoder learns to invert the random encoder given time
    "adain-long": {"train": {"steps": 12000, "warmup_steps": 200, "ckpt_every": 500}},
    # style-adain (anchor 10 on four networks) at depth 3: AdaIN at relu3_1, which a decoder
    #   inverts (pixel MSE: 24 dB after 1,000 steps, against 17 dB from relu4_1); and the
    #   same with the paper's loss alone (no anchor)
    "adain-relu3": {"model_args": {"depth": 3}},
    "adain-relu3-paper": {"model_args": {"depth": 3}, "anchor_weight": 0.0},
    # depth 3 with the anchor and a larger style weight (the paper's lambda: 10)
    **{f"adain-relu3-style-{w:g}": {"model_args": {"depth": 3}, "style_weight": float(w)}
       for w in (50, 200)},
    # the published decoder width (4x the parameters) at depth 3, style weight 50
    "adain-relu3-style-50-wide": {"model_args": {"depth": 3, "width": 1.0},
                                  "style_weight": 50.0},
    # depth 3 with AdaINObjective's Gram term at 3e5 (the fast recipe's swirls weight), with
    #   and without the anchor
    "adain-relu3-gram": {"model_args": {"depth": 3}, "gram_weight": 3e5},
    "adain-relu3-paper-gram": {"model_args": {"depth": 3}, "anchor_weight": 0.0,
                               "anchor_seeds": (0, 1, 2, 3), "gram_weight": 3e5},
    # the anchor at 10 and AdaINObjective's Gram style term on the same four networks
    "adain-gram-300000": {"anchor_weight": 10.0, "anchor_seeds": (0, 1, 2, 3),
                          "gram_weight": 3e5},
}
# The AdaIN variants change style-adain as registered until 2026-12-03 (AdaIN at relu4_1,
# the paper's style weight; anchor 10 on four networks as now); the registered recipe since
# is the variant adain-relu3-style-50.
ADAIN_BASE = {"model": "style/adain-slim", "style_weight": 10.0}
HELD_OUT_SEED = 7  # a random loss network none of the variants trains on
NOISE_START = [(("relu2_1",), 1.0), (("relu1_1",), 1.0), (("relu3_1",), 1.0),
               (("relu2_1",), 10.0), (("relu4_2",), 1.0)]  # (content layers, content weight)


def variant(name: str, steps: int | None):
    from mmgen.recipes import get_recipe

    changes = dict(VARIANTS[name])
    train = changes.pop("train", {})
    recipe = get_recipe("style-adain" if name.startswith("adain") else "style-fast")
    if name.startswith("adain"):
        recipe = replace(recipe, **ADAIN_BASE)
    recipe = replace(recipe, **changes, train=replace(recipe.train, **train))
    if steps:  # the schedules of the measured runs: 600 steps (warm-up 50, a checkpoint
        #   every 100) and 2,400 (warm-up 100, every 200), cosine to 0 either way
        short = steps <= 1000
        recipe = replace(recipe, train=replace(recipe.train, steps=steps,
                                               warmup_steps=50 if short else 100,
                                               ckpt_every=100 if short else 200))
    return recipe


def noise_start() -> None:
    from mmgen.data.photos import load_photo
    from mmgen.metrics.style import structure_similarity
    from mmgen.recipes.style import image_tensor
    from mmgen.style.features import feature_network
    from mmgen.style.gatys import GatysConfig, gatys
    from mmgen.style.styles import load_style
    from mmgen.style.train import FAST_STYLE_LAYERS

    net = feature_network("random")
    content = image_tensor(load_photo("astronaut", 256))
    style = image_tensor(load_style("swirls", 256))
    for layers, weight in NOISE_START:
        config = GatysConfig(content_weight=weight, style_weight=3e5, scales=(256,),
                             steps=(150,), init="noise", content_layers=layers,
                             style_layers=FAST_STYLE_LAYERS)
        out = gatys(content, style, net, config=config, progress=False).clamp(0, 1)
        print(f"content {layers[0]} x {weight:g}: structure "
              f"{structure_similarity(out, content):.3f}", flush=True)


def gatys_layers() -> None:
    from mmgen.data.photos import load_photo
    from mmgen.recipes.style import image_tensor, stylization_results
    from mmgen.style.features import feature_network
    from mmgen.style.gatys import gatys
    from mmgen.style.styles import load_style
    from mmgen.style.transfer import gatys_config

    net = feature_network("random")
    vgg_like = gatys_config(256, 256, network="vgg")  # content at relu4_2
    configs = {"relu4_2": vgg_like, "relu2_1": gatys_config(256, 256, network="random"),
               "relu4_2, style 3e5": replace(vgg_like, style_weight=3e5)}
    for name, config in configs.items():
        contents, outputs, styles = [], [], []
        for photo, style_name in (("astronaut", "swirls"), ("chelsea", "pointillism")):
            content = image_tensor(load_photo(photo, 256))
            style = image_tensor(load_style(style_name, 256))
            outputs.append(gatys(content, style, net, config, progress=False).clamp(0, 1))
            contents.append(content)
            styles.append(style)
        results = stylization_results(contents, outputs, styles)
        print(name, {k: round(results[k], 3) for k in (
            "style_loss_reduction", "structure_similarity", "color_distance_reduction",
            "texture_distance_reduction")}, flush=True)


def texture() -> None:
    """Where the bundled style-fast's texture falls short: the Gram loss per layer of the
    content and of the output (seed-0 network), and the share of pixels whose radius-1
    uniform LBP code is 4 (half the neighbours brighter: smooth ramps) in the style, the
    content and the output; astronaut and chelsea x the network's styles at 256 px."""
    import torch
    import torch.nn.functional as F
    from skimage.feature import local_binary_pattern

    import mmgen
    from mmgen.data.photos import load_photo
    from mmgen.recipes.style import image_tensor
    from mmgen.style.features import feature_network
    from mmgen.style.losses import gram_matrix
    from mmgen.style.styles import load_style
    from mmgen.style.train import FAST_STYLE_LAYERS

    def ramps(image: torch.Tensor) -> float:
        luma = (image[0].permute(1, 2, 0) @ torch.tensor([0.299, 0.587, 0.114])) * 255
        codes = local_binary_pattern(luma.round().byte().numpy(), 8, 1, method="uniform")
        return float((codes == 4).mean())

    def grams(image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: gram_matrix(v) for k, v in net(image, FAST_STYLE_LAYERS).items()}

    net, model = feature_network("random"), mmgen.load("style-fast")
    for index, name in enumerate(model.config.styles):
        style = image_tensor(load_style(name, 256))
        target = grams(style)
        for photo in ("astronaut", "chelsea"):
            content = image_tensor(load_photo(photo, 256))
            with torch.no_grad():
                output = model.stylize(content, index)
                before, after = grams(content), grams(output)
            layers = " ".join(
                f"{k} {F.mse_loss(before[k], target[k]) / F.mse_loss(after[k], target[k]):.1f}x"
                for k in FAST_STYLE_LAYERS)
            print(f"{name} x {photo}: Gram loss lower by {layers}; LBP code 4: style "
                  f"{ramps(style):.3f}, content {ramps(content):.3f}, output {ramps(output):.3f}")


def inversion(depth: int, steps: int) -> None:
    import time

    import torch
    import torch.nn.functional as F

    from mmgen.data.photos import photo_crops
    from mmgen.recipes.style import content_photos
    from mmgen.registry import create_model
    from mmgen.style.train import random_encoder

    torch.manual_seed(0)
    model = create_model("style/adain-slim" if depth == 4 else "style/adain-slim-relu3")
    model.encoder.load_state_dict(random_encoder(0, model.config.encoder_width, depth)
                                  .state_dict())
    data = photo_crops(content_photos(), 96, (256, 384), 0)
    optimizer = torch.optim.Adam(model.decoder.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    start, mean = time.time(), None
    for step in range(steps):
        index = torch.randint(len(data), (8,), generator=generator)
        images = torch.stack([data[int(i)][0] for i in index])  # (8, 3, 96, 96)
        with torch.no_grad():
            features = model.encoder(images)
        loss = F.mse_loss(model.decoder(features), images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        mean = loss.item() if mean is None else 0.95 * mean + 0.05 * loss.item()
        if step % 100 == 0 or step == steps - 1:
            psnr = -10 * torch.log10(torch.tensor(mean)).item()
            print(f"depth {depth} step {step}: MSE {mean:.4f}, PSNR {psnr:.2f} dB "
                  f"({time.time() - start:.0f} s)", flush=True)


def checkpoint(name: str, weights: str) -> None:
    from mmgen.checkpoint import load_state_dict
    from mmgen.registry import create_model

    recipe = variant(name, None)
    styles = {"styles": recipe.styles} if hasattr(recipe, "styles") else {}
    model = create_model(recipe.model, **{**recipe.model_args, **styles})
    model.load_state_dict(load_state_dict(weights))
    results = recipe.measure(model.eval()) | held_out_network(recipe, model)
    print({k: round(v, 3) for k, v in results.items()})


def held_out_network(recipe, model) -> dict[str, float]:
    """The style loss reduction of ``recipe.measure`` on a random network of another seed
    (:data:`HELD_OUT_SEED`), which no variant trains on."""
    from mmgen.style.features import feature_network

    results = recipe.measure(model, feature_network("random", seed=HELD_OUT_SEED))
    return {f"held_out_network_{k}": results[k] for k in ("style_loss_reduction",
                                                           "style_loss_reduction_min")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["noise-start", "gatys-layers", "texture", "checkpoint",
                                         "inversion", *VARIANTS])
    parser.add_argument("--steps", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--out", default=None, help="run folder of a training variant")
    parser.add_argument("--variant", choices=list(VARIANTS), help="checkpoint: its variant")
    parser.add_argument("--weights", help="checkpoint: a model.safetensors of that variant")
    parser.add_argument("--depth", type=int, choices=[3, 4], default=4, help="inversion: "
                        "AdaIN at relu4_1 (4) or relu3_1 (3)")
    args = parser.parse_args()
    if args.what == "noise-start":
        noise_start()
    elif args.what == "gatys-layers":
        gatys_layers()
    elif args.what == "texture":
        texture()
    elif args.what == "inversion":
        inversion(args.depth, args.steps or 1000)
    elif args.what == "checkpoint":
        if not (args.variant and args.weights):
            parser.error("checkpoint needs --variant and --weights")
        checkpoint(args.variant, args.weights)
    else:
        if not args.out:
            parser.error("a training variant needs --out")
        out = Path(args.out)
        resume = any((out / "run" / "checkpoints").glob("step_*"))
        name = args.what if args.what.startswith("adain") else f"style-fast-{args.what}"
        print(variant(args.what, args.steps).run(out, name, resume=resume))


if __name__ == "__main__":
    main()
