"""Each integration without its tool: one ImportError naming the extra that brings it."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "package", "extra"),
    [("fiftyone", "fiftyone", "fiftyone"), ("autodistill", "autodistill", "autodistill")],
)
def test_a_missing_tool_names_its_extra(module: str, package: str, extra: str) -> None:
    code = (
        f"import sys; sys.modules[{package!r}] = None\n"
        "try:\n"
        f"    import clsclip.integrations.{module}\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == (
        f'clsclip.integrations.{module} needs {package}: pip install "clsclip[{extra}]"'
    )
