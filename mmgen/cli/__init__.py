"""The ``mmgen`` command line.

Each command group is a module with its ``cmd_NAME(args) -> int`` functions and an
``add_parsers(sub)`` that registers them; :func:`build_parser` calls each one, so a new command
is a new module plus one line there. The modules import their heavy dependencies inside the
command functions, so ``mmgen --help`` and argument errors stay instant.

A user error (bad value, missing file, unknown model) prints one line to stderr and exits 2;
``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from mmgen.cli import app, colorize, generate, models, sample, search, style, train
from mmgen.cli.errors import USER_ERRORS, CLIError, one_line

__all__ = ["USER_ERRORS", "CLIError", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mmgen", description="mmgen: multimodal generative and vision models.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"mmgen {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    models.add_parsers(sub)  # info, models, inspect
    train.add_parsers(sub)  # train
    generate.add_parsers(sub)  # generate
    sample.add_parsers(sub)  # sample, interpolate
    search.add_parsers(sub)  # search, classify
    style.add_parsers(sub)  # style
    colorize.add_parsers(sub)  # colorize
    app.add_parsers(sub)  # app
    return parser


def _version() -> str:
    from mmgen.version import __version__

    return __version__


def _one_line_warning(command: str):
    """``warnings.showwarning`` for the CLI: ``mmgen COMMAND: warning: ...`` on one line."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = "; ".join(part.strip() for part in str(message).splitlines() if part.strip())
        print(f"mmgen {command}: warning: {text}", file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command)
            return args.func(args)
    except (CLIError, *USER_ERRORS) as e:
        if args.debug:
            raise
        print(f"mmgen {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
