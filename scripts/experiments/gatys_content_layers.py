"""Gatys on the offline random network with other content layers, measured like the default
by ``scripts/style_results.py`` (4 photos x 3 styles at 256 px, ``--methods gatys``).

    python scripts/experiments/gatys_content_layers.py relu2_1            # the old default
    python scripts/experiments/gatys_content_layers.py relu2_1,relu4_2
    python scripts/experiments/gatys_content_layers.py relu1_1,relu2_1,relu4_2   # the default

Writes OUT/style_results.md (default ``runs/gatys-layers/LAYERS``). Numbers: docs/style.md.
"""

import runpy
import sys
from pathlib import Path

import mmgen.style.transfer as transfer

ROOT = Path(__file__).resolve().parents[2]

if __name__ == "__main__":
    layers = sys.argv[1] if len(sys.argv) > 1 else "relu1_1,relu2_1,relu4_2"
    transfer.CONTENT_LAYERS["random"] = tuple(layers.split(","))
    out = ROOT / "runs" / "gatys-layers" / layers
    sys.argv = ["style_results.py", "--methods", "gatys", "--work", str(out / "work"),
                "--out", str(out)]
    runpy.run_path(str(ROOT / "scripts" / "style_results.py"), run_name="__main__")
