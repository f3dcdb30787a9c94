"""`wait_until_ready`: retries while the server loads (503) or is not listening, then answers."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from clsclip.serving.readiness import wait_until_ready


def test_waits_through_503_until_200() -> None:
    answers = [503, 503, 200]
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(answers.pop(0) if len(answers) > 1 else answers[0])
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        assert wait_until_ready(url, timeout_s=10, poll_s=0.01)
        assert paths == ["/readyz"] * 3
    finally:
        server.shutdown()


def test_false_when_nothing_listens_before_the_deadline() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    assert not wait_until_ready(f"http://127.0.0.1:{port}", timeout_s=0.3, poll_s=0.05)
    assert 0.3 <= time.monotonic() - started < 5
