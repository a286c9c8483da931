"""The ``mmgen`` command line.

Every subcommand is a function ``cmd_NAME(args) -> int`` registered in :func:`build_parser`.
A user error (bad value, missing file, unknown model) prints one line to stderr and exits 2;
``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from mmgen.checkpoint import UnsafeCheckpointError

# Exceptions that mean "the input was wrong", not "mmgen is broken".
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, IsADirectoryError, PermissionError,
               NotADirectoryError, UnsafeCheckpointError)


class CLIError(Exception):
    """A user error detected by the CLI itself (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


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
    from mmgen.registry import list_models, list_pretrained

    names = list_pretrained() if args.pretrained else list_models(args.pattern)
    print("\n".join(names) if names else "(none)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Describe a saved or bundled model: class, config and parameter count."""
    from mmgen.registry import PretrainedModel, model_dir, read_config

    directory = model_dir(args.model)
    model = PretrainedModel.from_pretrained(directory)
    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps({**read_config(directory), "parameters": n_params}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mmgen", description="mmgen: multimodal generative and vision models.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"mmgen {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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
    return parser


def _version() -> str:
    from mmgen import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (CLIError, *USER_ERRORS) as e:
        if args.debug:
            raise
        msg = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
        print(f"mmgen {args.command}: error: {'; '.join(msg.splitlines())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
