"""The API pages work offline: ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) load every asset
from the server itself, and a headless Chromium that can reach no other host renders both
(checked on its screenshots), with an API key set (the pages are public)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.serving.server import running_server

pytest.importorskip("fastapi_offline", reason="needs clsclip[serve]")

_ASSET = re.compile(r"""(?:src|href|url)\s*[=:(]\s*['"]?([^'")\s>]+)""")


def _assets(html: str) -> list[str]:
    return [u for u in _ASSET.findall(html) if not u.startswith(("#", "data:"))]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "needs Debian's chromium (apt-get install chromium); .ci/run installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _screenshot(browser: str, url: str, out: Path) -> np.ndarray:
    """``url`` rendered by headless Chromium that resolves no host but this one."""
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", f"--screenshot={out}",
         "--window-size=1200,900", "--virtual-time-budget=20000", url],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0 and out.is_file(), done.stderr[-2000:]
    return np.asarray(Image.open(out).convert("RGB")).astype(int)


def _near(pixels: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int((np.abs(pixels - np.asarray(colour)).max(axis=2) <= 12).sum())


def test_the_pages_load_everything_from_the_server(saved_model, tmp_path) -> None:
    with running_server(saved_model, key="secret") as server:
        for page in ("/docs", "/redoc"):
            answer = httpx.get(server.url + page, timeout=60)  # no key: public
            assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
            assets = _assets(answer.text)
            assert assets, answer.text
            for url in assets:
                assert url.startswith("/"), f"{page} loads {url} from another host"
                got = httpx.get(server.url + url, timeout=60)
                assert got.status_code == 200 and got.content, url
        assert httpx.get(server.url + "/openapi.json", timeout=60).json()["info"]["title"] == (
            "clsclip"
        )
        browser = _chromium()
        docs = _screenshot(browser, server.url + "/docs", tmp_path / "docs.png")
        redoc = _screenshot(browser, server.url + "/redoc", tmp_path / "redoc.png")
    # Swagger UI drew its operations: the GET badges' blue and the POST badge's green
    assert _near(docs, (97, 175, 254)) > 2000 and _near(docs, (73, 204, 144)) > 500
    # ReDoc drew its dark right-hand panel of samples over a good part of the page
    assert _near(redoc, (38, 50, 56)) > 0.1 * redoc.shape[0] * redoc.shape[1]
