"""Run by tests/integrations/test_fiftyone.py in a fresh process: a FiftyOne dataset of the
given images, `ClsClipModel` applied as a segmentation and as instances, labels saved to npz.

Usage: python fiftyone_apply.py MODEL CLASSES_JSON OUT.npz IMAGE ...
"""

from __future__ import annotations

import json
import sys

import fiftyone as fo
import numpy as np

from clsclip.integrations.fiftyone import ClsClipModel


def main(model: str, classes_json: str, out: str, *images: str) -> None:
    classes = json.loads(classes_json)
    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=path) for path in images])
    seg = ClsClipModel(model, classes, threshold=0.57)
    dataset.apply_model(seg, label_field="clsclip", batch_size=2)  # a batch of two sizes
    dataset.mask_targets["clsclip"] = seg.mask_targets
    dataset.save()
    dataset.apply_model(ClsClipModel(model, classes, threshold=0.57, instances=True),
                        label_field="instances")  # fmt: skip
    arrays: dict[str, np.ndarray] = {}
    by_path = {sample.filepath: sample for sample in dataset}
    for i, path in enumerate(images):
        sample = by_path[path]
        arrays[f"seg{i}"] = sample["clsclip"].mask
        height, width = arrays[f"seg{i}"].shape
        for name in classes:
            union = np.zeros((height, width), bool)
            for detection in sample["instances"].detections:
                if detection.label == name:
                    pasted = detection.to_segmentation(frame_size=(width, height), target=1)
                    union |= pasted.mask.astype(bool)
            arrays[f"inst{i}_{name}"] = union
    reloaded = fo.load_dataset(dataset.name)  # what the database kept
    targets = {str(k): v for k, v in reloaded.mask_targets["clsclip"].items()}
    arrays["targets"] = np.asarray(json.dumps(targets))
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:])
