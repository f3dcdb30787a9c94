import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from clsclip import Segmenter
from tests.conftest import random_rgb


def _fake_hub_cache(cache: Path, repo_id: str, model_dir: Path) -> None:
    """Lay out a model as huggingface_hub caches it, so offline loading finds it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(model_dir / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_hub_repo_from_the_cache_offline(segmenter, saved_model, tmp_path) -> None:
    _fake_hub_cache(tmp_path, "someone/tiny-clsclip", saved_model)
    image = random_rgb(20, 30)
    expected = segmenter.segment(image, ["dog"]).probs
    for source in ("someone/tiny-clsclip", "hf-hub:someone/tiny-clsclip"):
        loaded = Segmenter.from_pretrained(source, device="cpu", cache_dir=str(tmp_path))
        np.testing.assert_allclose(loaded.segment(image, ["dog"]).probs, expected, atol=1e-6)


def test_missing_hub_model_offline_fails_fast(tmp_path) -> None:
    start = time.perf_counter()
    with pytest.raises(OSError, match="'someone/absent' is not available offline"):
        Segmenter.from_pretrained("someone/absent", cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 5


def test_local_folder_errors(tmp_path, saved_model) -> None:
    with pytest.raises(FileNotFoundError, match="model folder not found: .*nowhere"):
        Segmenter.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        Segmenter.from_pretrained("./relative/missing/dir")
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        Segmenter.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text((saved_model / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="reads only safetensors, never pickle"):
        Segmenter.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="model source must be a str or a path"):
        Segmenter.from_pretrained(42)  # type: ignore[arg-type]


def test_invalid_repo_id() -> None:
    with pytest.raises(FileNotFoundError, match="neither a local model folder nor a valid Hub"):
        Segmenter.from_pretrained("bad repo id!")


def test_push_to_hub_uploads_a_loadable_folder(monkeypatch, segmenter, tmp_path) -> None:
    import huggingface_hub

    calls = {}

    def create_repo(self, repo_id, private=None, exist_ok=False):
        calls["create"] = (repo_id, private, exist_ok)

    def upload_folder(self, repo_id, folder_path, revision=None, commit_message=""):
        shutil.copytree(folder_path, tmp_path / "uploaded")
        calls["upload"] = (repo_id, commit_message)
        return "https://huggingface.co/me/model/commit/abc"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    url = segmenter.push_to_hub("me/model", private=True)
    assert url.endswith("/commit/abc")
    assert calls["create"] == ("me/model", True, True)
    uploaded = tmp_path / "uploaded"
    assert sorted(p.name for p in uploaded.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    assert "library_name: clsclip" in (uploaded / "README.md").read_text()
    image = random_rgb(16, 16)
    np.testing.assert_allclose(
        Segmenter.from_pretrained(uploaded, device="cpu").segment(image, ["cat"]).probs,
        segmenter.segment(image, ["cat"]).probs,
        atol=1e-6,
    )
