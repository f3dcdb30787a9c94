"""A run's videos on Ray Data (``clsclip segment --engine ray``): one video per task, on a pool
of `SegmentVideos` actors that load the model once each. A video is streamed on its actor
exactly as on the local engine (`clsclip.labelling.video.label_video`), so its files are the
same bytes; a worker that dies is replaced and the video retried, and the retry resumes from the
video's frame log at the first frame not written. A video that still fails is recorded as
failed; the run always ends."""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clsclip.labelling.inputs import InputImage
from clsclip.labelling.outputs import OutputOptions
from clsclip.labelling.ray_engine import SegmentBatch, start_run
from clsclip.labelling.run import Engine, RunState
from clsclip.labelling.video import VideoOptions, label_video
from clsclip.optional import require


class SegmentVideos(SegmentBatch):
    """A Ray Data callable class: rows of videos (``key``, ``path``, ``stem``) in, one column
    ``record`` (the video's manifest record, JSON) out. The constructor takes `SegmentBatch`'s
    arguments and ``video`` (`VideoOptions` as a dict)."""

    def __init__(self, model: str, classes: Sequence[Any], *, video: dict[str, Any],
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(model, classes, **kwargs)
        self.video = VideoOptions(**video)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = []
        for key, path, stem in zip(batch["key"], batch["path"], batch["stem"], strict=True):
            item = InputImage(str(key), Path(str(path)), True)
            record = label_video(self.segmenter, item, str(stem), self.options, self.video,
                                 run=self.run, threshold=self.threshold)  # fmt: skip
            records.append(json.dumps(record))
        return {"record": np.asarray(records)}


def ray_video_engine(
    model: str,
    options: OutputOptions,
    settings: VideoOptions,
    *,
    threshold: float | None,
    actors: int,
    gpus_per_actor: float,
    address: str | None,
    actor_kwargs: dict[str, Any],
    retries: int,
) -> Engine:
    """The videos on the Ray cluster, one per task (see the module's docstring)."""
    ray_data = require("ray.data", "ray", purpose="--engine ray")

    def run(
        videos: Sequence[InputImage], stems: dict[str, str], state: RunState
    ) -> Iterator[dict[str, Any]]:
        if not videos:
            return
        # a video out of retries is recorded below
        kwargs = start_run(ray_data, model, options, state.hash, threshold=threshold,
                           actors=actors, gpus_per_actor=gpus_per_actor, address=address,
                           actor_kwargs=actor_kwargs)  # fmt: skip
        kwargs["video"] = dataclasses.asdict(settings)
        rows = [{"key": v.key, "path": str(v.path), "stem": stems[v.key]} for v in videos]
        dataset = ray_data.from_items(rows, override_num_blocks=len(rows))
        pool = ray_data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
            mapped = dataset.map_batches(
                SegmentVideos, fn_constructor_kwargs=kwargs, batch_size=1, compute=pool,
                num_gpus=gpus_per_actor or None, batch_format="numpy", max_restarts=-1,
                max_task_retries=retries,
            )  # fmt: skip
        seen: set[str] = set()
        for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
            for text in batch["record"]:
                record = json.loads(str(text))
                if record.get("run") != state.hash:
                    continue
                seen.add(record["key"])
                yield record
        for video in videos:
            if video.key not in seen:
                yield {"key": video.key, "image": str(video.path), "stem": stems[video.key],
                       "kind": "video", "run": state.hash, "status": "failed",
                       "error": f"WorkerDied: its Ray worker died {retries + 1} time(s) on it "
                       "(killed for memory, or a crash in decoding or the model); --resume "
                       "goes on at its first frame not written"}  # fmt: skip

    return run
