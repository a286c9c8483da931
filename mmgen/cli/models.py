"""``mmgen info``, ``mmgen models``, ``mmgen inspect``: what is installed and what a model is."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, device, CPU capability, attention backends")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="list registered architectures / bundled models")
    p.add_argument("pattern", nargs="?", default=None, help="glob, e.g. 'cnn/*'")
    p.add_argument("--pretrained", action="store_true", help="list bundled weights instead")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("inspect", help="show the config of a saved or bundled model")
    p.add_argument("model", help="a model folder or a bundled model name")
    p.set_defaults(func=cmd_inspect)


def cmd_info(args: argparse.Namespace) -> int:
    """Print versions, device, CPU capability and attention backends."""
    from mmgen.device import system_info

    info = system_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List registered architectures and bundled (pretrained) models."""
    from mmgen.hub import list_pretrained
    from mmgen.registry import list_models

    names = list_pretrained() if args.pretrained else list_models(args.pattern)
    print("\n".join(names) if names else "(none)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Describe a saved or bundled model or pipeline: class, config, parameter count; the
    weight files are checked against the config from their headers (nothing is loaded)."""
    from mmgen.hub import model_dir
    from mmgen.pipeline import PIPELINE_CONFIG, Pipeline, read_pipeline_config
    from mmgen.registry import resolve_class

    directory = model_dir(args.model)
    if (directory / PIPELINE_CONFIG).is_file():
        meta = read_pipeline_config(directory)
        components = resolve_class(meta["class"], Pipeline,
                                   directory / PIPELINE_CONFIG).components
        report = {**meta, "components": {name: _describe_model(directory / name)
                                         for name in components}}
    else:
        report = _describe_model(directory)
    print(json.dumps(report, indent=2))
    return 0


def _describe_model(directory: Path) -> dict:
    from mmgen.checkpoint import check_shapes, safetensors_shapes
    from mmgen.registry import WEIGHTS_NAME, PretrainedModel, probe_model, read_saved_config

    meta, cls, config = read_saved_config(directory, PretrainedModel)
    probe = probe_model(cls, config, str(directory))
    weights = directory / WEIGHTS_NAME
    check_shapes({k: tuple(v.shape) for k, v in probe.state_dict().items()},
                 safetensors_shapes(weights), f"{weights} into {cls.__name__}")
    return {**meta, "parameters": sum(p.numel() for p in probe.parameters())}
