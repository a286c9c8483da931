"""The CLI skeleton and the device/precision policy."""

import json
import subprocess
import sys

import pytest
import torch

import mmgen
from mmgen import cli
from mmgen.device import prefers_channels_last, resolve_device, resolve_dtype


def run_cli(*args):
    """Run the installed console script exactly as a user would."""
    exe = [sys.executable, "-m", "mmgen.cli"]
    return subprocess.run([*exe, *args], capture_output=True, text=True, timeout=120)


def test_info_exits_zero_and_lists_backends():
    res = run_cli("info", "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["mmgen"] == mmgen.__version__ and info["torch"] == torch.__version__
    assert "sdpa" in info["attention backends"] and "math" in info["attention backends"]
    assert info["device (auto)"] in ("cpu", "cuda", "mps")


def test_user_errors_are_one_line_with_exit_2(tmp_path, capsys):
    assert cli.main(["inspect", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mmgen inspect: error:")
    assert "neither a model folder nor an installed or bundled model" in err
    # argparse errors too: one line, exit 2.
    res = run_cli("models", "--no-such-flag")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_debug_shows_traceback(tmp_path):
    res = run_cli("--debug", "inspect", str(tmp_path / "missing"))
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_help_and_models(capsys):
    assert cli.main([]) == 0
    assert "info" in capsys.readouterr().out
    assert cli.main(["models", "--pretrained"]) == 0


def test_device_policy():
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype("fp32") is torch.float32 and resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("auto", "cpu") in (torch.float32, torch.bfloat16)
    assert isinstance(prefers_channels_last("cpu"), bool)
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("fp8")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
