"""One GPU run of the paper-scale measurements (random weights, published configs), in bf16, < 8 minutes.

With CUDA: (1) the real-geometry parts of ``real_geometry.py`` for CLIP ViT-B/32, CLIP ViT-L/14@336 and BLIP
ITM base at GPU batch sizes (embedding throughput, GradCAM, one training step per freezing policy, ITM
re-ranking of 128 candidates); (2) SD-1.5 inpainting throughput through ``DiffusersInpainter`` (batched,
crop-around-mask at 512 px, 25 steps) on 640x480 images; (3) the exact top-10 retrieval engine at COCO scale
(5,000 queries x 616,767 gallery captions, d = 512). Writes one markdown table (``--out``, default
``gpu_suite.md``) and prints it.

Without CUDA (or with ``--dry-run``) it lists what it would run with a run-time estimate and exits 0.
Needs only ``make install`` (no downloads: every model is built from ``hf_spurious/models/configs``).

Run: ``.venv/bin/python benchmarks/gpu_suite.py [--dry-run] [--out gpu_suite.md]``
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _geometry as g

SIZES = {  # per model: images / captions embedded, GradCAM images, training batch
    "clip-vit-base-patch32": {"n_images": 256, "n_texts": 1024, "cam_images": 32, "train_batch": 128},
    "clip-vit-large-patch14-336": {"n_images": 64, "n_texts": 1024, "cam_images": 8, "train_batch": 16},
    "blip-itm-base-coco": {"n_images": 128, "n_texts": 1024, "cam_images": 16, "train_batch": 16},
}
INPAINT = {"images": 16, "batch": 8, "steps": 25}
RETRIEVAL = {"queries": 5_000, "gallery": 616_767, "dim": 512, "k": 10}
# Seconds on one A100-class GPU (ESTIMATES: FLOPs counted by benchmarks/flops.py at ~100 TFLOP/s sustained,
# plus model building on the CPU, which dominates the small parts).
ESTIMATE_S = {
    "clip-vit-base-patch32": 40,
    "clip-vit-large-patch14-336": 110,
    "blip-itm-base-coco": 70,
    "inpaint": 80,
    "retrieval": 15,
}


def plan() -> list[tuple[str, str, float]]:
    """(what, detail, estimated seconds) of every job."""
    jobs = []
    for model, s in SIZES.items():
        parts = [p for p in g.PARTS if p != "itm" or model.startswith("blip")]
        jobs.append((model, f"{', '.join(parts)}; sizes {s}", ESTIMATE_S[model]))
    jobs.append(("sd-1.5-inpainting", f"DiffusersInpainter bf16, {INPAINT}", ESTIMATE_S["inpaint"]))
    jobs.append(
        ("retrieval engine", f"topk_similarities exact-bf16 on CUDA, {RETRIEVAL}", ESTIMATE_S["retrieval"])
    )
    return jobs


def dry_run(reason: str) -> None:
    print(reason)
    print("It would run (random-weight models from the published configs, bf16):\n")
    print("| job | what | estimated s |\n| --- | --- | ---: |")
    total = 0.0
    for what, detail, est in plan():
        total += est
        print(f"| {what} | {detail} | {est:.0f} |")
    print(f"\nEstimated total: {total / 60:.1f} min on one A100-class GPU (an ESTIMATE, see ESTIMATE_S).")


def _reset(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float:
    return g.peak_mb(device) / 1024


def _model_rows(model: str, device: str, sizes: dict) -> list[tuple[str, str, str, float, float]]:
    s = sizes[model]
    master = g.build_adapter(model, "cpu")
    rows = []
    for part in g.PARTS:
        if part == "itm" and not model.startswith("blip"):
            continue
        adapter = copy.deepcopy(master).to(device)
        _reset(device)
        if part == "embed":
            r = g.part_embed(adapter, device, "bf16", s["n_images"], s["n_texts"])
            res = f"{r['images_per_s']:,.0f} images/s, {r['texts_per_s']:,.0f} texts/s"
            secs = r["image_s"] + r["text_s"]
        elif part == "gradcam":
            r = g.part_gradcam(adapter, device, "bf16", s["cam_images"])
            res, secs = f"grid {r['grid']}: {r['s_per_map'] * 1e3:.1f} ms/map", r["seconds"]
        elif part == "itm":
            n = s.get("itm_candidates", 128)
            r = g.part_itm(adapter, device, "bf16", n, 64)
            res, secs = f"{n} candidates: vision {r['vision_s']:.2f} s of it", r["seconds"]
        else:
            r = g.part_train(adapter, device, "bf16", part.removeprefix("train-"), s["train_batch"])
            res, secs = f"batch {s['train_batch']}, trainable {r['trainable']}", r["seconds"]
        rows.append((model, part, res, secs, _peak_gib(device)))
        del adapter
    return rows


def _inpaint_row(device: str, cfg: dict, overrides: dict | None) -> tuple[str, str, str, float, float]:
    inpainter = g.build_inpainter(device, "bf16", overrides, steps=cfg["steps"], batch_size=cfg["batch"])
    g.part_inpaint(inpainter, device, 1)  # warm-up
    _reset(device)
    r = g.part_inpaint(inpainter, device, cfg["images"])
    res = f"{cfg['images'] / r['seconds']:.2f} images/s ({cfg['steps']} steps, batch {cfg['batch']})"
    return ("sd-1.5-inpainting", "inpaint 640x480", res, r["seconds"], _peak_gib(device))


def _retrieval_row(device: str, cfg: dict) -> tuple[str, str, str, float, float]:
    import torch
    import torch.nn.functional as F

    from hf_spurious.evaluation.topk import topk_similarities

    gen = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(cfg["queries"], cfg["dim"], generator=gen), dim=1)
    gal = F.normalize(torch.randn(cfg["gallery"], cfg["dim"], generator=gen), dim=1)
    _reset(device)
    with g.timer(out := {}, "seconds", device):
        topk_similarities(q, gal, cfg["k"], device=device, progress=False)
    res = f"exact top-{cfg['k']}, {cfg['queries']:,} x {cfg['gallery']:,}"
    return ("retrieval engine", "top-k", res, out["seconds"], _peak_gib(device))


SMOKE = {
    "sizes": {"clip-vit-base-patch32": {"n_images": 2, "n_texts": 4, "cam_images": 1, "train_batch": 2}},
    "inpaint": {"images": 1, "batch": 1, "steps": 1},
    "inpaint_overrides": {
        "unet": {"block_out_channels": [32, 64, 64, 64]},
        "vae": {"block_out_channels": [32, 32, 64, 64]},
    },
    "retrieval": {"queries": 64, "gallery": 20_000, "dim": 512, "k": 10},
}
"""``--cpu-smoke``: the same code on the CPU at toy sizes (CLIP B/32 only, a narrow UNet), to test the script."""


def run(out: Path, device: str, smoke: bool) -> None:
    import torch

    sizes = SMOKE["sizes"] if smoke else SIZES
    t0 = time.perf_counter()
    rows = []
    for model in sizes:
        rows += _model_rows(model, device, sizes)
    if smoke:
        rows.append(_inpaint_row(device, SMOKE["inpaint"], SMOKE["inpaint_overrides"]))
        rows.append(_retrieval_row(device, SMOKE["retrieval"]))
    else:
        rows.append(_inpaint_row(device, INPAINT, None))
        rows.append(_retrieval_row(device, RETRIEVAL))
    total = time.perf_counter() - t0
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "CPU (smoke test, toy sizes)"
    lines = [
        f"GPU suite on {name}, bf16, random weights, published configs; "
        f"{total / 60:.1f} min in all. Reproduce: `python benchmarks/gpu_suite.py`.",
        "",
        "| model / job | part | result | seconds | peak GPU memory |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    lines += [f"| {m} | {p} | {r} | {s:.2f} | {mem:.2f} GiB |" for m, p, r, s, mem in rows]
    text = "\n".join(lines)
    out.write_text(text + "\n")
    print(text)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list the jobs and the time estimate, run nothing"
    )
    parser.add_argument("--out", default="gpu_suite.md", help="markdown output file (default gpu_suite.md)")
    parser.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="run the suite's code on the CPU at toy sizes (a test, not a benchmark)",
    )
    args = parser.parse_args()
    import torch

    if args.cpu_smoke:
        run(Path(args.out), "cpu", smoke=True)
        return 0
    if not torch.cuda.is_available():
        dry_run("This suite needs CUDA (torch.cuda.is_available() is False); nothing was run.")
        return 0
    if args.dry_run:
        dry_run(f"Dry run on {torch.cuda.get_device_name(0)}; nothing was run.")
        return 0
    run(Path(args.out), "cuda", smoke=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
