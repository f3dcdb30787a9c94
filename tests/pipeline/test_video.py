"""Videos through `Segmenter.segment_video`: decoding (indices, timestamps, sampling, rotation,
codecs), each frame's result against `segment` on the decoded frame, smoothing, bounded memory,
and the bad inputs (one-line errors naming the file)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from clsclip import Segmenter
from clsclip.pipeline.video import Smoother
from clsclip.pipeline.video_decode import VideoError, decode_video, is_video, probe_video
from clsclip.results.video import VideoWriter, join_videos
from tests.conftest import tiny_segmenter
from tests.video_files import decoded, make_audio, make_video

NAMES = ["red disc", "blue square"]


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    return tiny_segmenter(seed=4)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    make_video(path, frames=30, rate=10)
    return path


def test_indices_and_times_are_the_containers(clip: Path) -> None:
    frames = list(decode_video(clip))
    reference = decoded(clip)
    assert [f.index for f in frames] == [i for i, _, _ in reference] == list(range(30))
    assert [f.time for f in frames] == [t for _, t, _ in reference]
    assert all(np.array_equal(f.pixels, p) for f, (_, _, p) in zip(frames, reference, strict=True))
    info = probe_video(clip)
    assert (info.width, info.height, info.rotation, info.fps, info.codec) == (64, 48, 0, 10.0,
                                                                              "h264")  # fmt: skip


def test_every_fps_start_and_end_pick_the_documented_frames(clip: Path) -> None:
    assert [f.index for f in decode_video(clip, every=4)] == [0, 4, 8, 12, 16, 20, 24, 28]
    # 3 per second of a 10 fps clip: ticks 0, 1/3, 2/3, 1, ... take the nearest frame each
    picked = [f.index for f in decode_video(clip, fps=3)]
    assert picked == [0, 3, 7, 10, 13, 17, 20, 23, 27]
    assert [f.index for f in decode_video(clip, fps=100)] == list(range(30))  # each frame once
    assert [f.index for f in decode_video(clip, start=1.0, end=1.5)] == [10, 11, 12, 13, 14]
    assert [f.index for f in decode_video(clip, start=1.0, fps=2)] == [10, 15, 20, 25]
    assert [f.index for f in decode_video(clip, every=5, first=12)] == [15, 20, 25]
    with pytest.raises(ValueError, match="either every or fps"):
        decode_video(clip, every=2, fps=3)
    with pytest.raises(ValueError, match="0 <= start < end"):
        decode_video(clip, start=2, end=1)


def test_a_variable_frame_rate_keeps_its_timestamps(tmp_path: Path) -> None:
    times = [0.0, 0.04, 0.3, 0.31, 0.9, 1.0, 1.75]
    path = tmp_path / "vfr.mkv"
    make_video(path, frames=len(times), times=times)
    assert [f.time for f in decode_video(path)] == pytest.approx(times, abs=1e-3)
    # 2 per second: ticks 0, 0.5, 1.0, 1.5 -> nearest 0.0, 0.31 (|0.19| < |0.4|), 1.0, 1.75
    assert [f.index for f in decode_video(path, fps=2)] == [0, 3, 5, 6]


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied(tmp_path: Path, rotation: int) -> None:
    path = tmp_path / "phone.mp4"
    shown = make_video(path, frames=3, width=64, height=48, rotation=rotation)
    frames = list(decode_video(path))
    assert frames[0].pixels.shape == shown[0].shape  # displayed size, not stored
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (64, 48, rotation % 360)
    for frame, picture in zip(frames, shown, strict=True):  # the marker is top-left as shown
        assert np.abs(frame.pixels.astype(int) - picture).mean() < 6
        assert frame.pixels[:3, :6, 2].mean() < 60 and frame.pixels[:3, :6, 0].mean() > 200


@pytest.mark.parametrize(("codec", "suffix"), [("mpeg4", ".avi"), ("libvpx-vp9", ".webm")])
def test_other_codecs(tmp_path: Path, codec: str, suffix: str) -> None:
    path = tmp_path / f"clip{suffix}"
    shown = make_video(path, frames=8, codec=codec)
    frames = list(decode_video(path))
    assert [f.index for f in frames] == list(range(8))
    assert np.abs(frames[3].pixels.astype(int) - shown[3]).mean() < 8
    assert is_video(path)


def test_each_frame_is_segment_on_the_decoded_frame(seg: Segmenter, clip: Path) -> None:
    frames = list(decode_video(clip))
    alone = list(seg.segment_video(clip, NAMES, batch_size=4, deterministic=True))
    batched = list(seg.segment_video(clip, NAMES, batch_size=8))
    assert [r.index for r in alone] == [r.index for r in batched] == list(range(30))
    assert [r.time for r in alone] == [f.time for f in frames]
    for frame, exact, near in zip(frames, alone, batched, strict=True):
        reference = seg.segment(frame.pixels, NAMES)
        assert np.array_equal(exact.result.probs, reference.probs)
        assert np.array_equal(exact.result.label_map, reference.label_map)
        np.testing.assert_allclose(near.result.probs, reference.probs, rtol=0, atol=1e-5)
        assert exact.result.image is not None and exact.result.size == (48, 64)


def test_smoothing_is_the_moving_average_and_carries_over(seg: Segmenter, clip: Path) -> None:
    alpha = 0.3
    plain = [r.result.low_res_logits for r in seg.segment_video(clip, NAMES, deterministic=True)]
    smoothed = list(seg.segment_video(clip, NAMES, smooth=alpha, deterministic=True))
    state = plain[0]
    for frame, logits in zip(smoothed, plain, strict=True):
        state = logits if frame.index == 0 else torch.lerp(state, logits, alpha)
        torch.testing.assert_close(frame.result.low_res_logits, state, rtol=0, atol=1e-6)
    # a stream continued in another call with the smoother's saved state: the same results
    first = Smoother(alpha)
    head = list(seg.segment_video(clip, NAMES, smooth=first, end=1.0, deterministic=True))
    second = Smoother(alpha)
    second.load_state_dict(first.state_dict())
    tail = list(seg.segment_video(clip, NAMES, smooth=second, start_frame=10, deterministic=True))
    for got, want in zip(head + tail, smoothed, strict=True):
        assert got.index == want.index
        assert torch.equal(got.result.low_res_logits, want.result.low_res_logits)
    with pytest.raises(ValueError, match=r"smooth must be in \(0, 1\]"):
        seg.segment_video(clip, NAMES, smooth=0)


def test_frames_from_an_iterable(seg: Segmenter) -> None:
    frames = [np.full((20, 30, 3), 40 * i, np.uint8) for i in range(5)]
    results = list(seg.segment_video(iter(frames), NAMES, every=2, deterministic=True))
    assert [(r.index, r.time) for r in results] == [(0, None), (2, None), (4, None)]
    for r in results:
        assert np.array_equal(r.result.probs, seg.segment(frames[r.index], NAMES).probs)
    with pytest.raises(ValueError, match="need a video file"):
        seg.segment_video(iter(frames), NAMES, fps=2)
    with pytest.raises(TypeError, match="frame 1 must be a PIL image"):
        list(seg.segment_video(iter([frames[0], "x"]), NAMES))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_four_thousand_frames_run_with_flat_memory(seg: Segmenter) -> None:
    """A stream is never listed: RSS at frame 4,000 is that at frame 100, within 10 MB; results
    are dropped as they are consumed, as a user's loop does. Sized to what it proves: a result
    kept per frame costs 4.6 KB here, 17 MB over the 3,900 frames (measured), against 0.7-1.9 MB
    of allocator noise when none is kept."""
    frames = (np.full((24, 32, 3), i % 251, np.uint8) for i in range(4_000))
    at: dict[int, float] = {}
    count = 0
    for result in seg.segment_video(frames, NAMES, batch_size=16, keep_frames=False):
        count += 1
        assert result.index == count - 1
        if count in (100, 4_000):
            at[count] = _rss_mb()
    assert count == 4_000
    assert at[4_000] - at[100] < 10, at


def test_bad_inputs_are_one_line_errors_naming_the_file(seg: Segmenter, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    audio = tmp_path / "sound.m4a"
    make_audio(audio)
    empty = tmp_path / "empty.avi"  # AVI keeps a stream with no frame (MP4 drops it)
    make_video(empty, frames=0)
    whole = tmp_path / "whole.mp4"
    make_video(whole, frames=20)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    cases = {
        text: "is not a video FFmpeg can read",
        audio: "has no video stream (it holds audio)",
        empty: "has no video frames",
        truncated: "",
    }
    for path, message in cases.items():
        with pytest.raises(VideoError) as error:
            seg.segment_video(path, NAMES)
        assert str(path) in str(error.value) and message in str(error.value)
        assert "\n" not in str(error.value)
    assert not is_video(text) and not is_video(audio) and is_video(empty)
    with pytest.raises(FileNotFoundError, match="video not found"):
        seg.segment_video(tmp_path / "missing.mp4", NAMES)
    seg.max_image_pixels = 1000
    try:
        with pytest.raises(VideoError, match=r"64 x 48 pixels are over the limit of 1000"):
            seg.segment_video(whole, NAMES)
    finally:
        seg.max_image_pixels = 100_000_000


def test_a_truncated_stream_ends_after_the_frames_it_holds(tmp_path: Path) -> None:
    """Matroska with its index up front: cut in the middle, the frames before the cut decode
    and the stream ends (FFmpeg reports no error for a clean cut between packets)."""
    whole = tmp_path / "whole.mkv"
    make_video(whole, frames=40)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    try:
        indices = [f.index for f in decode_video(cut)]
    except VideoError as e:
        assert str(cut) in str(e) and "could not be decoded after frame" in str(e)
    else:
        assert 0 < len(indices) < 40 and indices == list(range(len(indices)))


def test_the_writer_keeps_size_times_and_joins_parts(tmp_path: Path) -> None:
    frames = [np.full((31, 45, 3), 10 * i, np.uint8) for i in range(6)]  # odd: 4:4:4
    times = [0.0, 0.1, 0.15, 0.5, 0.55, 1.2]
    parts = []
    for n, (a, b) in enumerate([(0, 4), (4, 6)]):
        with VideoWriter(tmp_path / f"p{n}.mp4", width=45, height=31, fps=10) as writer:
            for i in range(a, b):
                writer.write(frames[i], times[i])
        parts.append(tmp_path / f"p{n}.mp4")
    assert join_videos(parts, tmp_path / "all.mp4") == 6
    got = decoded(tmp_path / "all.mp4")
    assert [t for _, t, _ in got] == pytest.approx(times, abs=1e-4)
    assert all(p.shape == (31, 45, 3) for _, _, p in got)
    assert np.abs(got[5][2].astype(int) - frames[5]).max() <= 3
    bad = VideoWriter(tmp_path / "bad.mp4", width=45, height=31, fps=10)
    with pytest.raises(ValueError, match=r"frames must be 31 x 45 x 3"), bad as writer:
        writer.write(np.zeros((2, 2, 3), np.uint8))
    assert not (tmp_path / "bad.mp4").exists()
    assert math.isfinite(probe_video(tmp_path / "all.mp4").fps or 0)


def test_the_writer_gives_the_same_bytes_for_the_same_frames(tmp_path: Path) -> None:
    """A resumed labelling run compares its overlay with an uninterrupted one byte for byte:
    x264 runs on one thread (with frame threads it gave other bytes from run to run)."""
    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(12)]
    written = []
    for n in range(3):
        with VideoWriter(tmp_path / f"v{n}.mp4", width=64, height=48, fps=10) as writer:
            for i, frame in enumerate(frames):
                writer.write(frame, i / 10)
        written.append((tmp_path / f"v{n}.mp4").read_bytes())
    assert written[0] == written[1] == written[2]
