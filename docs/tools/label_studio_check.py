"""Import a labelling run's Label Studio files into a running Label Studio, and read them back.

By hand, not in the tests (Label Studio is a Django server with its own database). Start one:

    pip install label-studio          # in its own environment
    label-studio start --no-browser -p 8089 --username me@example.com --password PASS \
        --user-token TOKEN --enable-legacy-api-token

then, with a run made by ``clsclip segment ... --format label-studio``:

    python docs/tools/label_studio_check.py RUN_DIR --url http://127.0.0.1:8089 --token TOKEN

It creates a project whose labelling config is the run's ``label-studio.xml`` (Label Studio
validates it), imports ``label-studio.json``, reads every task and prediction back through the
API, and decodes
each brush region with Label Studio's converter: the masks must equal the ones the run wrote.
Prints one line per task and exits 1 on any difference. Needs ``label-studio-converter`` here
(the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from label_studio_converter.brush import decode_rle


def _call(url: str, token: str, method: str = "GET", body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Token {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read() or b"null")


def _masks(prediction: dict[str, Any]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for region in prediction["result"]:
        height, width = region["original_height"], region["original_width"]
        mask = decode_rle(region["value"]["rle"]).reshape(height, width, 4)[..., 3] == 255
        name = region["value"]["brushlabels"][0]
        out[name] = out.get(name, np.zeros_like(mask)) | mask
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8089")
    parser.add_argument("--token", required=True)
    args = parser.parse_args(argv)
    config = (args.run_dir / "label-studio.xml").read_text(encoding="utf-8")
    tasks = json.loads((args.run_dir / "label-studio.json").read_text(encoding="utf-8"))
    api = args.url.rstrip("/") + "/api"
    project = _call(f"{api}/projects", args.token, "POST",
                    {"title": f"clsclip {args.run_dir.name}", "label_config": config})  # fmt: skip
    imported = _call(f"{api}/projects/{project['id']}/import", args.token, "POST", tasks)
    print(f"project {project['id']}: imported {imported.get('task_count')} task(s), "
          f"{imported.get('prediction_count')} prediction(s)")  # fmt: skip
    stored = _call(f"{api}/tasks?project={project['id']}&page_size=100000&fields=all", args.token)
    stored = stored["tasks"] if isinstance(stored, dict) else stored
    by_key = {task["data"]["image"]: task for task in stored}
    bad = 0
    for task in tasks:
        back = by_key.get(task["data"]["image"])
        if back is None:
            print(f"MISSING {task['data']['image']}")
            bad += 1
            continue
        predictions = _call(f"{api}/predictions?task={back['id']}", args.token)
        (prediction,) = predictions
        sent, read = _masks(task["predictions"][0]), _masks(prediction)
        same = sent.keys() == read.keys() and all(np.array_equal(sent[n], read[n]) for n in sent)
        bad += not same
        pixels = sum(int(m.sum()) for m in read.values())
        print(f"{'ok  ' if same else 'DIFF'} task {back['id']} {task['meta']['clsclip_key']}: "
              f"{len(read)} class(es), {pixels} pixels, model_version "
              f"{prediction['model_version']!r}, score {prediction['score']}")  # fmt: skip
    print(f"{len(tasks) - bad} of {len(tasks)} task(s) read back with the same masks")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
