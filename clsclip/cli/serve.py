"""``clsclip serve``: the HTTP API for apps (see docs/serving.md; extra ``clsclip[serve]``)."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import threading
from typing import Any

from clsclip.cli.common import USER_ERRORS, fail

logger = logging.getLogger("clsclip.cli")


def add_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve a model over HTTP (POST /v1/segment; needs clsclip[serve])",
        description="An HTTP API on FastAPI and uvicorn: POST /v1/segment (multipart image and "
        "classes), GET /healthz, /readyz, /metrics (Prometheus) and /docs. Concurrent requests "
        "are batched; a full queue answers 503 at once; SIGTERM finishes what is in flight and "
        "exits 0. See docs/serving.md.",
    )
    serve.add_argument("--model", required=True, help="a model folder, Hub repo id or export")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: any free)")
    serve.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: auto)")
    serve.add_argument(
        "--backend", choices=("torch", "onnxruntime"), default="torch",
        help="torch, or onnxruntime for a folder written by clsclip export (default: torch)",
    )  # fmt: skip
    serve.add_argument(
        "--precision", choices=("fp32", "bf16", "fp16", "int8", "auto"), default="fp32",
        help="as for clsclip segment (torch backend)",
    )  # fmt: skip
    serve.add_argument(
        "--max-batch", type=int, default=8, help="most requests per network pass (default: 8)"
    )
    serve.add_argument(
        "--max-wait-ms", type=float, default=10.0,
        help="how long the first request of a batch waits for more (default: 10)",
    )  # fmt: skip
    serve.add_argument(
        "--max-queue", type=int, default=64,
        help="most requests waiting; more are answered 503 with Retry-After (default: 64)",
    )  # fmt: skip
    serve.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per request before 504 (default: 30)"
    )
    serve.add_argument(
        "--max-body-mb", type=float, default=20.0, help="request body limit (default: 20 MB)"
    )
    serve.add_argument(
        "--max-image-pixels", type=int, default=40_000_000,
        help="image limit in pixels, read from the header before decoding (default: 40M)",
    )  # fmt: skip
    serve.add_argument(
        "--max-classes", type=int, default=100, help="class names per request (default: 100)"
    )
    serve.add_argument(
        "--max-name-chars", type=int, default=200, help="characters per name (default: 200)"
    )
    serve.add_argument(
        "--max-boxes", type=int, default=100, help="ClsCLIP+ boxes per request (default: 100)"
    )
    serve.add_argument(
        "--max-inflight-mb", type=float, default=None,
        help="upload bytes all requests may hold at once while being read; more: 503 "
        "(default: 4 bodies at --max-body-mb, at least 64 MB)",
    )  # fmt: skip
    serve.add_argument(
        "--max-inflight-pixels", type=int, default=None,
        help="decoded pixels all requests may hold at once; more: 503 (default: 2 x "
        "--max-image-pixels)",
    )  # fmt: skip
    serve.add_argument(
        "--api-key-env", default=None, metavar="VAR",
        help="require Authorization: Bearer <the value of environment variable VAR>",
    )  # fmt: skip
    serve.add_argument(
        "--cors-origin", action="append", default=[], metavar="ORIGIN",
        help="allow browser calls from ORIGIN (repeatable; default: CORS off)",
    )  # fmt: skip
    serve.add_argument("--threads", type=int, default=None, help="torch threads")
    serve.set_defaults(run=run, exit_at_once=True)


def settings_from_args(args: argparse.Namespace) -> Any:
    """`ServeSettings` from the flags; `ValueError` naming a flag that is out of range."""
    from clsclip.serving import Limits, ServeSettings

    for flag, value in (("--max-batch", args.max_batch), ("--max-queue", args.max_queue),
                        ("--max-classes", args.max_classes), ("--max-boxes", args.max_boxes),
                        ("--max-name-chars", args.max_name_chars),
                        ("--max-image-pixels", args.max_image_pixels)):  # fmt: skip
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    numbers = [("--timeout", args.timeout), ("--max-body-mb", args.max_body_mb)]
    if args.max_inflight_mb is not None:
        numbers.append(("--max-inflight-mb", args.max_inflight_mb))
    for flag, number in numbers:
        if not (number > 0 and math.isfinite(number)):
            raise ValueError(f"{flag} must be a positive finite number, got {number}")
    if args.max_inflight_pixels is not None and args.max_inflight_pixels < 1:
        raise ValueError(
            f"--max-inflight-pixels must be at least 1, got {args.max_inflight_pixels}"
        )
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    if not 0 <= args.max_wait_ms <= 10_000:
        raise ValueError(f"--max-wait-ms must be in [0, 10000], got {args.max_wait_ms}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    api_key = None
    if args.api_key_env is not None:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise ValueError(f"--api-key-env {args.api_key_env}: that variable is not set")
    limits = Limits(
        max_body_bytes=int(args.max_body_mb * 2**20),
        max_image_pixels=args.max_image_pixels,
        max_classes=args.max_classes,
        max_name_chars=args.max_name_chars,
        max_boxes=args.max_boxes,
    )
    return ServeSettings(
        model_id=args.model, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue, timeout_s=args.timeout, limits=limits, api_key=api_key,
        cors_origins=tuple(args.cors_origin),
        max_inflight_bytes=None if args.max_inflight_mb is None
        else int(args.max_inflight_mb * 2**20),
        max_inflight_pixels=args.max_inflight_pixels,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from clsclip.optional import require

    try:
        settings = settings_from_args(args)
        uvicorn = require("uvicorn", "serve", purpose="clsclip serve")
        import torch

        from clsclip.segmenter import Segmenter
        from clsclip.serving import create_app

        if args.threads is not None:
            torch.set_num_threads(args.threads)
        segmenter = Segmenter.from_pretrained(
            args.model, device=args.device, backend=args.backend, precision=args.precision
        )
        app = create_app(segmenter, settings, inference_thread=False)
    except USER_ERRORS as e:
        return fail(e)
    config = uvicorn.Config(
        app, log_level="info" if args.verbose else "warning", access_log=args.verbose,
        timeout_graceful_shutdown=max(settings.timeout_s, 1.0),
    )  # fmt: skip
    try:
        sock = _listen(args.host, args.port)
    except OSError as e:
        return fail(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}")
    port = sock.getsockname()[1]
    # stdout, for scripts that start the server and wait for its address (--port 0)
    print(f"clsclip serve: listening on http://{args.host}:{port}", flush=True)
    return _serve(uvicorn.Server(config), sock, app.state.batcher)


def _serve(server: Any, sock: socket.socket, batcher: Any) -> int:
    """uvicorn on a thread, the network on this (main) thread: torch's CPU kernels run slower
    on other threads (MKL's dynamic threading, malloc arenas), and the signals arrive here.

    SIGTERM or Ctrl-C: uvicorn stops accepting and finishes the requests in flight, the app's
    shutdown closes the batcher once its queue is done, `run_forever` returns, exit 0."""
    stopped: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stopped.append(signum)
        server.should_exit = True
        if len(stopped) > 1:  # a second signal: do not wait for the requests in flight
            server.force_exit = True

    def run_server() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException:
            logger.exception("the HTTP server failed")
        finally:
            batcher.close(timeout=0)  # lets run_forever return however uvicorn ended

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    http = threading.Thread(target=run_server, name="clsclip-http")
    try:
        http.start()
        batcher.run_forever()
        http.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if not server.started:
        return fail("the server did not start (see the log above)")
    logger.info("stopped%s", f" on signal {stopped[0]}" if stopped else "")
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv6 for an address with a colon), bound before the server
    starts so that ``--port 0`` can be reported and connections wait in the backlog."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Connections inherit it: an answer's head and body leave at once, instead of the body
    # waiting for the client's delayed ACK (40 ms per keep-alive request on Linux).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
