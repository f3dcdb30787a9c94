"""The batcher on its own: gathering, waiting only for requests on their way, the bounded
queue, cancelled work, failures, and draining on close."""

from __future__ import annotations

import threading
import time

import pytest

from clsclip.serving.batcher import Batcher, QueueFull, ShuttingDown
from tests.conftest import wait_for


class Recorder:
    """A ``run_batch`` that records its batches and can be held closed."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, payloads):
        self.entered.set()
        self.gate.wait(10)
        self.batches.append(list(payloads))
        return [p * 10 if p >= 0 else ValueError(f"bad {p}") for p in payloads]


def test_requests_that_wait_together_go_together() -> None:
    run = Recorder()
    batcher = Batcher(run, max_batch=3, max_wait_ms=0, max_queue=10)
    run.gate.clear()
    first = batcher.submit(0)
    assert run.entered.wait(60)  # the first batch is running, alone
    futures = [batcher.submit(i) for i in range(1, 6)]
    assert batcher.depth == 5
    run.gate.set()
    assert [f.result(5) for f in [first, *futures]] == [0, 10, 20, 30, 40, 50]
    assert run.batches == [[0], [1, 2, 3], [4, 5]]
    batcher.close()


def test_a_lone_request_does_not_wait_out_max_wait() -> None:
    """Nothing else is arriving: it runs at once. Were it to wait out max_wait (10 minutes),
    the 60 s result would time out; no bound on a loaded machine's speed is needed."""
    batcher = Batcher(Recorder(), max_batch=8, max_wait_ms=600_000, max_queue=10)
    assert batcher.submit(1).result(60) == 10
    batcher.close()


def test_a_batch_waits_for_a_request_on_its_way() -> None:
    run = Recorder()
    batcher = Batcher(run, max_batch=8, max_wait_ms=3000, max_queue=10)
    with batcher.arriving():  # being read and decoded
        first = batcher.submit(1)
        time.sleep(0.3)
        second = batcher.submit(2)
    assert (first.result(5), second.result(5)) == (10, 20)
    assert run.batches == [[1, 2]]
    batcher.close()


def test_the_queue_is_bounded_and_refuses_at_once() -> None:
    run = Recorder()
    run.gate.clear()
    batcher = Batcher(run, max_batch=1, max_wait_ms=0, max_queue=2)
    running = batcher.submit(0)
    assert run.entered.wait(60)
    waiting = [batcher.submit(1), batcher.submit(2)]
    with pytest.raises(QueueFull, match=r"2 requests are waiting \(--max-queue 2\)"):
        batcher.submit(3)
    with pytest.raises(QueueFull):
        batcher.check_room()
    assert not running.done()  # refused while the running batch is held: at once
    run.gate.set()
    assert [f.result(5) for f in [running, *waiting]] == [0, 10, 20]
    batcher.check_room()  # room again
    batcher.close()


def test_cancelled_requests_are_not_run() -> None:
    run = Recorder()
    run.gate.clear()
    batcher = Batcher(run, max_batch=4, max_wait_ms=0, max_queue=10)
    first = batcher.submit(0)
    assert run.entered.wait(60)
    gone, kept = batcher.submit(1), batcher.submit(2)
    assert gone.cancel()  # its client timed out before it ran
    run.gate.set()
    assert (first.result(5), kept.result(5)) == (0, 20)
    assert run.batches == [[0], [2]]
    batcher.close()


def test_failures_reach_their_own_requests() -> None:
    run = Recorder()
    batcher = Batcher(run, max_batch=4, max_wait_ms=0, max_queue=10)
    with pytest.raises(ValueError, match="bad -1"):
        batcher.submit(-1).result(5)
    assert batcher.submit(3).result(5) == 30

    def broken(payloads):
        raise RuntimeError("out of memory")

    failing = Batcher(broken, max_batch=4, max_wait_ms=0, max_queue=10)
    with pytest.raises(RuntimeError, match="out of memory"):
        failing.submit(1).result(5)
    failing.close()
    batcher.close()


def test_close_finishes_the_queue_then_refuses() -> None:
    run = Recorder()
    run.gate.clear()
    batcher = Batcher(run, max_batch=2, max_wait_ms=0, max_queue=10)
    futures = [batcher.submit(i) for i in range(5)]
    assert run.entered.wait(60)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    wait_for(lambda: not batcher.accepting, "the batcher stops accepting", timeout=60)
    with pytest.raises(ShuttingDown):
        batcher.submit(9)
    run.gate.set()
    closer.join(10)
    assert not closer.is_alive()
    assert [f.result(0) for f in futures] == [0, 10, 20, 30, 40]
