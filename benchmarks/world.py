"""Images per second for SpuriousShapes world generation, against a PNG-encoding baseline.

Run: ``.venv/bin/python benchmarks/world.py [--n 2000]``; writes the "world" section of docs/benchmarks.md.
Both wall-clock and process CPU time are reported: on a shared machine the CPU figure is the stable one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_section

from hf_spurious.images import encode_png
from hf_spurious.world import ClassificationWorldConfig, World, WorldConfig, draw_scene, generate_world


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def best(fn: Callable[[int], tuple[float, float]], repeats: int) -> tuple[float, float]:
    runs = [fn(k) for k in range(repeats)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def baseline_png(n: int, size: int, out: Path) -> tuple[float, float]:
    """Time to encode and write ``n`` random-noise PNGs (no drawing at all)."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(64)]
    out.mkdir(parents=True, exist_ok=True)

    def run() -> None:
        for i in range(n):
            (out / f"{i}.png").write_bytes(encode_png(images[i % len(images)]))

    return timed(run)


def measure(n: int, sizes: tuple[int, ...], repeats: int, root: Path) -> list[tuple[str, int, float, float]]:
    rows = []
    for size in sizes:
        wall, cpu = best(lambda k, s=size: baseline_png(n, s, root / f"png{s}_{k}"), repeats)
        rows.append((f"baseline: encode + write random PNGs ({size} px)", n, wall, cpu))
        world = World(WorldConfig(train_size=n, val_size=0, test_size=0, image_size=size, seed=0))
        ids = world.image_ids("train")
        wall, cpu = best(lambda k, w=world, i=ids: timed(lambda: [w.scene("train", j) for j in i]), repeats)
        rows.append((f"retrieval: sample scenes only ({size} px)", n, wall, cpu))
        scenes = [world.scene("train", i) for i in ids]
        wall, cpu = best(lambda k, sc=scenes: timed(lambda: [draw_scene(s) for s in sc]), repeats)
        rows.append((f"retrieval: draw scenes only ({size} px)", n, wall, cpu))
        cfg = world.config
        wall, cpu = best(
            lambda k, c=cfg, s=size: timed(lambda: generate_world(c, root / f"r{s}_{k}")), repeats
        )
        rows.append(
            (f"retrieval world: generate_world, images + COCO + Karpathy json ({size} px)", n, wall, cpu)
        )
        ccfg = ClassificationWorldConfig(
            train_size=n // 2, val_size=n // 4, test_size=n // 4, pretrain_size=0, image_size=size, seed=0
        )
        wall, cpu = best(
            lambda k, c=ccfg, s=size: timed(lambda: generate_world(c, root / f"c{s}_{k}")), repeats
        )
        rows.append((f"classification world: generate_world, images + masks + csv ({size} px)", n, wall, cpu))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images per measurement")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="image sizes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args.n, tuple(args.sizes), args.repeats, Path(tmp))
    lines = [
        f"World generation speed, single process (`python benchmarks/world.py --n {args.n}`, best of "
        f"{args.repeats}). The baseline only encodes and writes random-noise PNGs of the same size (noise "
        "compresses worst, so it is a pessimistic bound on the PNG cost). CPU = process CPU time, the stable "
        "figure on a shared machine; wall time includes waiting for the CPU.",
        "",
        "| step | images | wall s | images / s (wall) | CPU s | images / s (CPU) |",
        "|---|---|---|---|---|---|",
    ]
    for name, count, wall, cpu in rows:
        lines.append(
            f"| {name} | {count} | {wall:.2f} | {count / wall:,.0f} | {cpu:.2f} | {count / cpu:,.0f} |"
        )
    markdown = "\n".join(lines)
    print(markdown)
    write_section("world", markdown)


if __name__ == "__main__":
    main()
