"""Batching across requests: concurrent requests wait in one bounded queue, and a single
inference thread takes up to ``max_batch`` of them (or whatever came within ``max_wait_ms`` of
the first) through the network together.

The first request of a batch waits for company only while more are on their way (being read
and decoded, see `Batcher.arriving`): a lone client never pays ``max_wait_ms``."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """As many requests wait as the server allows: shed this one (503)."""


class ShuttingDown(RuntimeError):
    """The server stops accepting work."""


@dataclass
class Job:
    """One request's work and where its answer goes."""

    payload: Any
    future: Future[Any] = field(default_factory=Future)
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    """A bounded queue in front of one inference thread.

    Args:
        run_batch: does the work of a list of payloads; returns one answer (or exception) per
            payload, in order.
        max_batch: most requests per call of ``run_batch``.
        max_wait_ms: how long the first request of a batch waits for more.
        max_queue: most requests waiting; beyond it `submit` raises `QueueFull` at once.
        on_batch: called with the size of every batch (metrics).
        thread: run the batches on a thread of the batcher's own; False: the caller runs
            `run_forever` on a thread of its choice (``clsclip serve``: the main thread, where
            torch's CPU kernels run as fast as in a script).
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[Any]], Sequence[Any]],
        *,
        max_batch: int,
        max_wait_ms: float,
        max_queue: int,
        on_batch: Callable[[int], None] | None = None,
        thread: bool = True,
    ) -> None:
        self._run_batch = run_batch
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._waiting = 0
        self._arriving = 0
        self._lock = threading.Lock()
        self._accepting = True
        self._on_batch = on_batch
        self._thread: threading.Thread | None = None
        if thread:
            self._thread = threading.Thread(target=self.run_forever, name="clsclip-inference",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    @property
    def accepting(self) -> bool:
        """Whether new requests are taken (False once `close` began)."""
        return self._accepting

    @property
    def depth(self) -> int:
        """Requests waiting for the inference thread."""
        return self._waiting

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Mark a request that is being read and decoded: a batch being gathered waits for it
        (up to ``max_wait_ms``) rather than leaving without it."""
        with self._lock:
            self._arriving += 1
        try:
            yield
        finally:
            with self._lock:
                self._arriving -= 1

    def check_room(self) -> None:
        """`QueueFull` or `ShuttingDown` if a request arriving now would be refused (a cheap
        look before its upload is read; `submit` decides)."""
        with self._lock:
            self._check_room()

    def _check_room(self) -> None:
        if not self._accepting:
            raise ShuttingDown("the server is shutting down")
        if self._waiting >= self.max_queue:
            raise QueueFull(f"{self._waiting} requests are waiting (--max-queue {self.max_queue})")

    def submit(self, payload: Any) -> Future[Any]:
        """Queue one request; `QueueFull` or `ShuttingDown` at once when it cannot be."""
        job = Job(payload)
        with self._lock:  # queued under the lock: never behind `close`'s stop marker
            self._check_room()
            self._waiting += 1
            self._queue.put(job)
        return job.future

    def close(self, timeout: float = 60.0) -> None:
        """Stop accepting, finish what is queued and in flight, stop the thread."""
        with self._lock:
            self._accepting = False
            self._queue.put(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _take(self) -> list[Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        jobs = [first]
        deadline = time.perf_counter() + self.max_wait
        while len(jobs) < self.max_batch:
            remaining = deadline - time.perf_counter()
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                if remaining <= 0 or not self._arriving:  # nobody else is coming in time
                    break
                try:
                    job = self._queue.get(timeout=min(remaining, 0.002))
                except queue.Empty:
                    continue
            if job is None:  # closing: finish this batch, then stop
                self._queue.put(None)
                break
            jobs.append(job)
        return jobs

    def run_forever(self) -> None:
        """Run batches until `close` (then finish what is queued and return)."""
        while True:
            jobs = self._take()
            if jobs is None:
                return
            with self._lock:
                self._waiting -= len(jobs)
            live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            if not live:
                continue
            if self._on_batch is not None:
                self._on_batch(len(live))
            try:
                answers = self._run_batch([job.payload for job in live])
            except BaseException as e:  # the whole batch failed: every request hears why
                logger.exception("a batch of %d request(s) failed", len(live))
                for job in live:
                    job.future.set_exception(e)
                continue
            for job, answer in zip(live, answers, strict=True):
                if isinstance(answer, BaseException):
                    job.future.set_exception(answer)
                else:
                    job.future.set_result(answer)
