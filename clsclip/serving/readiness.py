"""Waiting for a started ``clsclip serve`` to accept requests: what its callers (scripts that
start a server, the benchmark, the tests) need before the first request."""

from __future__ import annotations

import time
import urllib.error
import urllib.request


def wait_until_ready(url: str, *, timeout_s: float = 60.0, poll_s: float = 0.1) -> bool:
    """Poll ``GET {url}/readyz`` until it answers 200 (the model is loaded and requests are
    accepted); False when ``timeout_s`` passes first. Connection errors and other statuses
    (503 while loading) are retried. Standard library only: clients need no HTTP package."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # not listening yet, or 503 (HTTPError is a URLError)
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
