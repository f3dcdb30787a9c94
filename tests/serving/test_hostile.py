"""The server against hostile and careless clients: huge or deep fields, odd keys and headers,
browsers, mixed batches, slow answers and stalled uploads. Every answer that is not 200 is the
documented ``{"error": {...}}`` with the right status, and the server goes on."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from clsclip import Segmenter
from clsclip.serving.admission import Budget, OverBudget
from clsclip.serving.answers import masks_of
from tests.serving.server import png_bytes, running_server

KEY = "clé-secrète-🔑"  # not ASCII: compared as UTF-8 bytes
ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def server(saved_model: Path):
    flags = ("--max-classes", "20", "--max-name-chars", "40", "--max-boxes", "4",
             "--cors-origin", ORIGIN, "--max-wait-ms", "50")  # fmt: skip
    with running_server(saved_model, *flags, key=KEY) as running:
        yield running


@pytest.fixture(scope="module")
def local(saved_model: Path) -> Segmenter:
    return Segmenter.from_pretrained(saved_model, device="cpu")


def _auth(value: bytes) -> dict[str, bytes]:
    return {"authorization": value}


def _segment(server, image: bytes, classes, **fields) -> httpx.Response:
    """`Server.segment` with the UTF-8 key (httpx encodes str headers as ASCII)."""
    data = {"classes": classes if isinstance(classes, str) else json.dumps(classes)}
    data.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()})
    return httpx.post(
        server.url + "/v1/segment",
        files={"image": ("a.png", image)},
        data=data,
        headers=_auth(b"Bearer " + KEY.encode()),
        timeout=120,
    )


def _code(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    return body["message"]


def test_keys_are_compared_as_bytes_and_the_scheme_in_any_case(server) -> None:
    small, url = png_bytes(20, 20), server.url + "/v1/segment"
    files = {"image": ("a.png", small, "image/png")}
    data = {"classes": '["dog"]'}
    right = KEY.encode("utf-8")
    for header in (b"Bearer " + right, b"bearer " + right, b"BEARER  " + right):
        response = httpx.post(url, files=files, data=data, headers=_auth(header), timeout=60)
        assert response.status_code == 200, (header, response.text)
    for header in ("Bearer clé".encode(), b"Bearer \xff\xfe", b"Basic " + right, right):
        response = httpx.post(url, files=files, data=data, headers=_auth(header), timeout=60)
        _code(response, 401, "unauthorized")  # never a 500
    doubled = [("authorization", b"Bearer " + right), ("authorization", b"Bearer x")]
    response = httpx.post(url, files=files, data=data, headers=doubled, timeout=60)
    assert "not several" in _code(response, 401, "unauthorized")


def test_a_browser_can_call_it_with_a_key(server) -> None:
    """The preflight needs no key (browsers send none), and refusals carry CORS headers, so a
    page can read them."""
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization"}  # fmt: skip
    response = httpx.options(server.url + "/v1/segment", headers=preflight)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    refused = httpx.post(server.url + "/v1/segment", headers={"Origin": ORIGIN},
                         files={"image": ("a.png", b"x", "image/png")})  # fmt: skip
    _code(refused, 401, "unauthorized")
    assert refused.headers["access-control-allow-origin"] == ORIGIN
    too_big = httpx.post(server.url + "/v1/segment",
                         headers={**_auth(b"Bearer " + KEY.encode()), "origin": ORIGIN.encode()},
                         files={"image": ("a.png", b"\0" * (21 * 2**20), "image/png")})  # fmt: skip
    _code(too_big, 413, "body_too_large")
    assert too_big.headers["access-control-allow-origin"] == ORIGIN


def test_huge_and_deep_fields_are_4xx_before_any_work(server) -> None:
    small = png_bytes(20, 20)
    names = json.dumps([f"name {i}" for i in range(600_000)])  # 7 MB of names
    assert "field_too_large" in _segment(server, small, names).text
    _code(_segment(server, small, names), 413, "field_too_large")
    deep = "[" * 20_000 + "]" * 20_000  # within the field bound, past the parser's depth
    assert "nests too deep" in _code(_segment(server, small, deep), 422, "bad_classes")
    for threshold in ('{"dog": ' + "[" * 10_000 + "]" * 10_000 + "}", '{"dog": ' + "9" * 400 + "}"):
        _code(_segment(server, small, ["dog"], threshold=threshold), 422, "bad_threshold")
    _code(_segment(server, small, ["dog"], threshold="9" * 400), 422, "bad_threshold")
    huge = json.loads('{"dog": [[0, 0, 5, ' + "9" * 400 + "]]}")
    _code(_segment(server, small, ["dog"], boxes=huge), 422, "bad_boxes")
    message = _code(_segment(server, small, "red disc"), 422, "bad_classes")
    assert 'e.g. ["red disc"]' in message
    assert _segment(server, small, ["dog"]).status_code == 200
    assert httpx.get(server.url + "/healthz", timeout=60).status_code == 200


def test_not_an_image_never_leaks_an_object_repr(server) -> None:
    message = _code(_segment(server, b"plain text, not an image", ["dog"]), 415, "not_an_image")
    assert "0x" not in message and "<" not in message


def test_requests_with_their_own_min_score_share_batches_and_answer_right(server, local) -> None:
    image = png_bytes(37, 41, seed=3)
    cases = [(None, ["dog", "cat"]), (0.55, ["dog", "cat"]), (0.9, ["dog", "cat"]),
             (None, {"dog": {"negatives": ["a toy"]}, "cat": None})]  # fmt: skip
    barrier = threading.Barrier(len(cases) * 2)

    def send(case: tuple) -> httpx.Response:
        min_score, classes = case
        fields = {} if min_score is None else {"min_score": str(min_score)}
        barrier.wait()
        return _segment(server, image, classes, **fields)

    with ThreadPoolExecutor(len(cases) * 2) as pool:
        answers = list(pool.map(send, cases * 2))
    import io

    from PIL import Image

    for (min_score, classes), answer in zip(cases * 2, answers, strict=True):
        assert answer.status_code == 200, answer.text
        reference = local.segment(Image.open(io.BytesIO(image)), classes, min_score=min_score)
        masks = masks_of(answer.json())
        for name in reference.class_names:
            differ = masks[name] != reference.mask(name)
            near = np.abs(reference.prob(name) - reference.thresholds[name]) < 1e-5
            assert not (differ & ~near).any(), (min_score, name)


def test_building_the_answer_counts_in_the_timeout(local, monkeypatch) -> None:
    from starlette.testclient import TestClient

    from clsclip.serving import ServeSettings, app, create_app

    release = threading.Event()

    def slow_answer(result, model_id):
        release.wait(30)  # an answer that takes long to build (a huge image, many classes)
        return {"slow": True}

    monkeypatch.setattr(app, "answer_json", slow_answer)
    with TestClient(create_app(local, ServeSettings(timeout_s=1.0))) as client:
        response = client.post("/v1/segment", files={"image": ("a.png", png_bytes(20, 20))},
                               data={"classes": '["dog"]'})  # fmt: skip
        release.set()
    _code(response, 504, "timeout")


def test_a_stalled_upload_does_not_hold_back_other_requests(local) -> None:
    """A request counts as on its way (so a batch waits up to --max-wait-ms for it) only once
    its body is read: one client that stalls mid-upload must not make every request wait.
    Driven through the ASGI app with a body that stops after its first bytes; checked on the
    batcher's own count, as a condition, not on a clock."""
    import asyncio

    from clsclip.serving import ServeSettings, create_app

    app = create_app(local, ServeSettings(max_wait_ms=10_000))
    request = httpx.Request("POST", "http://test/v1/segment",
                            files={"image": ("a.png", png_bytes(20, 20), "image/png")},
                            data={"classes": '["dog"]'})  # fmt: skip
    body = request.read()
    headers = [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/segment", "raw_path": b"",
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("test", 80)}  # fmt: skip

    async def run() -> list[int]:
        release, asked = asyncio.Event(), asyncio.Event()
        sent: list[dict] = []
        calls = {"n": 0}

        async def receive() -> dict:
            calls["n"] += 1
            if calls["n"] == 1:
                return {"type": "http.request", "body": body[:100], "more_body": True}
            asked.set()  # the app waits for the rest of the body: the upload stalls here
            await release.wait()
            return {"type": "http.request", "body": body[100:], "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        task = asyncio.ensure_future(app(scope, receive, send))
        await asyncio.wait_for(asked.wait(), 60)
        stalled = app.state.batcher._arriving  # what a batch being gathered would wait for
        release.set()
        await asyncio.wait_for(task, 120)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        return [stalled, status]

    stalled, status = asyncio.run(run())
    app.state.batcher.close()
    assert stalled == 0  # before: 1, and every other request waited out --max-wait-ms
    assert status == 200


def test_the_in_flight_budget() -> None:
    budget = Budget("max_inflight_pixels", 100, "pixels")
    budget.take(150)  # a lone request larger than the budget is admitted
    with pytest.raises(OverBudget, match="--max-inflight-pixels") as refused:
        budget.take(1)
    assert refused.value.limit == "max_inflight_pixels"
    budget.give(150)
    with budget.held(60):
        with pytest.raises(OverBudget):
            budget.take(41)
        budget.take(40)
        budget.give(40)
    assert budget.used == 0


def test_a_served_training_free_model_never_mixes_clients(tmp_path) -> None:
    """Concurrent clients with the same names but other specs, batched together by a server
    of a training-free model (whose classes compete): each gets `segment`'s answer for its own
    spec (before: the first request's text for all, probabilities off by up to 0.93)."""
    import io

    from PIL import Image

    from clsclip.config import DenseClipConfig
    from tests.conftest import TINY_BACKBONE

    config = DenseClipConfig(backbone=TINY_BACKBONE, pretrained=None, image_size=64,
                             window_size=32, window_stride=16, method="naclip",
                             background_prompts=())  # fmt: skip
    import torch

    torch.manual_seed(4)
    model = Segmenter.from_config(config, device="cpu").save_pretrained(tmp_path / "naclip")
    local = Segmenter.from_pretrained(model, device="cpu")
    image = png_bytes(40, 52, seed=5)
    specs = [["dog", "cat"], [{"name": "dog", "prompts": ["a red car"]}, "cat"],
             {"dog": {"negatives": ["a toy"]}, "cat": ["kitten", "cat"]}]  # fmt: skip
    with running_server(model, "--max-wait-ms", "300", "--max-batch", "6") as served:
        barrier = threading.Barrier(len(specs) * 2)

        def send(spec) -> httpx.Response:
            barrier.wait()
            return served.segment(image, spec)

        with ThreadPoolExecutor(len(specs) * 2) as pool:
            answers = list(pool.map(send, specs * 2))
        batches = served.get("/metrics").text
    assert "clsclip_batch_size_count" in batches
    for spec, answer in zip(specs * 2, answers, strict=True):
        assert answer.status_code == 200, answer.text
        reference = local.segment(Image.open(io.BytesIO(image)), spec)
        masks = masks_of(answer.json())
        for entry in answer.json()["classes"]:
            name = entry["name"]
            differ = masks[name] != reference.mask(name)
            near = np.abs(reference.prob(name) - reference.thresholds[name]) < 1e-5
            assert not (differ & ~near).any(), (spec, name)
            inside = reference.prob(name)[reference.mask(name)]
            assert entry["score"] == pytest.approx(
                float(inside.mean()) if inside.size else 0.0, abs=1e-4
            )
