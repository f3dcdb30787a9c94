"""ASGI middleware in front of every route: the API key, the body limit (declared or
streamed) and the in-flight upload budget, `ApiError`s as the server's JSON errors, and the
request metrics."""

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from clsclip.serving.admission import Budget, OverBudget
from clsclip.serving.form import ApiError, Limits
from clsclip.serving.metrics import Metrics

logger = logging.getLogger(__name__)
API_PATHS = ("/v1/", "/metrics")
"""Paths that need the API key (when one is set); the probes and the docs do not."""


class BodyTooLarge(Exception):
    """The request body went over ``max_body_bytes`` (413)."""


def too_large(limits: Limits) -> ApiError:
    limit = limits.max_body_bytes
    return ApiError(413, "body_too_large", f"the request body is over {limit} bytes",
                    "max_body_bytes")  # fmt: skip


def error_response(responses: Any, error: ApiError) -> Any:
    """A JSON error: ``{"error": {"code", "message", "limit"}}``, with ``Retry-After`` on 503
    and ``WWW-Authenticate`` on 401."""
    headers = {}
    if error.status == 503:
        headers["Retry-After"] = "1"
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return responses.JSONResponse(error.body(), status_code=error.status, headers=headers)


class Guard:
    """ASGI middleware: the API key, the body limit (declared or streamed), `ApiError`s as
    JSON, and the request metrics."""

    def __init__(self, app: Any, limits: Limits, api_key: str | None, metrics: Metrics,
                 responses: Any, budget: Budget) -> None:  # fmt: skip
        self.app, self.limits, self.metrics, self.responses = app, limits, metrics, responses
        self.budget = budget
        self.key = None if api_key is None else api_key.encode("utf-8")

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

        held = {"bytes": 0}
        try:
            self._check_key(scope, path)
            receive = self._limited(scope, receive, held)
            await self.app(scope, receive, sending)
        except ApiError as e:
            await self._error(e, scope, receive, sending)
        except BodyTooLarge:
            await self._error(too_large(self.limits), scope, receive, sending)
        except OverBudget as e:
            error = ApiError(503, "overloaded", f"the server is busy ({e}); retry", e.limit)
            await self._error(error, scope, receive, sending)
        finally:
            self.budget.give(held["bytes"])
            if path.startswith("/v1/"):
                self.metrics.observe(status["code"], time.perf_counter() - started)

    def _check_key(self, scope: dict[str, Any], path: str) -> None:
        """``Authorization: Bearer <key>`` (the scheme in any case, as RFC 7235 says), compared
        as bytes in constant time; a missing, doubled or malformed header is a 401."""
        if self.key is None or not path.startswith(API_PATHS):
            return
        given = [v for k, v in scope.get("headers") or [] if k == b"authorization"]
        if len(given) > 1:
            raise ApiError(401, "unauthorized", "send one Authorization header, not several")
        if not given:
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <key>")
        scheme, _, token = given[0].strip().partition(b" ")
        if not (scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)):
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <key>")

    def _limited(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], held: dict[str, int]
    ) -> Any:
        """``receive`` within the body limit, its bytes taken from the in-flight budget as they
        arrive (given back by `__call__` when the request ends)."""
        limit = self.limits.max_body_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge()

        async def limited() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                if held["bytes"] + size > limit:
                    raise BodyTooLarge()
                self.budget.take(size)
                held["bytes"] += size
            return message

        return limited

    async def _error(self, error: ApiError, scope: Any, receive: Any, send: Any) -> None:
        response = error_response(self.responses, error)
        try:
            await response(scope, receive, send)
        except RuntimeError:  # the response had started: nothing more can be said
            logger.warning("could not send %s after the response started", error.code)
