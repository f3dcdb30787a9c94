"""Hostile model files, cases 7 and 8 of tests/test_failure_behaviour.py (numbered as in the
issue that listed them): corrupt weights are refused naming the tensor, and a save, however it is
interrupted, leaves the old model or the new one, never a mix."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from clsclip import ClsClipConfig, Segmenter
from tests.conftest import tiny_segmenter, wait_for

ROOT = Path(__file__).resolve().parents[2]


# 7. NaN and bit-flipped weights are refused, naming the tensor; old files still load.


def _weights_file(folder: Path) -> Path:
    return folder / "model.safetensors"


def test_07_corrupt_weights_are_refused(tmp_path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = tiny_segmenter().save_pretrained(tmp_path / "m")
    with safe_open(str(_weights_file(folder)), "pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    assert "clsclip_crc32" in metadata and "clsclip_config_sha256" in metadata
    # A flipped bit in the data: the checksum names the tensor.
    raw = bytearray(_weights_file(folder).read_bytes())
    raw[-3] ^= 0x10
    _weights_file(folder).write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"tensor '.+' does not match the checksum"):
        Segmenter.from_pretrained(folder, device="cpu")
    # A file from before checksums (no metadata) with a NaN: refused all the same.
    name = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(_weights_file(folder)))
    with pytest.raises(ValueError, match=f"tensor '{name}' has 1 NaN or infinite value"):
        Segmenter.from_pretrained(folder, device="cpu")
    tensors[name].view(-1)[0] = 0.0
    save_file(tensors, str(_weights_file(folder)))  # clean, without checksums: loads as before
    Segmenter.from_pretrained(folder, device="cpu")


# 8. A save leaves the old model or the new one, never a mix.


def test_08_mixed_folders_are_refused_and_edits_can_be_accepted(tmp_path) -> None:
    a = tiny_segmenter(seed=0).save_pretrained(tmp_path / "a")
    b = tiny_segmenter(seed=1, threshold=0.3).save_pretrained(tmp_path / "b")
    (a / "config.json").write_bytes((b / "config.json").read_bytes())
    with pytest.raises(ValueError, match="saved with another config.json"):
        Segmenter.from_pretrained(a, device="cpu")
    assert Segmenter.from_pretrained(a, device="cpu", verify=False).config.threshold == 0.3


def test_08_a_failing_save_keeps_the_old_model(tmp_path, monkeypatch) -> None:
    folder = tiny_segmenter(seed=0).save_pretrained(tmp_path / "m")
    (folder / "README.md").write_text("mine")
    before = _weights_file(folder).read_bytes()
    new = tiny_segmenter(seed=1, threshold=0.3)

    def crash(self, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(ClsClipConfig, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        new.save_pretrained(folder)
    monkeypatch.undo()
    assert _weights_file(folder).read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries
    new.save_pretrained(folder)
    assert Segmenter.from_pretrained(folder, device="cpu").config.threshold == 0.3
    assert (folder / "README.md").read_text() == "mine"  # the user's files are kept


_SAVE_LOOP = """
import os, sys, torch
sys.path.insert(0, {root!r})
from tests.conftest import tiny_segmenter
segs = [tiny_segmenter(seed=0, threshold=0.25), tiny_segmenter(seed=1, threshold=0.75)]
for line in sys.stdin:  # a saver per line read, forked: torch is imported once
    pid = os.fork()
    if pid == 0:
        i = 0
        while True:
            segs[i % 2].save_pretrained({folder!r})
            i += 1
    print(pid, flush=True)
    os.waitpid(pid, 0)
    print("reaped", flush=True)
"""


def test_08_killed_saves_never_mix(tmp_path) -> None:
    """A process saving two models in turn into one folder, killed (SIGKILL) at random
    moments, three times: the folder always holds one whole model or the other."""
    folder = tmp_path / "m"
    expected = {}
    for seed, threshold in ((0, 0.25), (1, 0.75)):
        seg = tiny_segmenter(seed=seed, threshold=threshold)
        expected[threshold] = seg.model.decoder.state_dict()
    script = _SAVE_LOOP.format(root=str(ROOT), folder=str(folder))
    rng = np.random.default_rng(0)
    # one thread: the savers are forked from a process that ran torch
    parent = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))  # fmt: skip
    assert parent.stdin is not None and parent.stdout is not None
    try:
        for _ in range(3):
            parent.stdin.write("go\n")
            parent.stdin.flush()
            saver = int(parent.stdout.readline())
            wait_for(lambda: (folder / "config.json").exists(), "a first save")
            time.sleep(0.2 + rng.random())  # a random moment of the save loop: not a timing
            os.kill(saver, signal.SIGKILL)
            assert parent.stdout.readline().strip() == "reaped"
            loaded = Segmenter.from_pretrained(folder, device="cpu")
            decoder = loaded.model.decoder.state_dict()
            for key, value in expected[loaded.config.threshold].items():
                assert torch.equal(decoder[key], value), key
    finally:
        parent.kill()
        parent.wait()
    tiny_segmenter().save_pretrained(folder)  # removes what killed saves left
    assert not [p for p in tmp_path.iterdir() if p.name != "m"]
