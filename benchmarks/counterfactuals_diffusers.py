"""Images per second of the diffusers inpainting path (crop at native resolution, batched, paste back).

Run on a GPU with real weights (cached or reachable):
    ``python benchmarks/counterfactuals_diffusers.py --model stable-diffusion-v1-5/stable-diffusion-inpainting``
Without a GPU (or with ``--tiny``) it times the tiny random pipeline of ``hf_spurious.models.tiny`` on CPU,
which only checks the code path's overhead. Writes the "counterfactuals_diffusers" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_section


def scenes(n: int, w: int = 640, h: int = 480) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    images, masks = [], []
    for _ in range(n):
        images.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        m = np.zeros((h, w), bool)
        bw, bh = int(rng.integers(60, 220)), int(rng.integers(60, 180))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        m[y : y + bh, x : x + bw] = True
        masks.append(m)
    return images, masks


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="stable-diffusion-v1-5/stable-diffusion-inpainting")
    parser.add_argument(
        "--tiny", action="store_true", help="time the tiny random pipeline (default without GPU)"
    )
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--dtype", default=None, choices=[None, "fp16", "bf16", "fp32"])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from hf_spurious.synthesis.inpaint import get_inpainter

    gpu = torch.cuda.is_available()
    tiny = args.tiny or not gpu
    if not gpu:
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        steps = args.steps
        if tiny:
            from hf_spurious.models.tiny import save_tiny

            model, steps = str(save_tiny("inpaint", Path(tmp) / "tiny")), 2
        inp = get_inpainter(f"diffusers:{model}", steps=steps, batch_size=args.batch_size, dtype=args.dtype)
        images, masks = scenes(args.n)
        inp.inpaint(
            images[: args.batch_size], masks[: args.batch_size], seeds=list(range(args.batch_size))
        )  # warm-up
        if gpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        inp.inpaint(images, masks, seeds=list(range(args.n)))
        if gpu:
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    device = torch.cuda.get_device_name(0) if gpu else "CPU (1 thread)"
    what = "tiny random pipeline (code-path overhead only)" if tiny else f"`{args.model}`"
    md = (
        f"Diffusers inpainting of {args.n} 640x480 images (one box mask each), {what}, {steps} steps, "
        f"batch {args.batch_size}, native resolution {inp.resolution}px, device {device}: "
        f"**{args.n / wall:.1f} images/s** ({wall:.2f} s; model load and warm-up excluded; decode/encode not "
        "included, see the counterfactuals section). Reproduce on a GPU: "
        "`python benchmarks/counterfactuals_diffusers.py --model <id or dir>`."
    )
    print(md)
    if not args.no_write:
        write_section("counterfactuals_diffusers", md)


if __name__ == "__main__":
    main()
