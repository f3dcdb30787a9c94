"""The HTTP API: ``POST /v1/segment``, ``GET /healthz``, ``/readyz``, ``/metrics`` and the
OpenAPI page; limits, load shedding, bearer-key access, and a graceful shutdown.

Built on FastAPI and uvicorn (well-kept, asynchronous, with OpenAPI for free); batching across
requests is `clsclip.serving.batcher` in front of `Segmenter.segment_batch`, so every request's
class-independent work is done once per image and the class vectors come from the segmenter's
one bounded cache.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime.
import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from clsclip.optional import require
from clsclip.serving.admission import Budget, OverBudget
from clsclip.serving.answers import answer_json, label_png
from clsclip.serving.batcher import Batcher, QueueFull, ShuttingDown
from clsclip.serving.docs_pages import add_docs_pages
from clsclip.serving.form import (
    SEGMENT_OPENAPI,
    ApiError,
    Limits,
    ServeRequest,
    decode_image,
    image_pixels,
    parse_fields,
)
from clsclip.serving.guard import BodyTooLarge, Guard, error_response, too_large
from clsclip.serving.metrics import Metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeSettings:
    """How the server batches, sheds load and admits requests.

    Attributes:
        model_id: the model's name in answers (the ``--model`` given).
        max_batch: most requests per pass through the network.
        max_wait_ms: how long the first request of a batch waits for more.
        max_queue: most requests waiting; more get 503 with ``Retry-After`` at once.
        timeout_s: a request's time limit, from arrival to answer (504 past it).
        limits: body, pixel, class, name and box limits (`clsclip.serving.form.Limits`).
        api_key: when set, ``/v1/*`` and ``/metrics`` need ``Authorization: Bearer <key>``.
        cors_origins: origins allowed to call from browsers (none: CORS off).
        max_inflight_bytes: upload bytes all requests may hold at once while they are read
            (None: four bodies at the limit, at least 64 MiB).
        max_inflight_pixels: decoded pixels all requests may hold at once, from decoding to
            the answer (None: twice the image limit).
        max_decodes: images decoded at once (the rest wait their turn).
    """

    model_id: str = "model"
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 64
    timeout_s: float = 30.0
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_inflight_bytes: int | None = None
    max_inflight_pixels: int | None = None
    max_decodes: int = 2

    def budgets(self) -> tuple[Budget, Budget]:
        """The in-flight bounds on upload bytes and decoded pixels."""
        limits = self.limits
        upload = self.max_inflight_bytes or max(4 * limits.max_body_bytes, 64 * 2**20)
        pixels = self.max_inflight_pixels or 2 * limits.max_image_pixels
        return (Budget("max_inflight_bytes", upload, "bytes"),
                Budget("max_inflight_pixels", pixels, "pixels"))  # fmt: skip


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
        """One pass per min_score among the requests (it is one per `segment_batch` call);
        a group that fails runs one by one, so one bad request fails alone."""
        out: list[Any] = [None] * len(requests)
        groups: dict[float | None, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.min_score, []).append(i)
        for min_score, indices in groups.items():
            live = []
            for i in indices:  # a request whose client was answered 504 is never run
                if time.perf_counter() >= requests[i].deadline:
                    out[i] = _timeout()
                else:
                    live.append(i)
            if not live:
                continue
            group = [requests[i] for i in live]
            try:
                answers = segmenter.segment_batch(
                    [(r.image, list(r.classes)) for r in group],
                    thresholds=[r.threshold for r in group],
                    proposals=[_proposals(segmenter, r) for r in group],
                    min_score=min_score,
                )
            except Exception:  # one by one; a request timed out meanwhile is not run
                answers = [
                    _timeout() if time.perf_counter() >= r.deadline else _alone(segmenter, r)
                    for r in group
                ]
            for i, answer in zip(live, answers, strict=True):
                out[i] = answer
        return out

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
            answering.shutdown(wait=False)

    app = fastapi.FastAPI(
        title="clsclip",
        summary="Zero-shot semantic segmentation: an image and class names in, masks out.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    add_docs_pages(app)  # served from this host: the pages work offline
    app.state.batcher = batcher
    upload_budget, pixel_budget = settings.budgets()
    decodes = asyncio.Semaphore(settings.max_decodes)
    app.add_middleware(Guard, limits=settings.limits, api_key=settings.api_key,
                       metrics=metrics, responses=responses, budget=upload_budget)  # fmt: skip
    if settings.cors_origins:  # outermost: preflights before the key, CORS headers on errors
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization"],
        )

    @app.exception_handler(ApiError)
    async def api_error(request: Any, error: ApiError) -> Any:
        return error_response(responses, error)

    @app.exception_handler(Exception)
    async def internal_error(request: Any, error: Exception) -> Any:
        logger.error("internal error: %r", error)
        return error_response(responses, ApiError(500, "internal", "the server failed on this "
                                                   "request; see its log"))  # fmt: skip

    from starlette.exceptions import HTTPException

    @app.exception_handler(HTTPException)
    async def http_error(request: Any, error: Any) -> Any:
        """Starlette's own refusals (404 for an unknown path, 405 for a wrong method) in the
        server's error format."""
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(error.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {error.detail}"
        if error.status_code == 405:
            message += " (POST /v1/segment; GET /healthz, /readyz, /metrics, /docs)"
        return error_response(responses, ApiError(error.status_code, code, message))

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Any, error: BodyTooLarge) -> Any:
        return error_response(responses, too_large(settings.limits))

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

    from concurrent.futures import ThreadPoolExecutor

    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request

    answering = ThreadPoolExecutor(settings.max_decodes, thread_name_prefix="clsclip-answer")

    @app.post("/v1/segment", openapi_extra=SEGMENT_OPENAPI)
    async def segment(request: Request) -> Any:
        """Multipart form: ``image`` (the file), ``classes`` (a JSON list of names), optional
        ``threshold``, ``boxes`` (``{"dog": [[x0, y0, x1, y1], ...]}``, ClsCLIP+) and
        ``format`` (``json`` or ``label_png``)."""
        started = time.perf_counter()
        deadline = started + settings.timeout_s
        try:
            batcher.check_room()  # shed before reading and decoding the upload
            fields, data = await _read_form(request, settings.limits)
            pixels = image_pixels(data, settings.limits)
            pixel_budget.take(pixels)  # given back when the answer is built, however it ends
            building: Any = None
            try:
                with batcher.arriving():  # admitted and read: now it is on its way
                    async with decodes:
                        image = await run_in_threadpool(decode_image, data, settings.limits)
                    del data
                    work = ServeRequest(image, fields.classes, fields.threshold, fields.boxes,
                                        fields.format, fields.min_score, deadline)  # fmt: skip
                    future = batcher.submit(work)
                result = await asyncio.wait_for(asyncio.wrap_future(future), _left(deadline))
                if isinstance(result, BaseException):  # an ApiError of its own, or a fault
                    raise result
                build = _png_answer if work.format == "label_png" else _json_answer
                building = answering.submit(build, result, settings.model_id)
                building.add_done_callback(lambda _: pixel_budget.give(pixels))
                # building the answer counts in the time limit too
                answer = await asyncio.wait_for(asyncio.wrap_future(building), _left(deadline))
            finally:
                if building is None:
                    pixel_budget.give(pixels)
        except (QueueFull, OverBudget) as e:
            limit = e.limit if isinstance(e, OverBudget) else "max_queue"
            raise ApiError(503, "overloaded", f"the server is busy ({e}); retry", limit) from e
        except ShuttingDown as e:
            raise ApiError(503, "shutting_down", str(e)) from e
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"no answer within {settings.timeout_s:g} s",
                           "timeout_s") from None  # fmt: skip
        if work.format == "label_png":
            return responses.Response(answer, media_type="image/png")
        return answer

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


def _left(deadline: float) -> float:
    return max(deadline - time.perf_counter(), 0.0)


def _timeout() -> ApiError:
    return ApiError(504, "timeout", "no answer within the time limit", "timeout_s")


def _json_answer(result: Any, model_id: str) -> Any:
    return answer_json(result, model_id)


def _png_answer(result: Any, model_id: str) -> Any:
    return label_png(result)


async def _read_form(request: Any, limits: Limits) -> tuple[Any, bytes]:
    """The form's checked text fields (`clsclip.serving.form.Fields`, parsed off the event
    loop) and the image's bytes, read within the body limit and, for text fields, within what
    the other limits allow (`Limits.max_text_bytes`); `ApiError` names what is wrong."""
    from starlette.concurrency import run_in_threadpool

    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        sent = content_type or "nothing"
        raise ApiError(415, "wrong_content_type",
                       f"send multipart/form-data (image, classes), not {sent}")  # fmt: skip
    try:
        form = await request.form(max_files=1, max_fields=8,
                                  max_part_size=limits.max_text_bytes)  # fmt: skip
    except BodyTooLarge:
        raise
    except Exception as e:  # a truncated or malformed body, a text field over its bound
        message = str(e)
        if "Part exceeded maximum size" in message:
            raise ApiError(413, "field_too_large", f"a text field is over "
                           f"{limits.max_text_bytes} bytes, more than the class, name and box "
                           "limits allow", "max_classes") from None  # fmt: skip
        raise ApiError(400, "bad_form", f"cannot read the multipart form: {message}") from None
    upload = form.get("image")
    if upload is None or isinstance(upload, str):
        raise ApiError(422, "missing_field", "the form needs an 'image' file")
    texts = {name: _text(form, name) for name in ("classes", "threshold", "min_score", "boxes",
                                                   "format")}  # fmt: skip
    fields = await run_in_threadpool(parse_fields, texts, limits)
    return fields, await upload.read()


def _text(form: Any, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(422, "bad_field", f"{name!r} must be a text field, not a file")
    return value
