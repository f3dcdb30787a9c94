"""Call ``clsclip serve`` from an app: send an image and class names, get masks back.

    clsclip serve --model examples/demo-model &          # in another terminal
    python examples/client.py examples/images/shapes.png "red disc" "blue square"

Needs only httpx, numpy and pillow on the client (pycocotools to decode the masks, or
``--label-png`` for the palette label map instead). With ``clsclip serve --api-key-env VAR``,
pass the key with ``--key`` or the environment variable CLSCLIP_API_KEY.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def segment(
    url: str,
    image: Path,
    classes: list[str],
    *,
    key: str | None = None,
    threshold: float | None = None,
    label_png: bool = False,
    retries: int = 5,
) -> httpx.Response:
    """POST /v1/segment; waits and retries as the server says when it is busy (503)."""
    data = {"classes": json.dumps(classes), "format": "label_png" if label_png else "json"}
    if threshold is not None:
        data["threshold"] = str(threshold)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    files = {"image": (image.name, image.read_bytes())}
    for _ in range(retries):
        response = httpx.post(f"{url}/v1/segment", files=files, data=data, headers=headers,
                              timeout=120)  # fmt: skip
        if response.status_code != 503:
            return response
        time.sleep(float(response.headers.get("Retry-After", "1")))
    return response


def main() -> int:
    parser = argparse.ArgumentParser(description="segment an image with a clsclip server")
    parser.add_argument("image", type=Path)
    parser.add_argument("classes", nargs="+")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", default=os.environ.get("CLSCLIP_API_KEY"))
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--label-png", type=Path, default=None, help="save the label map here")
    args = parser.parse_args()
    response = segment(args.url, args.image, args.classes, key=args.key,
                       threshold=args.threshold, label_png=args.label_png is not None)  # fmt: skip
    if response.status_code != 200:  # {"error": {"code", "message", "limit"}}
        print(f"{response.status_code}: {response.json()['error']['message']}", file=sys.stderr)
        return 1
    if args.label_png is not None:
        args.label_png.write_bytes(response.content)
        labels = np.asarray(Image.open(io.BytesIO(response.content)))
        print(f"label map {labels.shape[1]} x {labels.shape[0]} -> {args.label_png}")
        for k, name in enumerate(args.classes):
            print(f"  {name}: {int((labels == k + 1).sum())} pixels")
        return 0
    answer = response.json()
    print(f"{answer['width']} x {answer['height']}, model {answer['model']}")
    for entry in answer["classes"]:
        name, area, score = entry["name"], entry["area"], entry["score"]
        print(f"  {entry['label']} {name}: area {area}, score {score:.3f}")
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        return 0
    for entry in answer["classes"]:
        rle = {"size": entry["mask"]["size"], "counts": entry["mask"]["counts"].encode()}
        mask = mask_utils.decode(rle).astype(bool)  # H x W, as result.mask(name) in-process
        assert int(mask.sum()) == entry["area"]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
