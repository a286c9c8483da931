"""Train every CNN family on the MNIST subset with one short schedule; record the results.

    python scripts/mnist_benchmark.py [--steps 500] [--models lenet5 alexnet ...]

Each model (small 3x3 stem at 32 px, one input channel) trains on the 4,000 training digits
with the classifier recipe machinery (random-affine augmentation, AdamW, cosine LR, bf16
autocast) and is tested on the 1,000 held-out digits. Results go to
docs/mnist_benchmark.json, which scripts/models_table.py turns into a table in
docs/models.md. This is a like-for-like comparison under a small CPU budget, not each
architecture's best: the bundled mnist-* models train longer (see their recipes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mmgen.recipes.classifiers import ClassifierRecipe
from mmgen.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["lenet5", "alexnet", "vgg11_bn", "googlenet", "resnet18", "se_resnet18"]


def recipe(model: str, steps: int) -> ClassifierRecipe:
    args = {"num_classes": 10, "in_channels": 1}
    args.update({"input_size": 32} if model == "lenet5" else {"stem": "small"})
    return ClassifierRecipe(
        model=f"cnn/{model}", data="mnist32", model_args=args,
        train=TrainConfig(steps=steps, batch_size=64, lr=2e-3, lr_schedule="cosine",
                          warmup_steps=steps // 10, weight_decay=0.05,
                          mixed_precision="auto", ckpt_every=0, log_every=50, seed=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--models", nargs="+", default=MODELS)
    args = parser.parse_args()
    out_file = ROOT / "docs" / "mnist_benchmark.json"
    table = json.loads(out_file.read_text()) if out_file.exists() else {}
    for model in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            results = recipe(model, args.steps).run(tmp, name=model)
        table[model] = {"steps": args.steps, "batch_size": 64,
                        "test_accuracy": results["test/accuracy"],
                        "train_seconds": results["train_seconds"]}
        print(model, table[model], flush=True)
        out_file.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
