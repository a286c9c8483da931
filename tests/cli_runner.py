"""Running the ``mmgen`` CLI in-process from a test (imported by several test files)."""

import shlex

from mmgen.cli import main


def run(capsys, command: str, *argv):
    """``mmgen COMMAND ARGV...`` (the command line split like a shell) -> (code, out, err)."""
    try:
        code = main([*shlex.split(command), *map(str, argv)])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
