"""The paper models at their real size (random weights, published configs) on this CPU, at real input sizes.

Per model (CLIP ViT-B/32 at 224, CLIP ViT-L/14 at 336, BLIP ITM base at 384), on 640x480 world images and
COCO-length captions: image / text embedding throughput, GradCAM (grid and seconds per map), one training
step per freezing policy (projection, LoRA, full; AdamW, batch --train-batch) and, for BLIP, ITM re-ranking
of 128 candidates for one image query. VSE++ (VGG19 at 224, bi-GRU): embedding and the training steps
(projection: ``img_fc``; full: the paper's frozen-VGG "VSE++", i.e. ``img_fc``, word embeddings and GRU;
the step uses the benchmark's CLIP loss, not VSE++'s triplet loss, at about the same cost), no GradCAM (a
CNN has no patch tokens), no LoRA (no attention layers). SD-1.5 inpainting: one ``DiffusersInpainter``
call (1 denoising step, classifier-free guidance on, crop-around-mask at 512 px and paste back) on one
640x480 image.

Every (model, part) runs in its own process, so "peak RSS" is that part's peak (interpreter, torch, the
model and the work). Run: ``.venv/bin/python benchmarks/real_geometry.py [--models ...] [--parts ...]``;
writes the "real_geometry" section of docs/benchmarks.md (``--no-write`` to only print).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _geometry as g  # noqa: E402

LARGE = {"n_images": 2, "n_texts": 16, "cam_images": 1, "train_batch": 2, "itm_candidates": 8}
"""Sizes for CLIP ViT-L/14@336 on CPU (about 10x the compute of B/32 per image), unless --same-sizes."""
VSEPP = "vsepp-vgg19-coco"
VSEPP_SKIPS = ("gradcam", "train-lora", "itm")
"""Parts that do not apply to VSE++: ViT GradCAM (a VGG has no patch tokens), LoRA (no attention), ITM."""


def _sizes(model: str, args: argparse.Namespace) -> argparse.Namespace:
    if model != "clip-vit-large-patch14-336" or args.same_sizes:
        return args
    return argparse.Namespace(**{**vars(args), **{k: min(v, getattr(args, k)) for k, v in LARGE.items()}})


def _worker(model: str, part: str, args: argparse.Namespace) -> dict:
    import torch

    args = _sizes(model, args)

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if model == g.SD:
        inpainter = g.build_inpainter(args.device, args.dtype, steps=1, batch_size=1)
        built = {"build_s": time.perf_counter() - t0, "build_mb": g.peak_mb(args.device)}
        return {**built, **g.part_inpaint(inpainter, args.device)}
    adapter = g.build_adapter(model, args.device)
    built = {
        "build_s": time.perf_counter() - t0,
        "build_mb": g.peak_mb(args.device),
        "params_m": sum(p.numel() for p in adapter.base_model.parameters()) / 1e6,
    }
    if part == "embed":
        res = g.part_embed(adapter, args.device, args.dtype, args.n_images, args.n_texts)
    elif part == "gradcam":
        res = g.part_gradcam(adapter, args.device, args.dtype, args.cam_images)
    elif part.startswith("train-"):
        res = g.part_train(adapter, args.device, args.dtype, part.removeprefix("train-"), args.train_batch)
    elif part == "itm":
        res = g.part_itm(adapter, args.device, args.dtype, args.itm_candidates, args.itm_batch)
    else:
        raise SystemExit(f"unknown part {part!r}; choose from {', '.join(g.PARTS)}")
    return {**built, **res}


def _jobs(args: argparse.Namespace) -> list[tuple[str, str]]:
    jobs = []
    for model in args.models:
        if model == g.SD:
            jobs.append((model, "inpaint"))
            continue
        for part in args.parts:
            if part == "itm" and not model.startswith("blip"):
                continue
            if model == VSEPP and part in VSEPP_SKIPS:
                continue
            jobs.append((model, part))
    return jobs


def run_all(args: argparse.Namespace, extra: list[str]) -> list[dict]:
    """Each (model, part) in a fresh interpreter; returns one record per job (``error`` on failure)."""
    rows = []
    for model, part in _jobs(args):
        cmd = [sys.executable, str(HERE / "real_geometry.py"), "--worker", model, part, *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            rows.append({"model": model, "part": part, "error": err, "wall_s": wall})
        else:
            rows.append({"model": model, "part": part, "wall_s": wall, **json.loads(lines[-1][7:])})
        print(json.dumps(rows[-1], default=str), flush=True)
    return rows


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 0.1 else f"{x:.3f}"


def _mb(x: float) -> str:
    return f"{x / 1024:.2f} GiB"


def tables(rows: list[dict], args: argparse.Namespace) -> str:
    """The markdown tables (one line per measured part)."""
    out = [
        "| model | part | result | wall s (CPU s) | peak memory (after build) |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['model']} | {r['part']} | failed: {r['error']} | | |")
            continue
        mem = f"{_mb(r['peak_mb'])} ({_mb(r['build_mb'])})"
        desc = _describe(r, _sizes(r["model"], args))
        out.append(f"| {r['model']} | {r['part']} | {desc} | {_time(r)} | {mem} |")
    return "\n".join(out)


def _time(r: dict) -> str:
    """Wall seconds (process CPU seconds, all threads, in brackets)."""
    if r["part"] == "embed":
        return f"{_fmt(r['image_s'])} s ({_fmt(r['image_s_cpu'])}) + {_fmt(r['text_s'])} s ({_fmt(r['text_s_cpu'])})"
    return f"{_fmt(r['seconds'])} s ({_fmt(r['seconds_cpu'])})"


def _describe(r: dict, args: argparse.Namespace) -> str:
    p = r["part"]
    if p == "embed":
        img_cpu, txt_cpu = args.n_images / r["image_s_cpu"], args.n_texts / r["text_s_cpu"]
        return (
            f"{r['params_m']:.1f} M params; input {r['input']}, D={r['dim']}: {_fmt(img_cpu)} images per CPU-s "
            f"({args.n_images} images, preprocessing included; alone "
            f"{_fmt(r['preprocess_s_cpu'] / args.n_images)} CPU-s/image), {_fmt(txt_cpu)} texts per CPU-s "
            f"({args.n_texts} captions, {r['tokens']} tokens)"
        )
    if p == "gradcam":
        return f"grid {r['grid']}, maps {r['maps']}: {_fmt(r['seconds_cpu'] / int(r['maps'].split('x')[0]))} CPU-s/map"
    if p.startswith("train-"):
        return f"batch {args.train_batch}, AdamW, trainable {r['trainable']}, loss {r['loss']:.3f}"
    if p == "itm":
        n = r.get("vision_images", args.itm_candidates)  # rows from before the count was kept: one per pair
        how = "re-encoded per pair, before the fix" if n > 1 else "encoded once, after the fix"
        return (
            f"{args.itm_candidates} candidates, pair batch {args.itm_batch}: the vision tower ran on {n} "
            f"image(s) (the query image {how}; {_fmt(r['vision_s'])} s wall)"
        )
    c = r["components"]
    parts = ", ".join(
        f"{k} {_fmt(c[k])} s x{c[k + ' calls']} (in {tuple(c[k + ' in'])})"
        for k in ("text encoder", "vae encoder", "unet", "vae decoder")
        if k in c
    )
    return f"1 step, CFG, crop {r['resolution']} px -> {tuple(r['out_shape'])}: {parts}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=[*g.CLIP_LIKE, VSEPP, g.SD], help="models (default: all)"
    )
    parser.add_argument("--parts", nargs="+", default=list(g.PARTS), help="parts (default: all)")
    parser.add_argument("--n-images", type=int, default=8, help="images embedded (default 8)")
    parser.add_argument("--n-texts", type=int, default=64, help="captions embedded (default 64)")
    parser.add_argument("--cam-images", type=int, default=2, help="GradCAM images (default 2)")
    parser.add_argument("--train-batch", type=int, default=4, help="training batch (default 4)")
    parser.add_argument("--itm-candidates", type=int, default=128, help="ITM candidates (default 128)")
    parser.add_argument(
        "--same-sizes",
        action="store_true",
        help="use the sizes above for ViT-L/14 too (default: smaller, see LARGE)",
    )
    parser.add_argument("--itm-batch", type=int, default=32, help="ITM pair batch (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--device", default="cpu", help="device (default cpu)")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="precision (default fp32)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not write docs/benchmarks.md")
    parser.add_argument(
        "--render",
        nargs="+",
        default=None,
        help="build the section from the JSON lines printed by earlier runs (files), run nothing (default: off)",
    )
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "PART"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render:
        rows = _saved_rows(args.render)
        text = _report(rows, args, "loaded by other jobs throughout (load average 7 to 12 on 2 cores)", None)
        print(text)
        if not args.no_write:
            from _report import write_section

            write_section("real_geometry", text)
        return
    if args.worker:
        res = _worker(*args.worker, args)
        res["peak_mb"] = g.peak_mb(args.device)
        print("RESULT " + json.dumps(res, default=str), flush=True)
        return
    extra = [a for a in sys.argv[1:] if a != "--no-write"]
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    rows = run_all(args, extra)
    total = time.perf_counter() - t0
    load = (
        f"load average {load0[0]:.2f} before and {os.getloadavg()[0]:.2f} after ({total / 60:.1f} min in all)"
    )
    text = _report(rows, args, load, " ".join(a for a in sys.argv[1:] if a != "--no-write"))
    print(text)
    if not args.no_write:
        from _report import write_section

        write_section("real_geometry", text)


FINDINGS = """What the real geometry showed (each item is checked by `tests/test_real_geometry.py`):

* Patch grids: 7x7 for CLIP B/32 at 224 px, 24x24 for CLIP L/14 at 336 px and for BLIP at 384 px (576 patch
  tokens + CLS); GradCAM runs on all three. SigLIP-base (`siglip-base-patch16-224`) has **no CLS token**
  (196 = 14x14 patch tokens): GradCAM rejected it (found here; fixed by the GradCAM owner in this change:
  the adapter now says how many CLS tokens it has, and SigLIP's map is taken at its pooling head's input).
* Text: CLIP's 77 positions; the published CLIP configs set `eos_token_id = 2`, which selects transformers'
  legacy pooling at the argmax input id, correct as long as the end-of-text id is the largest (it is, in
  OpenAI's BPE and in the offline tokenizers). BLIP's hub tokenizer allows 512 tokens while BLIP's own
  retrieval code truncates at 35 (found here; the BLIP adapter now caps at 35).
* SD-1.5 inpainting at 512 px on a 640x480 image: the crop window around a 180x200 mask is 480x512 (the image
  is only 480 high), resized to 512x512 (a 7 % vertical stretch), 64x64 latents, UNet input (2, 9, 64, 64)
  with guidance, 77-token prompts; only masked pixels change in the 640x480 result.
* Cost: BLIP ITM re-ranking ran the 384-px vision tower once per (query image, candidate) pair, i.e. the
  same query image 128 times for a top-128 re-rank: 111 of the 131.7 GFLOP per pair (84 %, counted by
  `benchmarks/flops.py`); BLIP's own code encodes the image once. Found here and fixed in this change by
  the re-ranker's owner (the query image is now encoded once); the `itm` rows above are before and after,
  each one run on this loaded CPU, where the two CPU-second figures do not separate. Measured A/B, one
  thread, interleaved, 3 runs each (`python benchmarks/itm_rerank_ab.py`, 16 candidates): encoded once
  6.01 CPU-s (5.01, 6.01, 6.52), once per pair 32.1 CPU-s (32.1, 31.4, 32.1); ratio 0.19 (0.16, 0.19, 0.20),
  as the FLOP count predicts (0.21). 128 candidates cost about 8 times as much as 16 (an extrapolation).
* A bug in this change, fixed: the published SD scheduler config carries keys `PNDMScheduler(**config)`
  rejects (`clip_sample`); the builder now uses `from_config`, as diffusers' loader does.
"""


def _saved_rows(files: list[str]) -> list[dict]:
    """Rows from earlier runs' output; a failed row is dropped when a later run measured the same part."""
    rows = [json.loads(ln) for f in files for ln in Path(f).read_text().splitlines() if ln.startswith("{")]
    done = {(r["model"], r["part"]) for r in rows if "error" not in r}
    return [r for r in rows if "error" not in r or (r["model"], r["part"]) not in done]


def _report(rows, args, load: str, cmd_args: str | None) -> str:
    cmd = (
        f"`python benchmarks/real_geometry.py {cmd_args}`"
        if cmd_args is not None
        else "`python benchmarks/real_geometry.py` (one process per row; these rows came from "
        "`--models clip-vit-base-patch32 blip-itm-base-coco sd-1.5-inpainting --itm-candidates 16 --itm-batch 16`, "
        "`--models clip-vit-large-patch14-336 --parts embed gradcam train-projection train-lora` and, after the "
        "re-ranker fix, `--models blip-itm-base-coco --parts itm --itm-candidates 16 --itm-batch 16`). CLIP "
        "ViT-L/14@336 ran at the smaller sizes of `LARGE` (2 images, 16 captions, 1 GradCAM image, batch 2); its "
        "full fine-tuning step ran last, alone, when the machine was quieter "
        "(`--models clip-vit-large-patch14-336 --parts train-full`)"
    )
    return (
        "## Paper models at real size on this CPU (`benchmarks/real_geometry.py`)\n\n"
        "Random weights, published configurations (`hf_spurious/models/configs/*.json`), real input sizes, "
        "640x480 world images, COCO-length captions; "
        f"{args.device}, {args.dtype}, {args.threads} threads. Each row is one fresh process: peak memory = "
        "`ru_maxrss` of that process (interpreter + torch + the model + the work), in brackets after building "
        f"the model. One run per row (no repeats): the machine was shared with other jobs, {load}, so wall "
        "times are inflated; the process CPU seconds (both threads) are the steadier figure.\n\n"
        + tables(rows, args)
        + f"\n\nReproduce: {cmd}\n\n"
        + FINDINGS
    )


if __name__ == "__main__":
    main()
