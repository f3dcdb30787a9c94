"""Atomic folder swaps leave no temporaries behind and carry none over."""

from __future__ import annotations

import os

from clsclip.storage.files import temporary_sibling, write_folder


def test_stale_temporaries_inside_a_folder_are_not_carried_over(tmp_path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "README.md").write_text("mine")
    stale = temporary_sibling(folder / "model.safetensors")  # .model.safetensors.clsclip-tmp-...
    stale.write_bytes(b"half a file")
    dead = folder / ".config.json.clsclip-tmp-999999-deadbeef"
    dead.write_text("{")
    write_folder(
        folder, lambda tmp: (tmp / "config.json").write_text("{}"), replaces={"config.json"}
    )
    assert sorted(os.listdir(folder)) == ["README.md", "config.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
