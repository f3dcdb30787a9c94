"""``clsclip segment`` on videos: detection by probing, per-frame files equal to `segment` on the
decoded frames, the overlay video, YouTube-VIS, failures recorded per video, and a killed run
resumed at the first frame not written giving the uninterrupted outputs."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clsclip import Segmenter
from clsclip.cli import main
from clsclip.labelling import list_inputs
from clsclip.labelling import video as video_run
from clsclip.pipeline.video_decode import decode_video
from clsclip.results.formats import label_image
from tests.conftest import random_rgb, wait_for
from tests.labelling.test_run import _RUN, ROOT, _manifest, _outputs, assert_same_outputs
from tests.video_files import decoded, make_video

CLASSES = ["red disc", "blue square"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_inputs(tmp_path_factory.mktemp("videos"))


def make_inputs(folder: Path) -> Path:
    """Three videos (one named without a suffix), a broken one and a still image."""
    make_video(folder / "walk.mp4", frames=20, rate=10)  # the only video with a frame 12
    make_video(folder / "phone.mov", frames=6, width=50, height=30, rotation=-90)
    make_video(
        folder / "untitled", frames=5, codec="mpeg4", container_format="avi"
    )  # no suffix: found by probing
    (folder / "broken.mp4").write_bytes(b"\x00" * 100)
    Image.fromarray(random_rgb(30, 40, 1)).save(folder / "still.png")
    return folder


def _argv(model: Path, inputs: list[Path], out: Path, *extra: str) -> list[str]:
    return ["segment", *map(str, inputs), "--classes", *CLASSES, "--model", str(model),
            "--out", str(out), *extra]  # fmt: skip


def test_inputs_are_told_apart_by_probing(inputs: Path) -> None:
    found = list_inputs([inputs], base=None)
    assert {(i.key, i.video) for i in found} == {
        ("broken.mp4", True), ("phone.mov", True), ("still.png", False), ("walk.mp4", True),
    }  # fmt: skip
    named = list_inputs([inputs / "untitled", inputs / "still.png"], base=None)
    assert [(i.key, i.video) for i in named] == [("untitled", True), ("still.png", False)]


def test_a_folder_of_videos_and_images(tmp_path, saved_model, inputs, capsys) -> None:
    out = tmp_path / "out"
    argv = _argv(saved_model, [inputs, inputs / "untitled"], out, "--format", "label", "npz",
                 "coco", "png", "--batch-size", "3")  # fmt: skip
    assert main(argv) == 1  # the broken video is recorded as failed, the others done
    assert "1 of 5 input(s) failed" in capsys.readouterr().err
    records = {r["key"]: r for r in _manifest(out)}
    assert records["broken.mp4"]["status"] == "failed"
    assert "broken.mp4" in records["broken.mp4"]["error"]
    assert records["still.png"]["status"] == "ok" and "kind" not in records["still.png"]
    seg = Segmenter.from_pretrained(saved_model, device="cpu")
    for key, count, size in [("walk.mp4", 20, (48, 64)), ("phone.mov", 6, (30, 50)),
                             ("untitled", 5, (48, 64))]:  # fmt: skip
        record = records[key]
        assert record["status"] == "ok" and record["frames"] == count
        assert record["size"] == list(size)
        stem = record["stem"]
        frames = list(decode_video(inputs / key))
        for frame in frames:  # each frame's label map is segment's on the decoded frame
            want = seg.segment(frame.pixels, CLASSES)
            got = np.asarray(Image.open(out / stem / f"{frame.index:06d}_label.png"))
            assert np.array_equal(got, np.asarray(label_image(want.label_map, 2)))
            assert (out / stem / f"{frame.index:06d}.npz").is_file()
        overlay = decoded(out / stem / "overlay.mp4")  # same number of frames, size and times
        assert len(overlay) == count
        assert all(p.shape == (*size, 3) for _, _, p in overlay)
        assert [t for _, t, _ in overlay] == pytest.approx([f.time for f in frames], abs=1e-4)
        assert not (out / stem / video_run.PARTS).exists()
    vis = json.loads((out / "youtube-vis.json").read_text())
    assert len(vis["videos"]) == 3 and [c["name"] for c in vis["categories"]] == CLASSES
    walk = next(v for v in vis["videos"] if v["file_names"][0].startswith("walk.mp4"))
    assert walk["length"] == 20 and walk["frame_indices"] == list(range(20))
    for annotation in vis["annotations"]:
        assert len(annotation["segmentations"]) == len(annotation["areas"])
        assert all(s is None or set(s) == {"size", "counts"} for s in annotation["segmentations"])
    coco = json.loads((out / "coco.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == [str(inputs / "still.png")]


@pytest.mark.parametrize("extra", [[], ["--overlay-video", "--smooth", "0.5"]])
def test_an_interrupted_video_resumes_at_the_first_frame_not_written(
    tmp_path, saved_model, monkeypatch, extra
) -> None:
    """Interrupted at frame 13 (Ctrl-C in the writer), then ``--resume``: the outputs of an
    uninterrupted run, byte for byte; with an overlay or smoothing, from the last checkpoint."""
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=30)
    argv = ["--format", "label", "npz", "coco", "--video-chunk", "8", *extra]
    whole, out = tmp_path / "whole", tmp_path / "out"
    assert main(_argv(saved_model, [clip], whole, *argv)) == 0
    written: list[int] = []
    original = video_run._VideoJob.write_frame

    def write_then_stop(job, frame):
        if frame.index == 13:
            raise KeyboardInterrupt
        original(job, frame)
        written.append(frame.index)

    monkeypatch.setattr(video_run._VideoJob, "write_frame", write_then_stop)
    assert main(_argv(saved_model, [clip], out, *argv)) == 130
    monkeypatch.setattr(video_run._VideoJob, "write_frame", original)
    assert written == list(range(13))
    resumed: list[int] = []

    def count_then_write(job, frame):
        resumed.append(frame.index)
        original(job, frame)

    monkeypatch.setattr(video_run._VideoJob, "write_frame", count_then_write)
    assert main(_argv(saved_model, [clip], out, *argv, "--resume")) == 0
    assert resumed[0] == (8 if extra else 13)  # the last checkpoint, or the first not written
    assert resumed == list(range(resumed[0], 30))
    assert_same_outputs(_outputs(out), _outputs(whole))


def test_kill_9_mid_video_then_resume_gives_the_uninterrupted_outputs(tmp_path, saved_model):
    clip = tmp_path / "long.mkv"
    make_video(clip, frames=400, width=40, height=30)
    argv = ["--format", "label", "coco", "--overlay-video", "--video-chunk", "16"]
    whole, out = tmp_path / "whole", tmp_path / "out"
    assert main(_argv(saved_model, [clip], whole, *argv)) == 0
    script = _RUN.format(root=str(ROOT), argv=_argv(saved_model, [clip], out, *argv))
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    log = out / "long" / "frames.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 40):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lines = log.read_text().count("\n")
    assert 40 <= lines < 400, lines  # killed mid-video
    assert not (out / "long" / "overlay.mp4").exists()
    assert main(_argv(saved_model, [clip], out, *argv, "--resume")) == 0
    assert_same_outputs(_outputs(out), _outputs(whole))
    assert [p.name for p in out.rglob(".*")] == [".clsclip.lock"]  # no temporaries left


def test_video_settings_are_part_of_the_run(tmp_path, saved_model, capsys) -> None:
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=6)
    out = tmp_path / "out"
    assert main(_argv(saved_model, [clip], out, "--format", "label")) == 0
    assert main(_argv(saved_model, [clip], out, "--format", "label", "--every", "2",
                      "--resume")) == 2  # fmt: skip
    assert "differs in" in capsys.readouterr().err
    for bad, message in [
        (["--format", "label-studio"], "label-studio takes images only"),
        (["--every", "2", "--fps", "3"], "either every or fps"),
        (["--smooth", "1.5"], r"smooth must be in (0, 1]"),
    ]:
        assert main(_argv(saved_model, [clip], tmp_path / "other", *bad)) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_the_label_pngs_name_frames_by_index(tmp_path, saved_model) -> None:
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=12, rate=10)
    out = tmp_path / "out"
    assert main(_argv(saved_model, [clip], out, "--format", "label", "--every", "5")) == 0
    names = sorted(p.name for p in (out / "clip").glob("*_label.png"))
    assert names == ["000000_label.png", "000005_label.png", "000010_label.png"]
    image = Image.open(io.BytesIO((out / "clip" / names[1]).read_bytes()))
    assert image.size == (64, 48) and image.mode == "P"


def test_a_smoothed_video_resumes_exactly_when_the_network_runs_ahead_of_the_writer(
    tmp_path, saved_model, monkeypatch
) -> None:
    """The writer is held until the network has smoothed five frames more than the one it
    writes (as when writing is the slower stage), then the run is interrupted at frame 13: the
    checkpoint must hold the average after the last frame written, not the live one."""
    from clsclip.pipeline.video import Smoother

    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=30)
    argv = ["--format", "npz", "--smooth", "0.5", "--video-chunk", "8", "--batch-size", "4"]
    whole, out = tmp_path / "whole", tmp_path / "out"
    assert main(_argv(saved_model, [clip], whole, *argv)) == 0
    smoothed: list[int] = []
    average, write = Smoother.__call__, video_run._VideoJob.write_frame

    def counting(self, prediction):
        smoothed.append(1)
        return average(self, prediction)

    def held_write(job, frame):
        wait_for(lambda: len(smoothed) >= min(frame.index + 6, 30), "the network runs ahead")
        if frame.index == 13:
            raise KeyboardInterrupt
        write(job, frame)

    monkeypatch.setattr(Smoother, "__call__", counting)
    monkeypatch.setattr(video_run._VideoJob, "write_frame", held_write)
    assert main(_argv(saved_model, [clip], out, *argv)) == 130
    monkeypatch.setattr(video_run._VideoJob, "write_frame", write)
    assert main(_argv(saved_model, [clip], out, *argv, "--resume")) == 0
    assert_same_outputs(_outputs(out), _outputs(whole))
