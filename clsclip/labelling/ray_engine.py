"""Labelling on Ray Data (``clsclip segment --engine ray``, extra ``clsclip[ray]``).

Image paths in; `SegmentBatch`, a callable class that loads the
`Segmenter` once per actor, segments each batch and writes each image's files with the same
atomic, idempotent writes as the local engine; only plain columns come back to the driver, which
keeps the manifest. Ray replaces dead actors and retries a dead worker's batch a bounded number
of times; a batch that keeps failing is retried image by image, and an image that kills its
worker alone too is recorded as failed (`ray_engine`). Since every write is keyed by the image,
a retry never duplicates or mixes.

`SegmentBatch` is public for Ray pipelines of one's own (see examples/ray_label.py).
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clsclip.checks import MAX_IMAGE_PIXELS
from clsclip.classes import specs_identity
from clsclip.labelling.inputs import InputImage, default_stem
from clsclip.labelling.outputs import OutputOptions, write_outputs
from clsclip.labelling.run import Engine, RunState, failed_record, ok_record
from clsclip.optional import require

logger = logging.getLogger(__name__)


class SegmentBatch:
    """A Ray Data callable class: a batch of images in, plain columns out.

    ``ds.map_batches(SegmentBatch, fn_constructor_kwargs={"model": ..., "classes": [...]},
    compute=ray.data.ActorPoolStrategy(size=2), batch_size=8)``. The constructor runs once per
    actor and loads the model there.

    Input columns: one of ``path`` (str), ``bytes`` (an encoded image file) or ``image``
    (``H x W x 3`` uint8); optional ``key`` (default: the path, or the row's position),
    ``stem`` (the output files' stem; default from the key), ``error`` (a decoding stage's
    message: the row is passed on as failed).

    Output columns, one row per input row: ``key``, ``status`` (``"ok"`` / ``"failed"``),
    ``error`` (``""`` when ok), ``height``, ``width``, ``coco`` (JSON: one entry per class with
    a non-empty mask: ``category_id`` k + 1, ``name``, ``segmentation`` as COCO compressed RLE,
    ``area``, ``bbox``, ``score``), ``outputs`` (JSON list of the files written, relative to
    ``out``), ``stem``, ``run`` (the run's hash), ``seconds``. Never dense tensors.

    Args:
        model: a model folder or Hub repo id (as `Segmenter.from_pretrained` takes).
        classes: the class names, or class specs (as `clsclip.classes.specs_identity` writes them).
        out: where to write each image's files (None: write nothing, return the columns).
        formats: output formats (see `clsclip.labelling.outputs.FORMATS`).
        threshold: mask threshold (None: the model's).
        instances: COCO entries per connected component.
        run: the run's hash, copied into every row.
        device, precision, backend, revision, chunk_size: as `Segmenter.from_pretrained`.
        threads: torch threads in the actor (None: torch's default; Ray sets one per CPU it
            gave the actor).
        boxes: ClsCLIP+ boxes per class for every image; or ``proposals="yolo"`` with
            ``yolo_model`` / ``yolo_conf``.
        max_image_pixels: the pixel limit of images.
        tracker: the detector's tracker config (videos: `clsclip.labelling.ray_video`).
    """

    def __init__(
        self,
        model: str,
        classes: Sequence[Any],
        *,
        out: str | None = None,
        formats: Sequence[str] = ("coco",),
        threshold: float | None = None,
        instances: bool = False,
        run: str = "",
        device: str | None = None,
        precision: str = "fp32",
        backend: str = "torch",
        revision: str | None = None,
        chunk_size: int = 16,
        threads: int | None = None,
        boxes: dict[str, list[list[float]]] | None = None,
        proposals: str = "none",
        yolo_model: str = "yolo11n.pt",
        yolo_conf: float = 0.25,
        max_image_pixels: int | None = MAX_IMAGE_PIXELS,
        min_score: float | None = None,
        tracker: str | None = None,
    ) -> None:
        import torch

        from clsclip.classes import resolve_classes
        from clsclip.proposals import BoxProposer, YoloProposer
        from clsclip.segmenter import Segmenter

        if threads:
            torch.set_num_threads(threads)
        self.segmenter = Segmenter.from_pretrained(
            model, device=device, precision=precision, backend=backend,  # type: ignore[arg-type]
            revision=revision, chunk_size=chunk_size,
        )  # fmt: skip
        self.segmenter.max_image_pixels = max_image_pixels
        if boxes is not None:
            self.segmenter.proposer = BoxProposer(boxes)
        elif proposals == "yolo":
            self.segmenter.proposer = YoloProposer(
                yolo_model, conf=yolo_conf, device=str(self.segmenter.device), tracker=tracker
            )
        self.specs = resolve_classes(classes)  # names, or specs as `specs_identity` writes them
        self.classes = [spec.name for spec in self.specs]
        self.threshold = threshold
        self.run = run
        self.options = OutputOptions(
            Path(out) if out else Path("."),
            tuple(self.classes),
            tuple(formats),
            instances,
            tuple(self.specs),
            min_score,
        )
        self.write = out is not None
        texts = [t for spec in self.specs for t in (*spec.prompts, *spec.negatives)]
        self.segmenter.encode_classes(list(dict.fromkeys(texts)))  # checks, fills the cache

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        count = len(next(iter(batch.values())))
        keys = [str(k) for k in batch["key"]] if "key" in batch else self._default_keys(batch)
        stems = (
            [str(s) for s in batch["stem"]] if "stem" in batch else [default_stem(k) for k in keys]
        )
        errors = [str(e) for e in batch.get("error", [""] * count)]
        images = self._images(batch, count)
        good = [i for i in range(count) if not errors[i]]
        outcomes = self.segmenter.segment_many(
            [images[i] for i in good], self.options.segment_classes, threshold=self.threshold,
            keep_images="png" in self.options.formats, deterministic=True,
            min_score=self.options.min_score,
        )  # fmt: skip
        rows: list[dict[str, Any]] = [
            self._row(keys[i], stems[i], "failed", errors[i]) for i in range(count)
        ]
        start = time.perf_counter()
        for outcome in outcomes:
            i = good[outcome.index]
            if outcome.error is not None:
                rows[i] = self._row(keys[i], stems[i], "failed", outcome.error)
                continue
            try:
                rows[i] = self._segmented(keys[i], stems[i], outcome.result)
            except Exception as e:  # a per-image failure (a full disk, ...): counted, passed
                rows[i] = self._row(keys[i], stems[i], "failed", f"{type(e).__name__}: {e}")
            now = time.perf_counter()
            rows[i]["seconds"] = now - start
            start = now
        return {name: np.asarray([row[name] for row in rows]) for name in rows[0]} if rows else {}

    def _default_keys(self, batch: dict[str, np.ndarray]) -> list[str]:
        if "path" in batch:
            return [str(p) for p in batch["path"]]
        count = len(next(iter(batch.values())))
        return [str(i) for i in range(count)]

    def _images(self, batch: dict[str, np.ndarray], count: int) -> list[Any]:
        if "image" in batch:
            return [np.asarray(x) for x in batch["image"]]
        if "bytes" in batch:
            return [bytes(x) for x in batch["bytes"]]
        if "path" in batch:
            return [str(p) for p in batch["path"]]
        raise ValueError("a SegmentBatch batch needs a 'path', 'bytes' or 'image' column")

    def _row(self, key: str, stem: str, status: str, error: str) -> dict[str, Any]:
        return {"key": key, "status": status, "error": error, "height": 0, "width": 0,
                "coco": "[]", "outputs": "[]", "stem": stem, "run": self.run,
                "seconds": 0.0}  # fmt: skip

    def _segmented(self, key: str, stem: str, result: Any) -> dict[str, Any]:
        files: list[str] = []
        annotations: list[dict[str, Any]] = []
        if self.write:
            files, annotations = write_outputs(result, self.options, key, stem)
        if not annotations:
            annotations = result.to_coco(image_id=0)
        coco = [
            {k: v for k, v in a.items() if k not in ("image_id", "iscrowd")}
            | {"name": self.classes[a["category_id"] - 1]}
            for a in annotations
        ]
        height, width = result.size
        row = self._row(key, stem, "ok", "")
        row.update(height=height, width=width, coco=json.dumps(coco), outputs=json.dumps(files))
        return row


RETRIES = 2
"""Default retries of a Ray task or actor call whose worker died (``--ray-retries``)."""


RAY_NOTICES = {
    "ray": logging.WARNING,
    "ray.data": logging.ERROR,  # its plan, progress and "progress bars disabled" (set here)
    "ray._private.authentication.authentication_token_setup": logging.ERROR,
}
"""Ray's loggers and the level they get without ``-v``: Ray Data configures ``ray.data`` to
log each dataset's plan and timing at INFO, and a local cluster announces that token
authentication is on (it is: the secure default, nothing to act on)."""


def quiet_ray_logs() -> None:
    """Keep Ray's INFO lines and its notices out of the command's output (`RAY_NOTICES`)."""
    for name, level in RAY_NOTICES.items():
        logging.getLogger(name).setLevel(level)


def prepare_cluster(address: str | None, *, actors: int, gpus_per_actor: float) -> None:
    """Join (or start) the Ray cluster and check that it can run the actors, before the run
    writes anything: an unreachable ``address`` fails within seconds (Ray itself retries for
    minutes), and a pool the cluster's GPUs or CPUs cannot hold is refused (Ray would wait for
    them forever). `ValueError` naming what is missing."""
    import socket

    ray = require("ray", "ray", purpose="--engine ray")
    if ray.is_initialized():
        return
    if address not in (None, "auto", "local") and not address.startswith("ray://"):
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=10).close()
        except (OSError, ValueError) as e:
            raise ValueError(f"--ray-address {address}: cannot reach a Ray cluster there "
                             f"({e})") from None  # fmt: skip
    if not logger.isEnabledFor(logging.INFO):  # -v shows them
        quiet_ray_logs()
    # "local": a cluster of this run's own; ray.init() with no address would join any cluster
    # running on this machine (another run's, or one still shutting down)
    ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
             configure_logging=False)  # fmt: skip
    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    logger.info("the Ray cluster: %d node(s), %g CPUs, %g GPUs", nodes, cpus, gpus)
    if gpus_per_actor * actors > gpus:
        ray.shutdown()
        needed = gpus_per_actor * actors
        raise ValueError(f"--actors {actors} x --gpus-per-actor {gpus_per_actor:g} needs "
                         f"{needed:g} GPUs; the Ray cluster has {gpus:g}")  # fmt: skip
    if gpus_per_actor == 0 and actors > cpus:
        ray.shutdown()
        raise ValueError(f"--actors {actors} need a CPU each; the Ray cluster has {cpus:g}")


def start_run(
    ray_data: Any, model: str, options: OutputOptions, run: str, *, threshold: float | None,
    actors: int, gpus_per_actor: float, address: str | None, actor_kwargs: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """What every Ray run does before its dataset, in one place for the image and the video
    engines: join (or start) the cluster (`prepare_cluster`), set Ray Data to keep going past a
    block out of retries (the engine records it) without progress bars, and give the actors'
    constructor arguments (`SegmentBatch`'s). Without ``address`` (nor ``RAY_ADDRESS``), the run
    starts a Ray cluster of its own, never joining one already running on the machine, and its
    actors share this machine's cores unless ``actor_kwargs`` names ``threads``."""
    if address is None:  # Ray's own variable names a cluster to join, as for `ray` commands
        address = os.environ.get("RAY_ADDRESS") or None
    prepare_cluster(address, actors=actors, gpus_per_actor=gpus_per_actor)
    context = ray_data.DataContext.get_current()
    context.enable_progress_bars = False
    context.max_errored_blocks = -1
    classes = specs_identity(options.specs) if options.specs else list(options.classes)
    kwargs = {"model": model, "classes": classes, "out": str(options.out),
              "formats": list(options.formats), "threshold": threshold,
              "min_score": options.min_score, "instances": options.instances, "run": run,
              **actor_kwargs}  # fmt: skip
    if kwargs.get("threads") is None and address is None:
        kwargs["threads"] = max(1, (os.cpu_count() or 1) // max(1, actors))
    return kwargs


def ray_engine(
    model: str,
    options: OutputOptions,
    *,
    threshold: float | None,
    batch_size: int,
    actors: int,
    gpus_per_actor: float,
    address: str | None,
    actor_kwargs: dict[str, Any],
    retries: int = RETRIES,
) -> Engine:
    """The run on a Ray cluster: a local one started here (``address`` None), or the cluster at
    ``address`` (``"auto"`` or ``host:port``; the output folder must then be on storage every
    node writes to).

    A worker that dies (killed for memory, a crash in a decoder or the model) is replaced and
    its batch retried up to ``retries`` times; a batch that still fails is left out, its images
    are retried one by one in a second pass, and an image that fails alone too is recorded as
    failed with the reason. The run always ends."""
    require("ray", "ray", purpose="--engine ray")
    ray_data = require("ray.data", "ray", purpose="--engine ray")

    def run(
        images: Sequence[InputImage], stems: dict[str, str], state: RunState
    ) -> Iterator[dict[str, Any]]:
        if not images:
            return
        # a batch out of retries is left out by Ray Data and retried below
        kwargs = start_run(ray_data, model, options, state.hash, threshold=threshold,
                           actors=actors, gpus_per_actor=gpus_per_actor, address=address,
                           actor_kwargs=actor_kwargs)  # fmt: skip
        by_key = {image.key: image for image in images}
        rows = [{"key": i.key, "path": str(i.path), "stem": stems[i.key]} for i in images]
        seen: set[str] = set()
        for size in (batch_size, 1):  # then the left-out images, each alone
            todo = [row for row in rows if row["key"] not in seen]
            if not todo:
                break
            if size == 1:
                logger.warning("%d image(s) whose batch failed %d time(s): each alone now",
                               len(todo), retries + 1)  # fmt: skip
            dataset = _dataset(ray_data, todo, kwargs, size, actors, gpus_per_actor, retries)
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                for i in range(len(batch["key"])):
                    seen.add(str(batch["key"][i]))
                    yield _record(batch, i, by_key, state, options)
        for row in rows:
            if row["key"] not in seen:
                yield failed_record(
                    by_key[row["key"]], row["stem"],
                    f"WorkerDied: its Ray worker died {retries + 1} time(s) on it, also alone "
                    "(killed for memory, or a crash in decoding or the model)", state.hash,
                )  # fmt: skip

    return run


def _dataset(
    ray_data: Any, rows: list[dict[str, Any]], kwargs: dict[str, Any], batch_size: int,
    actors: int, gpus_per_actor: float, retries: int,
) -> Any:  # fmt: skip
    """The `SegmentBatch` actors over the rows' paths (each actor decodes its batch: a separate
    decoding stage with retry settings of its own would not fuse with the actors, and on a
    machine whose CPUs the actors hold it would never run). A call whose worker dies is retried
    at most ``retries`` times; actors are replaced, never given up (a pool out of restarts
    hangs Ray Data)."""
    # one block per batch of rows: a worker that dies takes down no other batch's images
    dataset = ray_data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // batch_size)))
    # images alone (batch_size 1): one call per actor at a time, so an image that kills its
    # actor takes no other image's call down with it
    pool = ray_data.ActorPoolStrategy(
        size=actors, max_tasks_in_flight_per_actor=1 if batch_size == 1 else None
    )
    with warnings.catch_warnings():  # Ray 2.60 deprecates remote args (retries, restarts)
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        return dataset.map_batches(
            SegmentBatch, fn_constructor_kwargs=kwargs, batch_size=batch_size, compute=pool,
            num_gpus=gpus_per_actor or None, batch_format="numpy", max_restarts=-1,
            max_task_retries=retries,
        )  # fmt: skip


def _record(
    batch: dict[str, np.ndarray], i: int, by_key: dict[str, InputImage], state: RunState,
    options: OutputOptions,
) -> dict[str, Any]:  # fmt: skip
    image = by_key[str(batch["key"][i])]
    stem = str(batch["stem"][i])
    if str(batch["run"][i]) != state.hash:
        return failed_record(image, stem, "a worker answered for another run", state.hash)
    if str(batch["status"][i]) != "ok":
        return failed_record(image, stem, str(batch["error"][i]), state.hash)
    size = (int(batch["height"][i]), int(batch["width"][i]))
    files = json.loads(str(batch["outputs"][i]))
    return ok_record(image, stem, files, size, state.hash, float(batch["seconds"][i]),
                     options.formats)  # fmt: skip
