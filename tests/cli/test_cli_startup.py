"""Building the `kdlab` parser imports no torch: `kdlab list-configs`, `--help` and bad usage stay instant."""

from __future__ import annotations

import subprocess
import sys


def test_building_the_parser_imports_no_torch() -> None:
    code = "import sys; from kdlab.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_the_cli_default_k_is_the_library_default() -> None:
    from kdlab.cli.knn_index import DEFAULT_K as cli_default
    from kdlab.engine.knn_index import DEFAULT_K

    assert cli_default == DEFAULT_K
