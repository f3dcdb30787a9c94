"""``clsclip segment --engine ray`` on videos: one video per task, and a worker that dies
mid-video is replaced and the video resumed from its frame log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clsclip.cli import main
from tests.labelling.test_ray import _env
from tests.labelling.test_run import _RUN, ROOT, _manifest, _outputs, assert_same_outputs
from tests.labelling.test_video_run import _argv, make_inputs

pytest.importorskip("ray.data", reason="needs clsclip[ray]")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_inputs(tmp_path_factory.mktemp("videos"))


def test_ray_engine_gives_the_local_bytes_and_a_dead_worker_resumes_its_video(
    tmp_path, saved_model, inputs
) -> None:
    """``--engine ray``: one video per task on two actors; the worker writing frame 12 of a
    video dies once (fault injection on its PYTHONPATH), Ray retries the video on a new worker
    and it resumes from the frame log: every file is the local engine's, byte for byte."""
    argv = ["--format", "label", "coco", "npz", "--overlay-video", "--video-chunk", "4",
            "--threads", "1"]  # fmt: skip
    local = tmp_path / "local"
    assert main(_argv(saved_model, [inputs], local, *argv)) == 1  # the broken video
    out = tmp_path / "ray"
    once = tmp_path / "died"
    poison = Path(__file__).parent / "poison"
    env = dict(_env(), PYTHONPATH=f"{poison}{os.pathsep}{ROOT}", CLSCLIP_DIE_AT_FRAME="12",
               CLSCLIP_DIE_ONCE=str(once), HF_HUB_OFFLINE="1")  # fmt: skip
    ray_argv = _argv(saved_model, [inputs], out, *argv, "--engine", "ray", "--actors", "2")
    done = subprocess.run([sys.executable, "-c", _RUN.format(root=str(ROOT), argv=ray_argv)],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    assert once.exists()  # a worker died at frame 12 of walk.mp4
    records = {r["key"]: r for r in _manifest(out)}
    assert records["walk.mp4"]["status"] == "ok" and records["walk.mp4"]["frames"] == 20
    assert records["broken.mp4"]["status"] == "failed"
    assert_same_outputs(_outputs(out), _outputs(local))
