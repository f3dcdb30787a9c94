"""Shared fixtures: tiny random open_clip models built in the test run; no network."""

from __future__ import annotations

import os
import tempfile
import time

# Before huggingface_hub or ultralytics are imported anywhere: they read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["YOLO_OFFLINE"] = "1"
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="clsclip-yolo-"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    # N pytest-xdist workers of one torch thread each, and so the processes the tests start:
    # workers of all the cores each would fight over them (OpenMP threads spin), and a test
    # that compares its own results with a child process's bit for bit needs the same count.
    os.environ["OMP_NUM_THREADS"] = "1"

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from clsclip import ClsClipConfig, Segmenter

TINY_BACKBONE: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 6, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def tiny_config(**overrides: Any) -> ClsClipConfig:
    """A tiny ClsCLIP: 6-block ViT of width 64 with 8 px patches, at 64 px input (8 x 8 grid)."""
    fields: dict[str, Any] = {
        "backbone": TINY_BACKBONE,
        "pretrained": None,
        "image_size": 64,
        "injection_layers": (2, 3, 4),
        "decoder_channels": (32, 16, 8),
    }
    fields.update(overrides)
    return ClsClipConfig(**fields)


def tiny_segmenter(seed: int = 0, **overrides: Any) -> Segmenter:
    torch.manual_seed(seed)
    return Segmenter.from_config(tiny_config(**overrides), device="cpu")


@pytest.fixture(scope="session")
def segmenter() -> Segmenter:
    return tiny_segmenter()


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory: pytest.TempPathFactory, segmenter: Segmenter) -> Path:
    return segmenter.save_pretrained(tmp_path_factory.mktemp("model"))


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def wait_for(condition: Any, what: str, timeout: float = 120) -> None:
    """Wait until ``condition()`` holds (a state the test drove the code into), polling; fail
    naming ``what`` after ``timeout`` seconds, a deadline for a hung run, not a timing."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.01)


def import_when_run(**names: str) -> tuple[Any, Any]:
    """A module-scoped autouse fixture for a test file, and the namespace it fills:
    ``_libraries, lib = import_when_run(brush="label_studio_converter.brush",
    ClsClip="clsclip.integrations.autodistill:ClsClip")`` imports each ``module`` or
    ``module:attribute`` as ``lib.<name>`` when the file's first test runs, skipping the file as
    `pytest.importorskip` would where one is missing; not when each pytest-xdist worker collects
    the file (some of these libraries take seconds to import)."""
    from types import SimpleNamespace

    lib = SimpleNamespace()

    @pytest.fixture(scope="module", autouse=True)
    def _libraries() -> None:
        for name, spec in names.items():
            module, _, attribute = spec.partition(":")
            found = pytest.importorskip(module)
            setattr(lib, name, getattr(found, attribute) if attribute else found)

    return _libraries, lib


@pytest.fixture
def rgb_image() -> Image.Image:
    return Image.fromarray(random_rgb(37, 53))


def shared_export(
    factory: pytest.TempPathFactory, key: str, build: Any, **kwargs: Any
) -> tuple[Path, list[str]]:
    """An ONNX export made once per test run and shared by every test that asks for ``key``,
    also across the pytest-xdist workers (one exports, under a file lock, the others read it;
    each export costs seconds): ``build()`` gives the `Segmenter`, ``kwargs`` go to its
    ``export_onnx``. Every caller of a ``key`` must build the same model. Read it; copy it
    before changing anything. Returns the folder and the warnings the export gave."""
    import json
    import warnings

    from filelock import FileLock

    pytest.importorskip("onnxruntime")
    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder, said = root / "onnx" / key / "export", root / "onnx" / key / "warnings.json"
    (root / "onnx").mkdir(exist_ok=True)
    with FileLock(str(root / "onnx" / f"{key}.lock")):
        if not said.exists():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                build().export_onnx(folder, **kwargs)
            said.write_text(json.dumps([str(w.message) for w in caught]))
    return folder, json.loads(said.read_text())


def copy_graphs_from(monkeypatch: pytest.MonkeyPatch, source: Path) -> None:
    """Make `export_onnx` copy each graph from the export in ``source`` instead of tracing it:
    for tests of what an export does with its graphs (checks, quantisation, the folder swap,
    the config it writes) on a model whose network is ``source``'s (each trace costs seconds).
    """
    import shutil

    from clsclip.backends import onnx_export

    def copy(module: Any, args: Any, path: Path, *rest: Any) -> None:
        shutil.copyfile(source / path.name, path)

    monkeypatch.setattr(onnx_export, "_export", copy)


@pytest.fixture(scope="session")
def tiny_onnx_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The export of `tiny_segmenter()` (seed 0) with stored classes dog and cat
    (`shared_export`), and the warnings the export gave."""
    return shared_export(tmp_path_factory, "tiny", tiny_segmenter, classes=["dog", "cat"])


RAY_FILES = "test_ray"
"""Test files whose name starts so start Ray clusters: under pytest-xdist they run on one worker,
one file after the other (a Ray cluster takes the machine's cores while it starts)."""


SLOWEST = (
    RAY_FILES,
    "tests/test_equivalence.py",
    "tests/training/test_train.py",
    "tests/serving/test_server.py",
    "tests/backends/test_onnx.py",
)
"""The files (and the `RAY_FILES` together) that take longest, in that order (measured with
``--durations=0``, docs/architecture.md#how-the-tests-run): handed out first. xdist hands out
the files with most tests first, which left the Ray files to one worker at the end."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist with ``--dist loadfile`` (the README's test command): a file's tests run
    on one worker, so its module-scoped fixtures (saved models, ONNX exports) are built once,
    and the `RAY_FILES` run together on one worker; the `SLOWEST` files are handed out first."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return RAY_FILES if Path(path).name.startswith(RAY_FILES) else path

        def _assign_work_unit(self, node: Any) -> None:
            for scope in reversed(SLOWEST):  # the longest first: the workers end together
                if scope in self.workqueue:
                    self.workqueue.move_to_end(scope, last=False)
            super()._assign_work_unit(node)

    return ByFile(config, log)


def _missing_oracle(report: pytest.CollectReport | pytest.TestReport) -> str | None:
    """The reason of a skip for a missing library (``pytest.importorskip``), under CI."""
    if os.environ.get("CI") != "true" or not report.skipped:
        return None
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason if "could not import" in reason or "needs clsclip[" in reason else None


def _fail_in_ci(report: pytest.CollectReport | pytest.TestReport) -> None:
    reason = _missing_oracle(report)
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = f"CI installs every library the tests use, yet: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    """In CI (``CI=true``), where .ci/run installs every extra the tests use, a module or test
    skipped because an oracle library is missing (``pytest.importorskip``) fails instead: a
    check that did not run is not counted as passed."""
    outcome = yield
    _fail_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    _fail_in_ci(outcome.get_result())
