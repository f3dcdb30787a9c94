"""Label images in a Ray Data pipeline of one's own with clsclip's callable class.

    pip install "clsclip[ray]"
    python examples/ray_label.py MODEL_DIR_OR_HUB_ID images/ --classes dog cat --actors 2

`SegmentBatch` loads the model once per actor and returns only plain columns (key, status,
size, per-class COCO RLE masks with area and score); with ``out=`` it also writes each image's
files, as ``clsclip segment --engine ray`` does. Here the pipeline reads the files' bytes in CPU
tasks, segments them in actors, and prints one line per image.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import ray

from clsclip.labelling.ray_engine import SegmentBatch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a model folder or a Hugging Face Hub repo id")
    parser.add_argument("images", type=Path, help="a folder of images")
    parser.add_argument("--classes", nargs="+", required=True)
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--gpus-per-actor", type=float, default=0.0)
    parser.add_argument("--out", default=None, help="also write png masks and overlays here")
    args = parser.parse_args()

    ray.init(include_dashboard=False)
    paths = sorted(str(p) for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    dataset = ray.data.from_items([{"key": Path(p).name, "path": p} for p in paths])
    dataset = dataset.map(lambda row: {"key": row["key"], "bytes": Path(row["path"]).read_bytes()})
    dataset = dataset.map_batches(
        SegmentBatch,
        fn_constructor_kwargs={"model": args.model, "classes": args.classes, "out": args.out,
                               "formats": ["png"]},
        batch_size=4,
        compute=ray.data.ActorPoolStrategy(size=args.actors),
        num_gpus=args.gpus_per_actor or None,
        batch_format="numpy",
    )  # fmt: skip
    for row in dataset.iter_rows():
        if row["status"] != "ok":
            print(f"{row['key']}: failed: {row['error']}")
            continue
        found = {entry["name"]: entry["area"] for entry in json.loads(row["coco"])}
        print(f"{row['key']} ({row['width']} x {row['height']}): {found}")


if __name__ == "__main__":
    main()
