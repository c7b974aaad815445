"""The non-GPU part of the pipeline at full COCO size, without images.

Writes COCO-2014 + Karpathy annotation files at full size to a temporary folder (123,287 images, 616,767
captions, ~897k boxes with 8-point polygons, class frequencies roughly COCO's: person ~30 % of the boxes,
a Zipf tail) with one empty placeholder file per image (readers look files up by name; sizes come from the
annotations), then measures, each step in a fresh process (peak = that process's ``ru_maxrss``):

* reading: ``read_coco`` of train (Karpathy train + restval), val and test;
* planning: the α-rule removal plan of every image (``synthesis.jobs.plan_record``, the generator's planner);
* gallery: the ODmAP gallery of all 616,767 captions with its caption -> class matrix (``build_gallery``,
  lexical matching);
* queries: the test split's query set (plans of the 5,000 test images -> ``RetrievalQueries``) and the
  ``Gallery`` object.

Run: ``.venv/bin/python benchmarks/coco_scale.py [--scale 1.0] [--keep DIR]``; writes the "coco_scale"
section of docs/benchmarks.md (``--no-write`` to only print). ``--scale 0.05`` makes a 5 % copy for a quick try.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

N_TRAIN, N_VAL = 82_783, 40_504  # COCO 2014 images
N_CAPTIONS = 616_767
N_BOXES = {"train2014": 604_907, "val2014": 291_875}
KARPATHY = {"val": 5_000, "test": 5_000}  # the rest of val2014 is restval
TOP = {"person": 0.30, "car": 0.05, "chair": 0.044, "book": 0.028, "bottle": 0.028, "cup": 0.024}
_FILL = ["on", "the", "with", "next", "to", "a", "of", "in", "near", "some", "sitting", "standing", "large"]


def class_weights(classes: list[str]) -> np.ndarray:
    """Roughly COCO's instance frequencies: the listed top classes, then a Zipf tail over the rest."""
    rest = [c for c in classes if c not in TOP]
    tail = 1.0 / np.arange(1, len(rest) + 1) ** 0.6
    tail = tail / tail.sum() * (1 - sum(TOP.values()))
    w = {**TOP, **dict(zip(rest, tail))}
    return np.array([w[c] for c in classes])


def _annotations(
    rng, folder: str, ids: list[int], sizes: np.ndarray, n_boxes: int, classes: list[str], start: int
):
    """COCO instance annotations for ``ids`` (boxes spread over images, 8-point polygons)."""
    owners = np.sort(rng.choice(len(ids), size=n_boxes, replace=True, p=_image_weights(rng, len(ids))))
    cats = rng.choice(len(classes), size=n_boxes, p=class_weights(classes))
    frac = np.exp(rng.uniform(np.log(0.002), np.log(0.4), n_boxes))
    anns = []
    for k in range(n_boxes):
        w_img, h_img = sizes[owners[k]]
        bw = max(2.0, float(np.sqrt(frac[k] * w_img * h_img * rng.uniform(0.5, 2.0))))
        bh = max(2.0, float(frac[k] * w_img * h_img / bw))
        bw, bh = min(bw, w_img - 1.0), min(bh, h_img - 1.0)
        x, y = float(rng.uniform(0, w_img - bw)), float(rng.uniform(0, h_img - bh))
        t = np.linspace(0, 2 * np.pi, 8, endpoint=False)
        poly = np.stack([x + bw / 2 * (1 + np.cos(t)), y + bh / 2 * (1 + np.sin(t))], 1).round(2).ravel()
        anns.append(
            {
                "id": start + k,
                "image_id": ids[owners[k]],
                "category_id": int(cats[k]) + 1,
                "bbox": [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)],
                "area": round(bw * bh * 0.8, 2),
                "iscrowd": 0,
                "segmentation": [poly.tolist()],
            }
        )
    return anns


def _image_weights(rng, n: int) -> np.ndarray:
    w = rng.gamma(1.2, 1.0, n)  # a few crowded images, many with 1-4 objects (COCO mean ~7.3 boxes)
    return w / w.sum()


def _captions_for(rng, names: list[str], n: int) -> list[str]:
    out = []
    for _ in range(n):
        picked = [names[int(rng.integers(len(names)))] for _ in range(2)] if names else ["thing", "table"]
        words = [
            "a",
            picked[0],
            *rng.choice(_FILL, 4).tolist(),
            "a",
            picked[1],
            *rng.choice(_FILL, 2).tolist(),
        ]
        out.append(" ".join(words).capitalize() + ".")
    return out


def generate(root: Path, scale: float, seed: int = 0) -> dict[str, int]:
    """Write the annotation files and placeholders under ``root``; return the counts."""
    from hf_spurious.vocab import load_vocabulary

    rng = np.random.default_rng(seed)
    classes = list(load_vocabulary("coco").classes)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    n = {"train2014": max(1, round(N_TRAIN * scale)), "val2014": max(1, round(N_VAL * scale))}
    karpathy, image_id, ann_id, counts = [], 1, 1, {"images": 0, "captions": 0, "boxes": 0}
    extra = round((N_CAPTIONS - 5 * (N_TRAIN + N_VAL)) * scale)  # images with a 6th / 7th caption
    for folder, count in n.items():
        (root / folder).mkdir(exist_ok=True)
        ids = list(range(image_id, image_id + count))
        image_id += count
        sizes = np.array([(640, 480), (640, 427), (480, 640), (500, 375)])[rng.integers(0, 4, count)]
        n_boxes = max(1, round(N_BOXES[folder] * scale))
        anns = _annotations(rng, folder, ids, sizes, n_boxes, classes, ann_id)
        ann_id += n_boxes
        images = []
        by_image: dict[int, list[str]] = {}
        for a in anns:
            by_image.setdefault(a["image_id"], []).append(classes[a["category_id"] - 1])
        for j, iid in enumerate(ids):
            name = f"COCO_{folder}_{iid:012d}.jpg"
            (root / folder / name).touch()
            w, h = (int(v) for v in sizes[j])
            images.append({"id": iid, "file_name": name, "width": w, "height": h})
            n_caps = 5 + (1 if extra > 0 else 0)
            extra -= n_caps - 5
            caps = _captions_for(rng, by_image.get(iid, []), n_caps)
            karpathy.append((folder, name, iid, caps))
        cats = [{"id": i + 1, "name": c, "supercategory": "x"} for i, c in enumerate(classes)]
        with open(root / "annotations" / f"instances_{folder}.json", "w") as f:
            json.dump({"images": images, "annotations": anns, "categories": cats}, f)
        counts["images"] += count
        counts["boxes"] += n_boxes
        del anns, images
    counts["captions"] = _write_karpathy(root, karpathy)
    return counts


def _write_karpathy(root: Path, items: list) -> int:
    val_items = [i for i, it in enumerate(items) if it[0] == "val2014"]
    n_val, n_test = (min(v, len(val_items) // 3) for v in KARPATHY.values())
    split = ["train" if it[0] == "train2014" else "restval" for it in items]
    for i in val_items[:n_val]:
        split[i] = "val"
    for i in val_items[n_val : n_val + n_test]:
        split[i] = "test"
    images, sent_id = [], 0
    for k, (folder, name, iid, caps) in enumerate(items):
        sents = []
        for c in caps:
            sents.append({"tokens": c.lower().rstrip(".").split(), "raw": c, "imgid": k, "sentid": sent_id})
            sent_id += 1
        images.append(
            {
                "filepath": folder,
                "sentids": [s["sentid"] for s in sents],
                "filename": name,
                "imgid": k,
                "split": split[k],
                "sentences": sents,
                "cocoid": iid,
            }
        )
    with open(root / "dataset_coco.json", "w") as f:
        json.dump({"images": images, "dataset": "coco"}, f)
    return sent_id


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _read(root: Path, splits=("train", "val", "test")) -> dict:
    from hf_spurious.sources import read_coco

    return {s: read_coco(root, s) for s in splits}


def step_read(root: Path) -> dict:
    t0 = time.perf_counter()
    records = _read(root)
    n = sum(len(r) for r in records.values())
    return {
        "seconds": time.perf_counter() - t0,
        "items": n,
        "unit": "image",
        "note": ", ".join(f"{s} {len(r):,}" for s, r in records.items())
        + f"; {sum(len(x.objects) for r in records.values() for x in r):,} boxes, "
        f"{sum(len(x.captions) for r in records.values() for x in r):,} captions",
    }


def step_plan(root: Path) -> dict:
    from collections import Counter

    from hf_spurious.synthesis.jobs import image_rng, plan_record
    from hf_spurious.synthesis.settings import SynthesisSettings

    records = [r for rs in _read(root, ("train", "test")).values() for r in rs]
    read_peak = peak_gib()
    settings = SynthesisSettings(source="coco")
    reasons: Counter = Counter()
    t0 = time.perf_counter()
    for rec in records:
        ex, _ = plan_record(rec, settings, image_rng(settings.seed, rec.image_id))
        reasons["planned" if ex.plan is not None else str(ex.reason)] += 1
    return {
        "seconds": time.perf_counter() - t0,
        "items": len(records),
        "unit": "image",
        "read_peak_gib": read_peak,
        "note": "; ".join(f"{k} {v:,}" for k, v in reasons.most_common(4)),
    }


def step_gallery(root: Path) -> dict:
    from hf_spurious.data.builders import build_gallery

    t0 = time.perf_counter()
    captions, _, matrix, names = build_gallery(root, "coco")
    return {
        "seconds": time.perf_counter() - t0,
        "items": len(captions),
        "unit": "caption",
        "note": f"reading included; matrix {matrix.shape[0]:,} x {len(names)}, "
        f"{matrix.sum(1).mean():.2f} classes per caption",
    }


def step_queries(root: Path) -> dict:
    from hf_spurious.evaluation.retrieval_sets import Gallery, RetrievalQueries
    from hf_spurious.synthesis.jobs import image_rng, plan_record
    from hf_spurious.synthesis.settings import SynthesisSettings
    from hf_spurious.text import caption_class_matrix

    test = _read(root, ("test",))["test"]
    read_peak = peak_gib()
    settings = SynthesisSettings(source="coco")
    t0 = time.perf_counter()
    plans = [(r, plan_record(r, settings, image_rng(settings.seed, r.image_id))[0].plan) for r in test]
    plans = [(r, p) for r, p in plans if p is not None]
    queries = RetrievalQueries(
        images=[str(r.image_path) for r, _ in plans],
        removed_classes=[frozenset(p.removed_classes) for _, p in plans],
        present_classes=[frozenset(p.kept_classes) for _, p in plans],
        ids=[f"coco/{r.image_id}" for r, _ in plans],
        source_image_ids=[str(r.image_id) for r, _ in plans],
    )
    captions = [c for r in test for c in r.captions]
    matrix, names = caption_class_matrix(captions, "coco", progress=False)
    Gallery(captions, matrix, names)
    return {
        "seconds": time.perf_counter() - t0,
        "items": len(test),
        "unit": "test image",
        "read_peak_gib": read_peak,
        "note": f"{len(queries.images):,} queries; test gallery {len(captions):,} captions",
    }


STEPS = {"read": step_read, "plan": step_plan, "gallery": step_gallery, "queries": step_queries}


def _sizes(root: Path) -> str:
    files = sorted(root.glob("*.json")) + sorted((root / "annotations").glob("*.json"))
    return ", ".join(f"{f.name} {f.stat().st_size / 2**20:,.0f} MiB" for f in files)


def _table(rows: list[dict]) -> str:
    out = [
        "| step | items | wall time | per item (wall) | process CPU s (whole step) | peak memory | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['step']} | | | | | | failed: {r['error']} |")
            continue
        per = r["seconds"] / max(1, r["items"]) * 1e6
        peak = f"{r['peak_gib']:.2f} GiB"
        if "read_peak_gib" in r:
            peak += f" ({r['read_peak_gib']:.2f} after reading)"
        out.append(
            f"| {r['step']} | {r['items']:,} {r['unit']}s | {r['seconds']:.1f} s | {per:,.0f} µs | {r['cpu_total']:.1f} s "
            f"| {peak} | {r['note']} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of COCO's size (default 1.0)")
    parser.add_argument("--steps", nargs="+", default=list(STEPS), help="steps (default: all)")
    parser.add_argument(
        "--keep", default=None, help="write the files here and keep them (default: a temp dir)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only, do not write docs/benchmarks.md")
    parser.add_argument("--worker", nargs=2, metavar=("STEP", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        c0 = time.process_time()
        res = STEPS[args.worker[0]](Path(args.worker[1]))
        res["peak_gib"] = peak_gib()
        res["cpu_total"] = time.process_time() - c0
        print("RESULT " + json.dumps(res), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        t0 = time.perf_counter()
        if not (root / "dataset_coco.json").exists():
            counts = generate(root, args.scale)
        else:
            counts = {"images": 0, "captions": 0, "boxes": 0}
        gen_s = time.perf_counter() - t0
        print(f"generated {counts} in {gen_s:.0f} s: {_sizes(root)}", flush=True)
        rows = []
        for step in args.steps:
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", step, str(root)], capture_output=True, text=True
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not lines:
                rows.append({"step": step, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
            else:
                rows.append({"step": step, **json.loads(lines[-1][7:])})
            print(json.dumps(rows[-1]), flush=True)
        text = _report(rows, counts, gen_s, _sizes(root), args)
    print(text)
    if not args.no_write:
        from _report import write_section

        write_section("coco_scale", text)


def _report(rows, counts, gen_s, sizes, args) -> str:
    cmd = "python benchmarks/coco_scale.py" + (f" --scale {args.scale}" if args.scale != 1.0 else "")
    return (
        "## COCO-size annotations without images (`benchmarks/coco_scale.py`)\n\n"
        f"Synthetic COCO-2014 + Karpathy files at {args.scale:g} x COCO's size: {counts['images']:,} images, "
        f"{counts['captions']:,} captions, {counts['boxes']:,} boxes with 8-point polygons, class frequencies "
        f"roughly COCO's (person ~30 %); files: {sizes}; written in {gen_s:.0f} s. Each step ran in its own "
        "process (peak = `ru_maxrss`, interpreter included); one run each on a machine shared with other "
        f"jobs (load average {os.getloadavg()[0]:.1f} at the end), so times are upper bounds.\n\n"
        + _table(rows)
        + f"\n\nReproduce: `{cmd}`"
    )


if __name__ == "__main__":
    main()
