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


def run_refused(capsys, command: str, argv: str, out, message: str) -> None:
    """``mmgen COMMAND ARGV`` (with ``--out OUT`` unless ARGV has one) must fail as a user
    error: exit 2, one line on stderr naming ``message``, no traceback, no output file."""
    outs = "" if "--out" in argv else f"--out {out}"
    code, stdout, err = run(capsys, f"{command} {argv} {outs}")
    assert code == 2, err
    assert err.startswith(f"mmgen {command}: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert "Traceback" not in err and stdout == ""
    assert not out.exists() and not out.with_suffix(".jpg").exists()
