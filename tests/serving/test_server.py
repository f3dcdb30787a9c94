"""``clsclip serve`` as apps meet it: a real server process on 127.0.0.1 and a real HTTP client.

Answers are compared with `Segmenter.segment` in this process. A request served alone is the
same computation and must agree bit for bit; a request batched with others goes through matrix
products of another size, which round their last bit differently (about 1e-7), so its masks may
differ only at pixels whose probability is that close to the threshold (or, in the label map, to
another class's) -- and the tests check exactly that.
"""

from __future__ import annotations

import io
import json
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from clsclip import SegmentationResult, Segmenter
from clsclip.serving.answers import masks_of
from tests.conftest import wait_for
from tests.serving.server import metric, png_bytes, running_server

KEY = "test-key-0123"
LIMITS = ("--max-classes", "12", "--max-name-chars", "40", "--max-boxes", "4",
          "--max-image-pixels", "120000", "--max-body-mb", "0.25")  # fmt: skip
VOCAB = ["dog", "cat", "grass", "sky", "car", "tree", "person", "road", "boat", "bird"]
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def server(saved_model: Path):
    with running_server(saved_model, *LIMITS, "--max-wait-ms", "25", key=KEY) as running:
        yield running


@pytest.fixture(scope="module")
def local(saved_model: Path) -> Segmenter:
    return Segmenter.from_pretrained(saved_model, device="cpu")


def _image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _splitting_threshold(reference: SegmentationResult) -> float:
    """A threshold that cuts the first class's mask in about half (a random tiny model's
    probabilities all lie near 0.57, so the default 0.5 gives full masks)."""
    return round(float(np.median(reference.prob(reference.class_names[0]))), 6)


def _near_threshold(reference: SegmentationResult) -> np.ndarray:
    return np.stack([np.abs(reference.prob(n) - reference.threshold) < TOLERANCE
                     for n in reference.class_names]).any(0)  # fmt: skip


def _near_tie(reference: SegmentationResult) -> np.ndarray:
    probs = np.sort(reference.probs, axis=0)
    return (
        (probs[-1] - probs[-2] < TOLERANCE) if len(probs) > 1 else np.zeros(probs.shape[1:], bool)
    )


def assert_answer(answer: dict, reference: SegmentationResult, *, exact: bool) -> None:
    height, width = reference.size
    assert (answer["width"], answer["height"]) == (width, height)
    assert answer["threshold"] == pytest.approx(reference.threshold)
    assert [c["name"] for c in answer["classes"]] == list(reference.class_names)
    assert [c["label"] for c in answer["classes"]] == list(range(1, len(reference.class_names) + 1))
    masks = masks_of(answer)
    for entry in answer["classes"]:
        name, expected = entry["name"], reference.mask(entry["name"])
        differ = masks[name] != expected
        if exact:
            assert not differ.any(), name
        else:  # only at pixels within rounding of the threshold
            close = np.abs(reference.prob(name) - reference.threshold) < TOLERANCE
            assert not (differ & ~close).any(), name
        assert entry["area"] == int(masks[name].sum())
        inside = reference.prob(name)[masks[name]]
        assert entry["score"] == pytest.approx(
            float(inside.mean()) if inside.size else 0.0, abs=1e-5
        )


def assert_label_png(data: bytes, reference: SegmentationResult, *, exact: bool) -> None:
    image = _image(data)
    assert image.format == "PNG" and image.mode == "P"
    labels = np.asarray(image)
    differ = labels != reference.label_map
    if exact:
        assert not differ.any()
    else:
        assert not (differ & ~(_near_threshold(reference) | _near_tie(reference))).any()


def test_answers_equal_segment(server, local) -> None:
    cases = [((37, 53), ["dog", "cat"], "RGB"), ((64, 64), ["grass"], "L"),
             ((91, 40), ["sky", "car", "tree"], "RGBA"), ((20, 300), VOCAB[:5], "RGB")]  # fmt: skip
    for seed, ((height, width), names, mode) in enumerate(cases):
        data = png_bytes(height, width, seed, mode)
        threshold = _splitting_threshold(local.segment(_image(data), names))
        reference = local.segment(_image(data), names, threshold=threshold)
        assert 0 < reference.mask(names[0]).mean() < 1  # a mask worth comparing
        answer = server.segment(data, names, threshold=str(threshold))
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == str(local_model_id(server))
        assert_answer(answer.json(), reference, exact=True)
        png = server.segment(data, names, threshold=str(threshold), format="label_png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert_label_png(png.content, reference, exact=True)


def test_class_specs_per_class_thresholds_and_min_score(server, local) -> None:
    data = png_bytes(50, 60, seed=11)
    classes = [{"name": "dog", "prompts": ["dog", "puppy"], "negatives": ["cat"]}, "grass",
               {"sky": {"threshold": 0.9}}]  # fmt: skip
    cut = _splitting_threshold(local.segment(_image(data), ["dog", "puppy"]))
    thresholds = {"dog": cut, "grass": cut}
    reference = local.segment(_image(data), classes, threshold=thresholds)
    assert 0 < reference.mask("dog").mean() < 1
    answer = server.segment(data, classes, threshold=thresholds)
    assert answer.status_code == 200, answer.text
    assert_answer(answer.json(), reference, exact=True)
    entries = answer.json()["classes"]
    assert [c["threshold"] for c in entries] == [cut, cut, 0.9]
    assert [c["presence"] for c in entries] == pytest.approx(list(reference.scores.values()))
    scores = reference.scores
    low = min(scores, key=scores.get)
    floor = (scores[low] + sorted(scores.values())[1]) / 2
    dropped = server.segment(data, classes, threshold=thresholds, min_score=floor)
    areas = {c["name"]: c["area"] for c in dropped.json()["classes"]}
    assert areas[low] == 0 and all(
        areas[n] == int(reference.mask(n).sum()) for n in areas if n != low
    )
    message = _error(server.segment(data, ["dog"], threshold={"cat": 0.4}), 422, "bad_threshold")
    assert "thresholds given for ['cat']" in message
    message = _error(server.segment(data, [{"dog": {"prompt": "x"}}]), 422, "bad_classes")
    assert "unknown keys ['prompt']" in message
    many = [{"name": f"c{i}", "prompts": [f"p{i}-{j}" for j in range(5)]} for i in range(12)]
    assert "60 prompts and negatives, over the limit of 48" in _error(
        server.segment(data, many), 413, "too_many_prompts"
    )


def local_model_id(server) -> str:
    return server.process.args[server.process.args.index("--model") + 1]


def test_given_boxes_are_clsclip_plus(server, local) -> None:
    data = png_bytes(80, 120, seed=7)
    boxes = {"dog": [[10, 5, 60, 50]], "cat": [[70, 30, 118, 78], [0, 0, 30, 30]]}
    plain = local.segment(_image(data), ["dog", "cat"])
    threshold = _splitting_threshold(plain)
    reference = local.segment(_image(data), ["dog", "cat"], threshold=threshold, proposals=boxes)
    without = local.segment(_image(data), ["dog", "cat"], threshold=threshold)
    assert (reference.mask("dog") != without.mask("dog")).any()  # the boxes change the answer
    answer = server.segment(data, ["dog", "cat"], threshold=str(threshold), boxes=boxes)
    assert answer.status_code == 200, answer.text
    assert_answer(answer.json(), reference, exact=True)


def test_concurrent_clients_are_batched_and_answered_right(server, local) -> None:
    images = [png_bytes(30 + 9 * i, 70 - 5 * i, seed=100 + i) for i in range(4)]
    before = server.get("/metrics").text
    batches_before = metric(before, "clsclip_batch_size_count")

    def job(client_index: int, i: int) -> tuple[int, list[str], float]:
        start = (client_index * 3 + i) % len(VOCAB)
        names = [VOCAB[(start + j) % len(VOCAB)] for j in range(1 + (client_index + i) % 4)]
        return (client_index + i) % len(images), names, 0.565 + 0.001 * (i % 5)

    def client(client_index: int) -> list[tuple[int, list[str], float, httpx.Response]]:
        out = []
        with httpx.Client() as session:
            for i in range(20):
                image, names, threshold = job(client_index, i)
                response = server.segment(images[image], names, client=session,
                                          threshold=str(threshold))  # fmt: skip
                out.append((image, names, threshold, response))
        return out

    with ThreadPoolExecutor(16) as pool:
        answers = [a for batch in pool.map(client, range(16)) for a in batch]
    assert len(answers) == 320
    assert [r.status_code for *_, r in answers] == [200] * 320
    references: dict[tuple[int, tuple[str, ...], float], SegmentationResult] = {}
    for image, names, threshold, response in answers:
        key = (image, tuple(names), threshold)
        if key not in references:
            references[key] = local.segment(_image(images[image]), names, threshold=threshold)
        assert_answer(response.json(), references[key], exact=False)
    after = server.get("/metrics").text
    batches = metric(after, "clsclip_batch_size_count") - batches_before
    singles = metric(after, 'clsclip_batch_size_bucket{le="1.0"}') - metric(
        before, 'clsclip_batch_size_bucket{le="1.0"}'
    )
    assert metric(after, "clsclip_batch_size_sum") - metric(before, "clsclip_batch_size_sum") >= 320
    assert batches < 320 and singles < batches  # batches of more than one request happened
    assert metric(after, 'clsclip_requests_total{status="200"}') >= 320
    assert metric(after, "clsclip_queue_depth") == 0


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()["error"]
    assert body["code"] == code
    return body["message"] + " " + str(body.get("limit"))


def test_every_limit_is_a_4xx_that_names_it(server) -> None:
    small = png_bytes(20, 20)
    message = _error(server.segment(small, [f"c{i}" for i in range(13)]), 413, "too_many_classes")
    assert "13 classes, over the limit of 12" in message and "max_classes" in message
    message = _error(server.segment(small, ["x" * 41]), 413, "name_too_long")
    assert "41 characters, over the limit of 40" in message and "max_name_chars" in message
    boxes = {"dog": [[0, 0, 5, 5]] * 3, "cat": [[1, 1, 6, 6]] * 2}
    message = _error(server.segment(small, ["dog", "cat"], boxes=boxes), 413, "too_many_boxes")
    assert "5 boxes, over the limit of 4" in message and "max_boxes" in message
    # 400 x 400 = 160,000 pixels, over the 120,000 limit, in a PNG of a few kB
    flat = io.BytesIO()
    Image.new("RGB", (400, 400), (9, 9, 9)).save(flat, format="PNG")
    assert len(flat.getvalue()) < 0.25 * 2**20
    message = _error(server.segment(flat.getvalue(), ["dog"]), 413, "image_too_large")
    assert (
        "max_image_pixels" in message
        and "400 x 400 = 160,000 pixels, over the limit of 120,000" in message
    )
    big = png_bytes(300, 330)  # random pixels: about 300 kB, over the 0.25 MB body limit
    assert len(big) > 0.25 * 2**20
    message = _error(server.segment(big, ["dog"]), 413, "body_too_large")
    assert f"over {int(0.25 * 2**20)} bytes" in message and "max_body_bytes" in message
    assert server.segment(small, ["dog"]).status_code == 200


def test_bad_requests_are_4xx_and_the_server_goes_on(server) -> None:
    small, url = png_bytes(20, 20), server.url + "/v1/segment"
    checks = [
        (server.segment(b"GIF89a not really", ["dog"]), 415, "not_an_image"),
        (server.segment(small, "dog, cat"), 422, "bad_classes"),
        (server.segment(small, {"dog": 1}), 422, "bad_classes"),
        (server.segment(small, []), 422, "bad_classes"),
        (server.segment(small, ["dog", "dog"]), 422, "bad_classes"),
        (server.segment(small, ["dog"], threshold="1.5"), 422, "bad_threshold"),
        (server.segment(small, ["dog"], threshold="half"), 422, "bad_threshold"),
        (server.segment(small, ["dog"], format="tiff"), 422, "bad_format"),
        (server.segment(small, ["dog"], boxes={"cat": [[0, 0, 5, 5]]}), 422, "bad_boxes"),
        (server.segment(small, ["dog"], boxes={"dog": [[5, 5, 1, 1]]}), 422, "bad_boxes"),
        (httpx.post(url, data={"classes": '["dog"]'}, headers=server.headers()), 415,
         "wrong_content_type"),
        (httpx.post(url, files={"classes": (None, '["dog"]')}, headers=server.headers()), 422,
         "missing_field"),
        (httpx.post(url, content=b'{"image": "/etc/passwd"}', headers={
            **server.headers(), "content-type": "application/json"}), 415, "wrong_content_type"),
    ]  # fmt: skip
    for response, status, code in checks:
        _error(response, status, code)
        assert server.segment(small, ["dog"]).status_code == 200
    # a file path or URL as the image is bytes that are not an image: never opened or fetched
    for reference in (b"/etc/passwd", b"http://127.0.0.1:1/x.png", b"file:///etc/hosts"):
        _error(server.segment(reference, ["dog"]), 415, "not_an_image")


def test_truncated_bodies_and_bombs_do_not_hurt_the_next_request(server) -> None:
    import socket
    from urllib.parse import urlsplit

    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    small = png_bytes(20, 20)
    request = httpx.Request("POST", server.url + "/v1/segment", headers=server.headers(),
                            files={"image": ("a.png", small, "image/png")},
                            data={"classes": '["dog"]'})  # fmt: skip
    body = request.read()
    head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
    raw = f"POST /v1/segment HTTP/1.1\r\n{head}\r\n".encode() + body[: len(body) // 2]
    with socket.create_connection((host, port), timeout=30) as sock:  # half a body, then EOF
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        reply = sock.recv(65536)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 4")
    cut = io.BytesIO()  # a PNG cut short inside its pixel data
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 7).save(cut, format="PNG")
    _error(server.segment(cut.getvalue()[:-30], ["dog"]), 415, "not_an_image")
    bomb = io.BytesIO()  # 5,000 x 5,000 pixels (75 MB decoded) in a file of a few kB
    Image.new("1", (5000, 5000)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < 64 * 1024
    message = _error(server.segment(bomb.getvalue(), ["dog"]), 413, "image_too_large")
    assert "max_image_pixels" in message
    assert server.segment(small, ["dog"]).status_code == 200
    assert server.get("/readyz").status_code == 200


def test_the_key_is_required_where_it_matters(server) -> None:
    small = png_bytes(20, 20)
    files = {"image": ("a.png", small, "image/png")}
    url = server.url + "/v1/segment"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        response = httpx.post(url, files=files, data={"classes": '["dog"]'}, headers=headers)
        _error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(server.url + "/metrics").status_code == 401
    for open_path in ("/healthz", "/readyz", "/openapi.json"):
        assert httpx.get(server.url + open_path).status_code == 200
    schema = httpx.get(server.url + "/openapi.json").json()
    form = schema["paths"]["/v1/segment"]["post"]["requestBody"]["content"]
    assert set(form["multipart/form-data"]["schema"]["required"]) == {"image", "classes"}
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}


def test_cors_is_off_unless_configured(server, local) -> None:
    from starlette.testclient import TestClient

    from clsclip.serving import ServeSettings, create_app

    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    response = httpx.options(server.url + "/v1/segment", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    app = create_app(local, ServeSettings(cors_origins=("https://app.example",)))
    with TestClient(app) as client:
        allowed = client.options("/v1/segment", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = client.options(
            "/v1/segment", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers


def test_a_thousand_requests_do_not_grow_the_server(server) -> None:
    """RSS after 1,000 more sequential requests stays within 5 MB of where it was after a
    warm-up of 200 (the allocator's and the class cache's steady state). Sized to what it
    proves: a leak of 5 KB a request (a kept upload and its answer; a kept result is about
    5 KB) fails, against 0.2 MB of noise measured over 2,000 requests with no leak."""
    images = [png_bytes(24 + i, 31 - i, seed=i) for i in range(5)]
    with httpx.Client() as session:

        def send(i: int) -> None:
            names = [VOCAB[i % len(VOCAB)], VOCAB[(i * 7 + 1) % len(VOCAB)]]
            names = list(dict.fromkeys(names))
            fields = {"format": "label_png"} if i % 2 else {}
            response = server.segment(images[i % 5], names, client=session, **fields)
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith(
                "image/png" if i % 2 else "application/json"
            )

        for i in range(200):
            send(i)
        warm = server.rss_kb()
        for i in range(1000):
            send(i)
        grown = server.rss_kb() - warm
    assert grown < 5 * 1024, f"RSS grew by {grown / 1024:.1f} MB over 1,000 requests"


# --- load shedding, time limits and shutdown, driven by a gate (tests/serving/gate) ---


def test_a_full_queue_is_shed_at_once_and_slow_requests_time_out(saved_model, tmp_path) -> None:
    """Driven by a gate (tests/serving/gate), never by the clock: the network's pass waits
    while the gate file exists. One request runs (held at the gate), two wait in the full queue;
    nine more are answered 503 while the first is still held (at once, whatever the machine's
    speed); the two waiting ones and the running one pass their 1 s and are answered 504, still
    held; the gate opens, the held pass ends, the waiting two are dropped unrun, and a new
    request is answered."""
    gate = tmp_path / "gate"
    flags = ("--max-batch", "1", "--max-queue", "2", "--timeout", "1", "--max-wait-ms", "0")
    with running_server(saved_model, *flags, gate=gate) as server:
        small = png_bytes(30, 30)
        gate.touch()  # from here on, passes wait
        pool = ThreadPoolExecutor(12)
        try:
            held = pool.submit(server.segment, small, ["dog"])
            wait_for(lambda: Path(f"{gate}.entered").exists(), "the first request is held")
            waiting = [pool.submit(server.segment, small, ["dog"]) for _ in range(2)]
            wait_for(lambda: metric(server.get("/metrics").text, "clsclip_queue_depth") == 2,
                      "two requests wait in the queue")  # fmt: skip
            shed = list(pool.map(lambda _: server.segment(small, ["dog"]), range(9)))
            assert gate.exists() and not held.done()  # answered while the first is held
            for response in shed:
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "1"
                assert "--max-queue 2" in _error(response, 503, "overloaded")
            late = [f.result(timeout=120) for f in waiting]  # their 1 s passes, still held
            assert gate.exists()
            assert [r.status_code for r in late] == [504, 504]
            assert all("within 1 s" in _error(r, 504, "timeout") for r in late)
        finally:
            gate.unlink(missing_ok=True)
            pool.shutdown(wait=True)
        assert held.result(timeout=120).status_code == 504  # it ran past its time
        wait_for(lambda: metric(server.get("/metrics").text, "clsclip_queue_depth") == 0,
                  "the batcher drops the two timed-out requests")  # fmt: skip
        answer = server.segment(small, ["dog"])
        assert answer.status_code == 200, answer.text
        text = server.get("/metrics").text
        assert metric(text, 'clsclip_requests_total{status="503"}') == 9
        assert metric(text, 'clsclip_requests_total{status="504"}') == 3
        assert metric(text, "clsclip_batch_size_count") == 2  # the held one and the last one


def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_0(
    saved_model, tmp_path
) -> None:
    """Six requests in flight (one batch held at the gate, the rest queued), then SIGTERM: the
    listening socket closes (new connections are refused) while they are still held; the gate
    opens and all six are answered; exit 0. Driven by the gate, never by the clock."""
    gate = tmp_path / "gate"
    with running_server(saved_model, "--max-batch", "2", "--timeout", "120", gate=gate) as server:
        small = png_bytes(30, 30)

        def submitted() -> float:  # requests taken into batches, plus those waiting
            text = server.get("/metrics").text
            return metric(text, "clsclip_batch_size_sum") + metric(text, "clsclip_queue_depth")

        gate.touch()
        with ThreadPoolExecutor(6) as pool:
            try:
                futures = [pool.submit(server.segment, small, VOCAB[:4]) for _ in range(6)]
                wait_for(lambda: submitted() >= 6, "all six are with the batcher")
                server.process.send_signal(signal.SIGTERM)

                def refused() -> bool:
                    try:
                        httpx.get(server.url + "/healthz", timeout=10)
                    except httpx.TransportError:
                        return True
                    return False

                wait_for(refused, "the listening socket is closed")
                assert gate.exists() and not any(f.done() for f in futures)
            finally:
                gate.unlink(missing_ok=True)
            answers = [f.result(timeout=120) for f in futures]
        assert [a.status_code for a in answers] == [200] * 6
        assert server.process.wait(60) == 0
        assert "Traceback" not in "".join(server.log)


def test_a_drained_server_exits_at_once_with_its_last_log_line(saved_model, tmp_path) -> None:
    """After SIGTERM and the drain, ``clsclip serve`` ends its process at once: the
    interpreter's native teardown (1.4 s quiet, 6-13 s under load) is skipped, so an
    ``atexit`` hook never runs, while the last log line and the exit status still get out."""
    import os
    import subprocess
    import sys

    from tests.serving.server import ROOT, wait_until_ready

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import atexit\natexit.register(lambda: print('teardown ran', flush=True))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{hook}{os.pathsep}{ROOT}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "clsclip", "-v", "serve", "--model", str(saved_model), "--port",
         "0", "--device", "cpu"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    url = ""
    while not url:
        line = process.stdout.readline()
        assert line, "the server ended before listening"
        if "listening on " in line:
            url = line.rsplit(" ", 1)[1].strip()
    assert wait_until_ready(url, timeout_s=60)
    answer = httpx.post(url + "/v1/segment", files={"image": ("a.png", png_bytes(20, 20))},
                        data={"classes": '["dog"]'}, timeout=60)  # fmt: skip
    assert answer.status_code == 200
    process.send_signal(signal.SIGTERM)
    rest = process.stdout.read()
    assert process.wait(60) == 0
    assert rest.strip().splitlines()[-1] == "INFO clsclip.cli: stopped on signal 15"
    assert "teardown ran" not in rest


def test_answers_equal_segment_with_onnxruntime(tiny_onnx_export) -> None:
    export = tiny_onnx_export[0]  # tiny_segmenter()'s, the `segmenter` fixture's weights
    local = Segmenter.from_pretrained(export, backend="onnxruntime")
    with running_server(export, "--backend", "onnxruntime", "--max-wait-ms", "30") as ort:
        images = [png_bytes(33 + 4 * i, 41, seed=50 + i) for i in range(3)]
        requests = [(images[i % 3], VOCAB[i % 4 : i % 4 + 1 + i % 3]) for i in range(9)]
        thresholds = []
        for data, names in requests:
            thresholds.append(_splitting_threshold(local.segment(_image(data), names)))
        # alone: bit for bit
        data, names = requests[0]
        reference = local.segment(_image(data), names, threshold=thresholds[0])
        answer = ort.segment(data, names, threshold=str(thresholds[0]))
        assert_answer(answer.json(), reference, exact=True)
        png = ort.segment(data, names, threshold=str(thresholds[0]), format="label_png")
        assert_label_png(png.content, reference, exact=True)
        # concurrent: batched with each other
        with ThreadPoolExecutor(9) as pool:
            answers = list(pool.map(lambda r, t: ort.segment(r[0], r[1], threshold=str(t)),
                                    requests, thresholds))  # fmt: skip
        for (data, names), threshold, response in zip(requests, thresholds, answers, strict=True):
            assert response.status_code == 200, response.text
            reference = local.segment(_image(data), names, threshold=threshold)
            assert_answer(response.json(), reference, exact=False)
        assert json.loads(json.dumps(answers[0].json()))["model"] == str(export)


def test_the_example_client_against_the_demo_model(tmp_path) -> None:
    """examples/client.py, as its docstring runs it, against the bundled demo model."""
    import subprocess
    import sys

    examples = Path(__file__).resolve().parents[2] / "examples"
    image, names = examples / "images" / "shapes.png", ["red disc", "blue square"]
    reference = Segmenter.from_pretrained(examples / "demo-model", device="cpu").segment(
        image, names
    )
    with running_server(examples / "demo-model", key="demo-key") as demo:
        command = [sys.executable, str(examples / "client.py"), str(image), *names,
                   "--url", demo.url]  # fmt: skip
        env = {"CLSCLIP_API_KEY": "demo-key", "PATH": "/usr/bin:/bin"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        for name in names:
            assert f"{name}: area {int(reference.mask(name).sum())}," in done.stdout
        assert int(reference.mask("red disc").sum()) > 500  # real masks, not empty ones
        png = tmp_path / "labels.png"
        done = subprocess.run([*command, "--label-png", str(png)], capture_output=True,
                              text=True, env=env, check=True)  # fmt: skip
        np.testing.assert_array_equal(np.asarray(Image.open(png)), reference.label_map)
        unauthorised = subprocess.run(command, capture_output=True, text=True,
                                      env={"PATH": "/usr/bin:/bin"})  # fmt: skip
        assert unauthorised.returncode == 1
        assert "401: send Authorization: Bearer <key>" in unauthorised.stderr
