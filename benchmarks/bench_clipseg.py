"""clsclip's CLIPSeg against transformers' CLIPSeg on identical random weights.

ViT-B/16 CLIPSeg ("rd64-refined" architecture) at 352 px, one image with K prompts, text
encoding included in both. transformers repeats the image once per prompt; clsclip runs the
visual blocks once, and only up to the deepest extracted block.

    python benchmarks/bench_clipseg.py --device cpu --prompts 1 5 20 --repeats 3
    python benchmarks/bench_clipseg.py --device cuda --prompts 1 5 20 --repeats 10
    python benchmarks/bench_clipseg.py --config small   # width 512, 6 blocks, reduce dim 48

Prints a table (medians) with the largest logit difference, and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time

import torch
from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

from clsclip import Segmenter


def _median(fn, device: torch.device, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prompts", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", choices=("default", "small"), default="default")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.config == "small":  # where the per-prompt decoder weighs most
        vision = {"patch_size": 16, "hidden_size": 512, "num_hidden_layers": 6,
                  "num_attention_heads": 8, "intermediate_size": 2048}  # fmt: skip
        config = CLIPSegConfig(
            vision_config=vision,
            extract_layers=[1, 3, 5],
            reduce_dim=48,
            use_complex_transposed_convolution=True,
        )
    else:
        config = CLIPSegConfig(
            vision_config={"patch_size": 16}, use_complex_transposed_convolution=True
        )
    reference = CLIPSegForImageSegmentation(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        ours = Segmenter.from_pretrained(folder, device=device).model.eval()
    reference.to(device)
    pixels = torch.randn(1, 3, 352, 352, device=device)
    rows = []
    print(" prompts  transformers ms  clsclip ms  speed-up  max |diff|  max |logit|")
    for k in args.prompts:
        names = [f"a photo of object number {i}" for i in range(k)]
        ids = ours.tokenizer(names).to(device)
        # transformers' processor (padding=True) pads to the longest prompt, not to 77 tokens.
        ids = ids[:, : int(ids.argmax(dim=-1).max()) + 1]

        def run_reference(ids=ids, k=k):
            return reference(input_ids=ids, pixel_values=pixels.repeat(k, 1, 1, 1)).logits

        def run_ours(names=names):
            return ours.predict_logits(pixels, ours.encode_class_names(names), chunk_size=32)[0]

        with torch.inference_mode():
            # Agreement without TF32 (cuDNN convolutions use it by default on CUDA).
            torch.backends.cudnn.allow_tf32 = False
            expected = run_reference()
            diff = (run_ours() - expected).abs().max().item()
            scale = expected.abs().max().item()
            torch.backends.cudnn.allow_tf32 = True
            t_ref = _median(run_reference, device, args.repeats)
            t_ours = _median(run_ours, device, args.repeats)
        rows.append(
            {"prompts": k, "transformers_s": t_ref, "clsclip_s": t_ours, "speedup": t_ref / t_ours,
             "max_abs_diff": diff, "max_abs_logit": scale}
        )  # fmt: skip
        print(
            f"{k:8d} {t_ref * 1e3:16.1f} {t_ours * 1e3:11.1f} {t_ref / t_ours:9.1f} "
            f"{diff:11.2e} {scale:10.1f}"
        )
    if args.json:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        with open(args.json, "w") as f:
            json.dump(
                {"device": name, "threads": torch.get_num_threads(), "rows": rows}, f, indent=2
            )


if __name__ == "__main__":
    main()
