"""``clsclip segment --engine ray`` on real local Ray clusters: the same bytes as the local engine,
the driver killed and resumed, images that kill their worker, and a two-node cluster joined by
address with an actor killed mid-run.

Each test runs the command line in a subprocess, as users do; the clusters are local (Ray's
default for ``ray.init``, and ``ray start`` for the two-node one), dashboards off.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clsclip.cli import main
from tests.conftest import random_rgb
from tests.labelling.test_run import _RUN, ROOT, _outputs, assert_same_outputs
from tests.labelling.test_run_folder import _manifest_records

pytest.importorskip("ray.data", reason="needs clsclip[ray]")

CLASSES = ["dog", "cat"]
COUNT = 40


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
                RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")  # fmt: skip


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i in range(COUNT):
        if i == 7:
            (folder / f"img{i:02d}.png").write_bytes(b"not an image")
            continue
        Image.fromarray(random_rgb(60 + i, 80, seed=i)).save(folder / f"img{i:02d}.png")
    return folder


def _argv(images: Path, model: Path, out: Path) -> list[str]:
    argv = ["segment", str(images), "--classes", *CLASSES, "--model", str(model), "--out", str(out)]
    return [*argv, "--format", "png", "label", "coco", "npz", "--batch-size", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def local_outputs(images, tmp_path_factory) -> tuple[Path, Path]:
    """The local engine's outputs (one thread, as each Ray actor here)."""
    from tests.conftest import tiny_segmenter

    model = tiny_segmenter().save_pretrained(tmp_path_factory.mktemp("model"))
    out = tmp_path_factory.mktemp("local") / "out"
    assert main(_argv(images, model, out)) == 1  # one bad image
    return model, out


def _start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _RUN.format(root=str(ROOT), argv=argv)],
                            env=_env(), stderr=subprocess.PIPE, text=True)  # fmt: skip


def _wait_for_records(out: Path, count: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (out / "manifest.jsonl").exists() and len(_manifest_records(out)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {count} records in time: {proc.poll()}")


def _actor_pids(ancestor: Callable[[int, str], bool]) -> list[int]:
    """The `SegmentBatch` actors below a process that ``ancestor(pid, args)`` picks: the
    driver that started a cluster (its raylet's workers) or a cluster's raylets, so never those
    of another cluster on the machine (one shutting down, say)."""
    listing = subprocess.run(["ps", "-eww", "-o", "pid,ppid,args"], capture_output=True, text=True)
    rows = [line.split(None, 2) for line in listing.stdout.splitlines()[1:]]
    parent = {int(row[0]): int(row[1]) for row in rows}
    args = {int(row[0]): row[2] if len(row) == 3 else "" for row in rows}

    def under(pid: int) -> bool:
        pid = parent.get(pid, 0)
        while pid > 1:
            if ancestor(pid, args.get(pid, "")):
                return True
            pid = parent.get(pid, 0)
        return False

    return [pid for pid, text in args.items() if "SegmentBatch" in text and under(pid)]


def _same_coco(a: Path, b: Path) -> None:
    x, y = (json.loads((p / "coco.json").read_text()) for p in (a, b))
    assert x == y  # images, annotations and ids in key order: equal whatever the engine


def _check_complete(out: Path, reference: Path) -> None:
    records = _manifest_records(out)
    assert sorted(records) == [f"img{i:02d}.png" for i in range(COUNT)]
    assert [r["status"] for r in records.values()].count("failed") == 1
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    coco = json.loads((out / "coco.json").read_text())
    assert len(coco["images"]) == len({i["id"] for i in coco["images"]}) == COUNT - 1
    _same_coco(out, reference)
    assert_same_outputs(_outputs(out), _outputs(reference))  # masks, label PNGs, npz: bytes
    assert len(lines) >= COUNT


def test_the_driver_killed_then_resumed(images, local_outputs, tmp_path) -> None:
    model, reference = local_outputs
    out = tmp_path / "out"
    argv = [*_argv(images, model, out), "--engine", "ray", "--actors", "1"]
    proc = _start(argv)
    _wait_for_records(out, 6, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(_manifest_records(out))
    assert 6 <= done < COUNT
    script = _RUN.format(root=str(ROOT), argv=[*argv, "--resume"])
    resumed = subprocess.run([sys.executable, "-c", script], env=_env(), capture_output=True,
                             text=True, timeout=400)  # fmt: skip
    assert resumed.returncode == 1, resumed.stderr[-3000:]
    _check_complete(out, reference)


def test_a_two_node_cluster_joined_by_address(images, local_outputs, tmp_path) -> None:
    """``ray start`` makes a two-node cluster (a GPU declared on the head): a run without
    ``--ray-address`` starts a cluster of its own, which has no GPU for an actor that asks for
    one (refused before any write); a run given the address has an actor on each node, and one
    of them killed mid-run (its batch retried) gives the local engine's bytes."""
    model, reference = local_outputs
    ray_bin = Path(sys.executable).with_name("ray")
    port = 26379 + os.getpid() % 1000
    env = _env()
    head = [str(ray_bin), "start", "--head", f"--port={port}", "--num-cpus=1", "--num-gpus=1",
            "--include-dashboard=false", "--disable-usage-stats"]  # fmt: skip
    try:
        subprocess.run(head, env=env, check=True, capture_output=True, timeout=180)
        # Without --ray-address a run starts a cluster of its own: it does not join this one
        # (whose one GPU, declared, would let an actor of one GPU in), ray.init()'s default.
        alone = [*_argv(images, model, tmp_path / "alone"), "--engine", "ray", "--actors", "1",
                 "--gpus-per-actor", "1"]  # fmt: skip
        done = subprocess.run([sys.executable, "-c", _RUN.format(root=str(ROOT), argv=alone)],
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 2, done.stderr[-3000:]
        assert "needs 1 GPUs; the Ray cluster has 0" in done.stderr
        assert not (tmp_path / "alone" / "run.json").exists()  # refused before any write
        subprocess.run([str(ray_bin), "start", f"--address=127.0.0.1:{port}", "--num-cpus=1"],
                       env=env, check=True, capture_output=True, timeout=180)  # fmt: skip
        # two actors, one per node; one is killed mid-run: its batch is retried
        out = tmp_path / "out"
        argv = ["-v", *_argv(images, model, out), "--engine", "ray", "--actors", "2",
                "--ray-address", f"127.0.0.1:{port}"]  # fmt: skip
        proc = _start(argv)
        _wait_for_records(out, 4, proc)
        actors = _actor_pids(lambda pid, args: "raylet" in args and f":{port}" in args)
        assert len(actors) == 2
        os.kill(actors[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 1, err[-3000:]  # the one bad image
        assert "1 of 40 image(s) failed" in err
        assert "the Ray cluster: 2 node(s), 2 CPUs, 1 GPUs" in err  # both joined
        _check_complete(out, reference)
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_the_callable_class_returns_plain_columns(local_outputs, images) -> None:
    """Used in one's own pipeline: paths, bytes or arrays in; only plain columns out."""
    from clsclip.labelling.ray_engine import SegmentBatch

    model, _ = local_outputs
    labeller = SegmentBatch(str(model), CLASSES, threshold=0.45)
    paths = [str(images / "img00.png"), str(images / "img07.png")]
    batch = {"path": np.asarray(paths)}
    columns = labeller(batch)
    assert list(columns["status"]) == ["ok", "failed"]
    assert set(columns) == {"key", "status", "error", "height", "width", "coco", "outputs",
                            "stem", "run", "seconds"}  # fmt: skip
    assert all(columns[name].dtype.kind in "iufUSb" for name in columns)  # no objects
    coco = json.loads(columns["coco"][0])
    assert {entry["name"] for entry in coco} <= set(CLASSES)
    from_bytes = labeller({"bytes": np.asarray([Path(paths[0]).read_bytes()], dtype=object)})
    assert from_bytes["coco"][0] == columns["coco"][0]
    # class specs travel as JSON (what --classes-file gives the actors): the same masks as
    # Segmenter.segment with those specs
    from clsclip import Segmenter
    from clsclip.classes import resolve_classes, specs_identity

    specs = resolve_classes({"dog": ["dog", "puppy"], "cat": {"prompts": ["cat"], "negatives":
                             ["tree"], "threshold": 0.5}, "tree": None})  # fmt: skip
    labeller = SegmentBatch(str(model), specs_identity(specs), threshold=0.45, min_score=0.2)
    coco = json.loads(labeller({"path": np.asarray(paths[:1])})["coco"][0])
    expected = Segmenter.from_pretrained(model).segment(paths[0], specs, threshold=0.45,
                                                        min_score=0.2)  # fmt: skip
    assert [a["name"] for a in coco] == [n for n in expected.class_names if expected.mask(n).any()]
    assert [a["area"] for a in coco] == [
        int(expected.mask(n).sum()) for n in expected.class_names if expected.mask(n).any()
    ]


def test_images_that_kill_their_worker_are_recorded_and_the_run_ends(
    local_outputs, tmp_path
) -> None:
    """An image kills the actor that decodes it (as the OOM killer or a decoder crash would):
    its batch fails (``--ray-retries 0``: no retry), its images are tried each alone, the good
    one is done and the poisoned one, dying alone too, is recorded as failed with the reason;
    every other image is done and the run ends (before: retried forever). The retry of a batch
    whose worker died is in `test_a_two_node_cluster_joined_by_address`."""
    model, _ = local_outputs
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(random_rgb(50, 60, seed=i)).save(folder / f"img{i}.png")
    # sorted second: in the first batch of two, beside img0.png
    Image.fromarray(random_rgb(50, 60, seed=9)).save(folder / "img1-poison.png")
    out = tmp_path / "out"
    argv = ["segment", str(folder), "--classes", *CLASSES, "--model", str(model), "--out",
            str(out), "--format", "label", "--batch-size", "2", "--threads", "1",
            "--engine", "ray", "--actors", "2", "--ray-retries", "0"]  # fmt: skip
    poison = Path(__file__).parent / "poison"
    env = dict(_env(), PYTHONPATH=f"{poison}{os.pathsep}{ROOT}")
    done = subprocess.run([sys.executable, "-c", _RUN.format(root=str(ROOT), argv=argv)],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    assert "1 of 6 image(s) failed" in done.stderr
    # without -v, Ray's INFO lines (Ray Data's plan and timing) and its notices stay out
    assert "Token authentication" not in done.stderr and "INFO" not in done.stderr
    records = _manifest_records(out)
    failed = {k: r["error"] for k, r in records.items() if r["status"] == "failed"}
    assert list(failed) == ["img1-poison.png"]
    assert "its Ray worker died 1 time(s) on it, also alone" in failed["img1-poison.png"]
    assert sorted(k for k, r in records.items() if r["status"] == "ok") == [
        f"img{i}.png" for i in range(5)
    ]


def test_an_unreachable_address_is_refused_before_any_write(local_outputs, tmp_path) -> None:
    """Within seconds (Ray itself retries for minutes). A cluster that cannot hold the actors
    is refused so too: `test_a_two_node_cluster_joined_by_address`."""
    model, _ = local_outputs
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(random_rgb(20, 20)).save(folder / "a.png")
    out = tmp_path / "out"
    argv = ["segment", str(folder), "--classes", *CLASSES, "--model", str(model), "--engine",
            "ray", "--out", str(out), "--ray-address", "127.0.0.1:1"]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", _RUN.format(root=str(ROOT), argv=argv)],
                          env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "--ray-address 127.0.0.1:1: cannot reach" in done.stderr
    assert not (out / "run.json").exists()


def test_without_an_address_a_run_starts_a_cluster_of_its_own(monkeypatch) -> None:
    """``ray.init()`` with no address joins a cluster already running on the machine (another
    run's, or one still shutting down, which then takes the run down with it); the run asks
    for a cluster of its own ("local") unless ``--ray-address`` or ``RAY_ADDRESS`` names one."""
    from types import SimpleNamespace

    from clsclip.labelling import ray_engine
    from clsclip.labelling.outputs import OutputOptions

    calls: list[dict] = []
    fake_ray = SimpleNamespace(
        is_initialized=lambda: False, init=lambda **kw: calls.append(kw),
        cluster_resources=lambda: {"CPU": 8.0}, nodes=lambda: [{"Alive": True}],
        shutdown=lambda: None,
    )  # fmt: skip
    monkeypatch.setattr(ray_engine, "require", lambda *a, **k: fake_ray)
    ray_data = SimpleNamespace(DataContext=SimpleNamespace(get_current=SimpleNamespace))
    options = OutputOptions(out=Path("out"), classes=tuple(CLASSES), formats=("label",))

    def start(address: str | None) -> dict:
        return ray_engine.start_run(
            ray_data, "model", options, "run", threshold=None, actors=2, gpus_per_actor=0.0,
            address=address, actor_kwargs={},
        )  # fmt: skip

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    kwargs = start(None)
    assert calls[-1]["address"] == "local"
    assert kwargs["threads"] == max(1, (os.cpu_count() or 1) // 2)  # this machine's cores
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    kwargs = start(None)
    assert calls[-1]["address"] == "auto" and "threads" not in kwargs  # the cluster's cores
    kwargs = start("auto")
    assert calls[-1]["address"] == "auto" and "threads" not in kwargs
