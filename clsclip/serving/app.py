"""The HTTP API: ``POST /v1/segment``, ``GET /healthz``, ``/readyz``, ``/metrics`` and the
OpenAPI page; limits, load shedding, bearer-key access, and a graceful shutdown.

Built on FastAPI and uvicorn (well-kept, asynchronous, with OpenAPI for free); batching across
requests is `clsclip.serving.batcher` in front of `Segmenter.segment_batch`, so every request's
class-independent work is done once per image and the class vectors come from the segmenter's
one bounded cache.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime.
import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from clsclip.optional import require
from clsclip.serving.batcher import Batcher, QueueFull, ShuttingDown
from clsclip.serving.metrics import Metrics
from clsclip.serving.work import (
    FORMATS,
    ApiError,
    Limits,
    ServeRequest,
    answer_json,
    decode_image,
    label_png,
    parse_boxes,
    parse_classes,
    parse_min_score,
    parse_threshold,
)

logger = logging.getLogger(__name__)
API_PATHS = ("/v1/", "/metrics")
"""Paths that need the API key (when one is set); the probes and the docs do not."""


SEGMENT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["image", "classes"],
            "properties": {
                "image": {"type": "string", "format": "binary",
                          "description": "the image file (PNG, JPEG, WebP, TIFF, ...)"},
                "classes": {"type": "string", "example": '["dog", "grass"]',
                            "description": "a JSON list of class names or class specs "
                            '({"name": "dog", "prompts": [...], "negatives": [...]}), '
                            "or an object from names to prompts"},
                "threshold": {"type": "string", "example": "0.5",
                              "description": "mask threshold in [0, 1] (default: the "
                              'model\'s), or a JSON object of some classes\' ({"dog": 0.4})'},
                "min_score": {"type": "number", "minimum": 0, "maximum": 1,
                              "description": "classes whose presence score is below it get "
                              "empty masks"},
                "boxes": {"type": "string", "example": '{"dog": [[10, 20, 200, 180]]}',
                          "description": "ClsCLIP+ boxes per class, JSON, in pixels"},
                "format": {"type": "string", "enum": ["json", "label_png"], "default": "json"},
            },
        }}},
    },
    "responses": {
        "200": {"description": "JSON masks (COCO RLE), or the palette label map as PNG",
                "content": {"image/png": {}}},
        "4XX": {"description": "a refused request: {\"error\": {\"code\", \"message\", "
                "\"limit\"}}"},
        "503": {"description": "overloaded or shutting down (Retry-After)"},
        "504": {"description": "no answer within the timeout"},
    },
}  # fmt: skip
"""The form of ``POST /v1/segment`` for the OpenAPI page (the route reads it itself, to answer
every fault with the server's own JSON errors)."""


@dataclass(frozen=True)
class ServeSettings:
    """How the server batches, sheds load and admits requests.

    Attributes:
        model_id: the model's name in answers (the ``--model`` given).
        max_batch: most requests per pass through the network.
        max_wait_ms: how long the first request of a batch waits for more.
        max_queue: most requests waiting; more get 503 with ``Retry-After`` at once.
        timeout_s: a request's time limit, from arrival to answer (504 past it).
        limits: body, pixel, class, name and box limits (`clsclip.serving.work.Limits`).
        api_key: when set, ``/v1/*`` and ``/metrics`` need ``Authorization: Bearer <key>``.
        cors_origins: origins allowed to call from browsers (none: CORS off).
    """

    model_id: str = "model"
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 64
    timeout_s: float = 30.0
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()


def create_app(
    segmenter: Any, settings: ServeSettings | None = None, *, inference_thread: bool = True
) -> Any:
    """The FastAPI application serving ``segmenter`` (a `clsclip.Segmenter`).

    Its batcher (``app.state.batcher``) runs the network on a thread of its own; with
    ``inference_thread=False`` the caller runs ``app.state.batcher.run_forever()`` on a thread
    of its choice instead (``clsclip serve`` uses its main thread, and uvicorn another). The
    app serves one lifespan: its shutdown stops the batcher for good.
    """
    fastapi = require("fastapi", "serve", purpose="clsclip serve")
    require("python_multipart", "serve", purpose="clsclip serve (multipart uploads)")
    responses = require("fastapi.responses", "serve")
    settings = settings or ServeSettings()
    metrics = Metrics()

    def run_batch(requests: Sequence[ServeRequest]) -> list[Any]:
        items = [(r.image, list(r.classes)) for r in requests]
        scores = {r.min_score for r in requests}
        if len(scores) > 1:  # min_score is one per call: requests that differ run alone
            return [_alone(segmenter, r) for r in requests]
        try:
            return list(
                segmenter.segment_batch(
                    items,
                    thresholds=[r.threshold for r in requests],
                    proposals=[_proposals(segmenter, r) for r in requests],
                    min_score=scores.pop(),
                )
            )
        except Exception:  # one bad request must not fail its batch: run them one by one
            return [_alone(segmenter, r) for r in requests]

    batcher = Batcher(
        run_batch, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue, on_batch=metrics.batch_size.observe,
        thread=inference_thread,
    )  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        logger.info("serving %s: %s", settings.model_id, segmenter)
        try:
            yield
        finally:  # uvicorn has finished the requests in flight: drain and stop
            batcher.close()

    app = fastapi.FastAPI(
        title="clsclip",
        summary="Zero-shot semantic segmentation: an image and class names in, masks out.",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization"],
        )
    app.add_middleware(_Guard, settings=settings, metrics=metrics, responses=responses)

    @app.exception_handler(ApiError)
    async def api_error(request: Any, error: ApiError) -> Any:
        return _error_response(responses, error)

    @app.exception_handler(Exception)
    async def internal_error(request: Any, error: Exception) -> Any:
        logger.error("internal error: %r", error)
        return _error_response(responses, ApiError(500, "internal", "the server failed on this "
                                                   "request; see its log"))  # fmt: skip

    @app.exception_handler(_BodyTooLarge)
    async def body_too_large(request: Any, error: _BodyTooLarge) -> Any:
        return _error_response(responses, _too_large(settings))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Any:
        """The model is loaded and requests are accepted."""
        if not batcher.accepting:
            return responses.JSONResponse({"status": "not ready"}, status_code=503)
        return {"status": "ready", "model": settings.model_id}

    @app.get("/metrics")
    async def prometheus() -> Any:
        """Prometheus text format: requests by status, latency, batch sizes, queue depth."""
        metrics.queue_depth.set(batcher.depth)
        body, content_type = metrics.render()
        return responses.Response(body, media_type=content_type)

    from starlette.requests import Request

    @app.post("/v1/segment", openapi_extra=SEGMENT_OPENAPI)
    async def segment(request: Request) -> Any:
        """Multipart form: ``image`` (the file), ``classes`` (a JSON list of names), optional
        ``threshold``, ``boxes`` (``{"dog": [[x0, y0, x1, y1], ...]}``, ClsCLIP+) and
        ``format`` (``json`` or ``label_png``)."""
        started = time.perf_counter()
        try:
            batcher.check_room()  # shed before reading and decoding the upload
            with batcher.arriving():
                work = await _parse(request, settings.limits)
                future = batcher.submit(work)
            remaining = settings.timeout_s - (time.perf_counter() - started)
            result = await asyncio.wait_for(asyncio.wrap_future(future), max(remaining, 0.0))
        except QueueFull as e:
            raise ApiError(
                503, "overloaded", f"the server is busy ({e}); retry", "max_queue"
            ) from e
        except ShuttingDown as e:
            raise ApiError(503, "shutting_down", str(e)) from e
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"no answer within {settings.timeout_s:g} s",
                           "timeout_s") from None  # fmt: skip
        if isinstance(result, ApiError):
            raise result
        from starlette.concurrency import run_in_threadpool

        if work.format == "label_png":
            return responses.Response(await run_in_threadpool(label_png, result),
                                      media_type="image/png")  # fmt: skip
        return await run_in_threadpool(answer_json, result, settings.model_id)

    return app


def _proposals(segmenter: Any, request: ServeRequest) -> Any:
    """The request's boxes, or else the segmenter's own proposer (none for plain ClsCLIP)."""
    return request.boxes if request.boxes is not None else segmenter.proposer


def _alone(segmenter: Any, request: ServeRequest) -> Any:
    """One request by itself, after its batch failed: its answer, a 422 when the fault is the
    request's own (a name too long to tokenize), or the exception (500) that it alone gets."""
    try:
        return segmenter.segment_batch(
            [(request.image, list(request.classes))], thresholds=[request.threshold],
            proposals=[_proposals(segmenter, request)], min_score=request.min_score,
        )[0]  # fmt: skip
    except (ValueError, TypeError) as e:
        return ApiError(422, "bad_request", str(e))
    except Exception as e:
        logger.exception("a request failed")
        return e


async def _parse(request: Any, limits: Limits) -> ServeRequest:
    """The form, read within the body limit and checked; `ApiError` names what is wrong."""
    from starlette.concurrency import run_in_threadpool

    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        sent = content_type or "nothing"
        raise ApiError(415, "wrong_content_type",
                       f"send multipart/form-data (image, classes), not {sent}")  # fmt: skip
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=limits.max_body_bytes)
    except _BodyTooLarge:
        raise
    except Exception as e:  # a truncated or malformed body
        raise ApiError(400, "bad_form", f"cannot read the multipart form: {e}") from None
    upload = form.get("image")
    if upload is None or isinstance(upload, str):
        raise ApiError(422, "missing_field", "the form needs an 'image' file")
    data = await upload.read()
    classes = parse_classes(_text(form, "classes"), limits)
    threshold = parse_threshold(_text(form, "threshold"))
    if isinstance(threshold, dict):
        unknown = sorted(set(threshold) - {spec.name for spec in classes})
        if unknown:
            raise ApiError(422, "bad_threshold", f"thresholds given for {unknown}, which are "
                           "not among the classes")  # fmt: skip
    min_score = parse_min_score(_text(form, "min_score"))
    boxes = parse_boxes(_text(form, "boxes"), [spec.name for spec in classes], limits)
    output = _text(form, "format") or "json"
    if output not in FORMATS:
        raise ApiError(422, "bad_format", f"format must be one of {list(FORMATS)}, got {output!r}")
    image = await run_in_threadpool(decode_image, data, limits)
    return ServeRequest(image, classes, threshold, boxes, output, min_score)


def _text(form: Any, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(422, "bad_field", f"{name!r} must be a text field, not a file")
    return value


class _BodyTooLarge(Exception):
    pass


def _too_large(settings: ServeSettings) -> ApiError:
    limit = settings.limits.max_body_bytes
    return ApiError(413, "body_too_large", f"the request body is over {limit} bytes",
                    "max_body_bytes")  # fmt: skip


def _error_response(responses: Any, error: ApiError) -> Any:
    """A JSON error: ``{"error": {"code", "message", "limit"}}``, with ``Retry-After`` on 503
    and ``WWW-Authenticate`` on 401."""
    headers = {}
    if error.status == 503:
        headers["Retry-After"] = "1"
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return responses.JSONResponse(error.body(), status_code=error.status, headers=headers)


class _Guard:
    """ASGI middleware: the API key, the body limit (declared or streamed), `ApiError`s as
    JSON, and the request metrics."""

    def __init__(self, app: Any, settings: ServeSettings, metrics: Metrics, responses: Any) -> None:
        self.app, self.settings, self.metrics, self.responses = app, settings, metrics, responses

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:  # fmt: skip
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, path = time.perf_counter(), scope["path"]
        status = {"code": 500}

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            self._check_key(scope, path)
            receive = self._limited(scope, receive)
            await self.app(scope, receive, sending)
        except ApiError as e:
            await self._error(e, scope, receive, sending)
        except _BodyTooLarge:
            await self._error(_too_large(self.settings), scope, receive, sending)
        finally:
            if path.startswith("/v1/"):
                self.metrics.observe(status["code"], time.perf_counter() - started)

    def _check_key(self, scope: dict[str, Any], path: str) -> None:
        key = self.settings.api_key
        if key is None or not path.startswith(API_PATHS):
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:], key)):
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <key>")

    def _limited(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]]) -> Any:
        limit = self.settings.limits.max_body_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _BodyTooLarge()
        seen = {"bytes": 0}

        async def limited() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > limit:
                    raise _BodyTooLarge()
            return message

        return limited

    async def _error(self, error: ApiError, scope: Any, receive: Any, send: Any) -> None:
        response = _error_response(self.responses, error)
        try:
            await response(scope, receive, send)
        except RuntimeError:  # the response had started: nothing more can be said
            logger.warning("could not send %s after the response started", error.code)
