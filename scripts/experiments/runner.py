"""The command line every experiment module shares: ``--list``, or run ``NAME`` into
``--out`` (default ``runs/NAME``), ``--resume`` to continue it."""

from __future__ import annotations

import argparse

from mmgen.recipes.base import Recipe, run_recipe


def experiment_main(experiments: dict[str, Recipe], doc: str) -> None:
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("name", nargs="?", choices=sorted(experiments))
    parser.add_argument("--list", action="store_true", help="list the experiments")
    parser.add_argument("--out", help="output folder (default runs/NAME)")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    if args.list or not args.name:
        for name, recipe in sorted(experiments.items()):
            print(f"{name:<26} {recipe.description}")
        return
    results = run_recipe(experiments[args.name], args.out or f"runs/{args.name}", args.name,
                         args.resume)
    for key, value in results.items():
        print(f"{key:<40} {value}")
