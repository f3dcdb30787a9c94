"""A real ``clsclip serve`` process on 127.0.0.1 for the tests, and a client for it."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from clsclip.serving.readiness import wait_until_ready

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    """A running server: its process, base URL, API key, and the lines it logged."""

    process: subprocess.Popen[str]
    url: str
    key: str | None
    log: list[str]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, headers=self.headers(), timeout=60, **kwargs)

    def segment(
        self, image: bytes, classes: Any, *, client: httpx.Client | None = None, **fields: Any
    ) -> httpx.Response:
        data = {"classes": classes if isinstance(classes, str) else json.dumps(classes)}
        data.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()})
        files = {"image": ("image.png", image, "image/png")}
        post = client.post if client is not None else httpx.post
        return post(
            self.url + "/v1/segment", files=files, data=data, headers=self.headers(), timeout=120
        )

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def terminate(self, timeout: float = 120) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


@contextmanager
def running_server(
    model: Path, *flags: str, key: str | None = None, gate: Path | None = None
) -> Iterator[Server]:
    """``clsclip serve --model MODEL --port 0 FLAGS`` until the block ends (then SIGTERM).
    ``gate``: while that file exists, the server's network passes wait (tests/serving/gate)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    if gate is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent / "gate"), str(ROOT)])
        env["CLSCLIP_TEST_GATE"] = str(gate)
    argv = ["serve", "--model", str(model), "--port", "0", "--device", "cpu", *flags]
    if key is not None:
        env["CLSCLIP_TEST_KEY"] = key
        argv += ["--api-key-env", "CLSCLIP_TEST_KEY"]
    process = subprocess.Popen(
        [sys.executable, "-m", "clsclip", *argv],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    log: list[str] = []
    url: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log.append(line)
            if "listening on " in line and not url:
                url.append(line.rsplit(" ", 1)[1].strip())
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(120) or not url:
        process.kill()
        raise RuntimeError("the server did not start:\n" + "".join(log))
    server = Server(process, url[0], key, log)
    if not wait_until_ready(server.url, timeout_s=60):
        process.kill()
        raise RuntimeError("the server never became ready:\n" + "".join(log))
    try:
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def png_bytes(height: int, width: int, seed: int = 0, mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def metric(text: str, sample: str) -> float:
    """The value of one sample of the Prometheus text (``name`` or ``name{labels}``)."""
    for line in text.splitlines():
        if not line.startswith("#") and line.rsplit(" ", 1)[0] == sample:
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(sample)
