"""ClsCLIP+ on videos with ultralytics' tracker (a random-weight detector built from its YAML and
ByteTrack with its thresholds at 0, so that the random boxes are tracked): every box carries a
track id, ids restart with each video, each object's mask is its class's mask inside its box,
and ``clsclip segment --track`` writes one YouTube-VIS annotation per tracked object."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clsclip.cli import main
from clsclip.proposals import LabelMatcher, YoloProposer
from tests.conftest import tiny_segmenter
from tests.video_files import make_video

NAMES = ["red disc", "blue square"]
TRACKER = """tracker_type: bytetrack
track_high_thresh: 0.0
track_low_thresh: 0.0
new_track_thresh: 0.0
track_buffer: 30
match_thresh: 0.99
fuse_score: False
"""


@pytest.fixture
def tracker_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolo-config"))
    path = tmp_path / "anything.yaml"
    path.write_text(TRACKER)
    return path


def test_tracked_boxes_carry_ids_that_restart_with_each_video(tmp_path, tracker_file) -> None:
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=6, width=96, height=64)
    proposer = YoloProposer("yolov8n.yaml", conf=0.0, imgsz=96, device="cpu", max_det=4,
                            tracker=str(tracker_file))  # fmt: skip
    seg = tiny_segmenter(seed=2)
    seg.matcher = LabelMatcher(class_agnostic=True)  # every box serves every class
    runs = []
    for _ in range(2):
        frames = list(seg.segment_video(clip, NAMES, proposals=proposer, deterministic=True))
        runs.append([{n: ids.tolist() for n, ids in f.tracks.items()} for f in frames])
        for frame in frames:
            for name, ids in frame.tracks.items():
                assert len(ids) == len(frame.result.boxes[name])
            for track, name, mask in frame.instances():
                assert track >= 1
                assert not (mask & ~frame.result.mask(name)).any()  # inside the class's mask
    tracked = [i for frame in runs[0] for ids in frame.values() for i in ids if i >= 0]
    assert tracked, "ByteTrack at thresholds 0 tracks the random boxes"
    assert runs[0] == runs[1]  # the tracker was reset: the same ids for the same video


def test_the_cli_writes_one_annotation_per_tracked_object(
    tmp_path, tracker_file, saved_model, monkeypatch
) -> None:
    """``--track bytetrack`` with ultralytics' own config swapped for the zero-threshold one."""
    import clsclip.cli.video as cli_video

    monkeypatch.setitem(cli_video.TRACKERS, "bytetrack", str(tracker_file))
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=5, width=96, height=64)
    out = tmp_path / "out"
    argv = ["segment", str(clip), "--classes", *NAMES, "--model", str(saved_model), "--out",
            str(out), "--format", "coco", "--proposals", "yolo", "--yolo-model", "yolov8n.yaml",
            "--yolo-conf", "0.0", "--track", "bytetrack"]  # fmt: skip
    assert main(argv) == 0
    vis = json.loads((out / "youtube-vis.json").read_text())
    for annotation in vis["annotations"]:
        assert annotation["track_id"] >= 1 and len(annotation["segmentations"]) == 5
        assert any(s is not None for s in annotation["segmentations"])
    ids = [a["track_id"] for a in vis["annotations"]]
    assert len(ids) == len({(a["track_id"], a["category_id"]) for a in vis["annotations"]})
    image = tmp_path / "still.png"
    from PIL import Image

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    assert main([*argv[:1], str(image), *argv[2:-4], "--out", str(tmp_path / "o2"),
                 "--track", "bytetrack"]) == 2  # fmt: skip
