"""A minimal app that runs an exported clsclip model with only numpy, pillow and onnxruntime.

    python examples/onnx_app.py EXPORT_DIR photo.jpg "dog" "cat" --out masks/

It reads everything it needs from EXPORT_DIR/clsclip-onnx.json: tokenises the class names with
CLIP's BPE (or takes their vectors from classes.npz), letterboxes the image, runs the views and
decode graphs, maps the low-resolution logits back to the image (bilinear, as
`torch.nn.functional.interpolate(align_corners=False)`), thresholds them and writes one 0/255
PNG per class. No torch, no clsclip: the reference for ports to C++, the browser or a phone.
(Plain ClsCLIP: the ClsCLIP+ zoom-in is left to the full library.)
"""

from __future__ import annotations

import argparse
import gzip
import html
import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


@lru_cache
def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


class ClipTokenizer:
    """CLIP's byte-level BPE (open_clip's SimpleTokenizer) with Python's ``re``: the same ids
    for class names in any alphabet ``re`` knows as letters."""

    # CLIP's pattern with \p{L} / \p{N} written for `re`: letters, single digits, other runs.
    PATTERN = re.compile(
        r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+",
        re.IGNORECASE,
    )

    def __init__(self, vocabulary: Path, settings: dict) -> None:
        lines = gzip.decompress(vocabulary.read_bytes()).decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
        vocab = list(_bytes_to_unicode().values())
        vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
        vocab += ["<start_of_text>", "<end_of_text>"]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.ranks = {merge: i for i, merge in enumerate(merges)}
        self.context = settings["context_length"]
        self.start, self.end = settings["start_token"], settings["end_token"]

    def _bpe(self, token: str) -> list[str]:
        word = [*token[:-1], token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def __call__(self, texts: list[str]) -> np.ndarray:
        table = _bytes_to_unicode()
        out = np.zeros((len(texts), self.context), dtype=np.int64)
        for row, text in enumerate(texts):
            text = " ".join(html.unescape(html.unescape(text)).strip().split()).lower()
            ids = [self.start]
            for token in self.PATTERN.findall(text):
                token = "".join(table[b] for b in token.encode("utf-8"))
                ids += [self.encoder[piece] for piece in self._bpe(token)]
            ids = [*ids[: self.context - 1], self.end]
            out[row, : len(ids)] = ids
        return out


def _resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``out x in`` bilinear weights (align_corners=False; source clamped at 0)."""
    if in_size == out_size:
        return np.eye(in_size)
    source = np.maximum((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0.0)
    lower = np.minimum(np.floor(source).astype(int), in_size - 1)
    upper = np.minimum(lower + 1, in_size - 1)
    weight = source - lower
    matrix = np.zeros((out_size, in_size))
    np.add.at(matrix, (np.arange(out_size), lower), 1.0 - weight)
    np.add.at(matrix, (np.arange(out_size), upper), weight)
    return matrix


class ExportedModel:
    """The graphs and the description of an export folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.spec = json.loads((folder / "clsclip-onnx.json").read_text())
        self.sessions = {
            name: ort.InferenceSession(
                str(folder / graph["file"]), providers=["CPUExecutionProvider"]
            )
            for name, graph in self.spec["graphs"].items()
        }
        self.tokenizer = ClipTokenizer(
            folder / self.spec["tokenizer"]["vocabulary"], self.spec["tokenizer"]
        )

    def class_vectors(self, names: list[str]) -> np.ndarray:
        stored = {}
        if "classes_file" in self.spec:
            with np.load(self.folder / self.spec["classes_file"]) as data:
                stored = dict(zip(data["names"].tolist(), data["vectors"], strict=True))
        missing = [n for n in names if n not in stored]
        if missing:
            templates = self.spec["prompt_templates"]
            ids = self.tokenizer([t.format(n) for n in missing for t in templates])
            (raw,) = self.sessions["text"].run(None, {"token_ids": ids})
            raw = raw.reshape(len(missing), len(templates), -1).astype(np.float64)
            if self.spec["text_normalize"]:
                raw = raw / np.linalg.norm(raw, axis=-1, keepdims=True)
                mean = raw.mean(axis=1)
                vectors = mean / np.linalg.norm(mean, axis=-1, keepdims=True)
            else:
                vectors = raw.mean(axis=1)
            stored.update(zip(missing, vectors.astype(np.float32), strict=True))
        return np.stack([stored[n] for n in names]).astype(np.float32)

    def letterbox(self, image: Image.Image) -> tuple[np.ndarray, tuple[int, int]]:
        """``1 x 3 x S x S`` normalised input and the resized (h, w) inside it."""
        size = self.spec["image_size"]
        if self.spec["resize_mode"] == "resize":
            h = w = size
        else:
            scale = size / max(image.height, image.width)
            h = min(size, max(1, round(image.height * scale)))
            w = min(size, max(1, round(image.width * scale)))
        if (h, w) != (image.height, image.width):
            image = image.resize((w, h), Image.Resampling.BICUBIC)
        array = np.asarray(image, dtype=np.float32) / np.float32(255.0)
        mean = np.asarray(self.spec["image_mean"], dtype=np.float32)
        std = np.asarray(self.spec["image_std"], dtype=np.float32)
        pixels = np.zeros((1, 3, size, size), dtype=np.float32)
        pixels[0, :, :h, :w] = ((array - mean) / std).transpose(2, 0, 1)
        return pixels, (h, w)

    def masks(
        self, image: Image.Image, names: list[str], threshold: float | None = None
    ) -> np.ndarray:
        """bool ``K x H x W`` masks of the named classes."""
        image = image.convert("RGB")
        vectors = self.class_vectors(names)
        pixels, (h, w) = self.letterbox(image)
        shared = self.sessions["views"].run(None, {"pixels": pixels})
        feed = {f"rows_{i}": np.repeat(x, len(names), axis=0) for i, x in enumerate(shared)}
        feed["class_vectors"] = vectors
        (logits,) = self.sessions["decode"].run(None, feed)  # K x g x g
        size = self.spec["image_size"]
        rows = _resize_matrix(h, image.height) @ _resize_matrix(logits.shape[1], size)[:h]
        cols = _resize_matrix(w, image.width) @ _resize_matrix(logits.shape[2], size)[:w]
        full = rows @ logits.astype(np.float64) @ cols.T  # K x H x W logits
        threshold = self.spec["threshold"] if threshold is None else threshold
        return 1.0 / (1.0 + np.exp(-full)) > threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("classes", nargs="+")
    parser.add_argument("--out", type=Path, default=Path("masks"))
    args = parser.parse_args()
    model = ExportedModel(args.export_dir)
    masks = model.masks(Image.open(args.image), args.classes)
    args.out.mkdir(parents=True, exist_ok=True)
    for k, (name, mask) in enumerate(zip(args.classes, masks, strict=True)):
        safe = re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "class"  # as clsclip names it
        Image.fromarray(mask.astype(np.uint8) * 255).save(args.out / f"mask{k:02d}_{safe}.png")
        print(f"{name}: {int(mask.sum())} pixels")


if __name__ == "__main__":
    main()
