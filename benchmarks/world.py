"""Images per second for SpuriousShapes world generation, against a PNG-encoding baseline.

Run: ``.venv/bin/python benchmarks/world.py [--n 3000]``; writes the "world" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_section  # noqa: E402

from hf_spurious.data._draw import encode_png  # noqa: E402
from hf_spurious.data.world import (  # noqa: E402
    ClassificationWorldConfig,
    World,
    WorldConfig,
    draw_scene,
    generate_world,
)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def baseline_png(n: int, size: int, out: Path) -> float:
    """Seconds to encode and write ``n`` random-noise PNGs (no drawing at all)."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(min(n, 64))]
    out.mkdir(parents=True, exist_ok=True)

    def run() -> None:
        for i in range(n):
            (out / f"{i}.png").write_bytes(encode_png(images[i % len(images)]))

    return _timed(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="images per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()
    n = args.n
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        def best(fn) -> float:
            return min(fn(k) for k in range(args.repeats))

        for size in (64, 128):
            base = best(lambda k, s=size: baseline_png(n, s, root / f"png{s}_{k}"))
            rows.append((f"baseline: encode + write {n} random PNGs", size, n, base))
            cfg = WorldConfig(train_size=n, val_size=0, test_size=0, image_size=size, seed=0)
            world = World(cfg)
            ids = world.image_ids("train")
            t_scene = best(lambda k, w=world: _timed(lambda: [w.scene("train", i) for i in ids]))
            rows.append(("retrieval: sample scenes only", size, n, t_scene))
            scenes = [world.scene("train", i) for i in ids]
            t_draw = best(lambda k, sc=scenes: _timed(lambda: [draw_scene(s) for s in sc]))
            rows.append(("retrieval: draw scenes only", size, n, t_draw))
            t_ret = best(lambda k, c=cfg, s=size: _timed(lambda: generate_world(c, root / f"ret{s}_{k}")))
            rows.append(
                ("retrieval world: full generate_world (images + COCO + Karpathy json)", size, n, t_ret)
            )
            ccfg = ClassificationWorldConfig(
                train_size=n // 2, val_size=n // 4, test_size=n // 4, pretrain_size=0, image_size=size, seed=0
            )
            t_cls = best(lambda k, c=ccfg, s=size: _timed(lambda: generate_world(c, root / f"cls{s}_{k}")))
            rows.append(
                ("classification world: generate_world (images + masks + metadata.csv)", size, n, t_cls)
            )
    lines = [
        "World generation speed (single process, best of "
        f"{args.repeats} runs; `python benchmarks/world.py --n {n}`). The baseline only encodes and writes "
        "random PNGs of the same size, so it bounds what any generator writing PNG files can reach here.",
        "",
        "| step | image size | images | seconds | images / s |",
        "|---|---|---|---|---|",
    ]
    for name, size, count, seconds in rows:
        lines.append(f"| {name} | {size} | {count} | {seconds:.2f} | {count / seconds:,.0f} |")
    markdown = "\n".join(lines)
    print(markdown)
    write_section("world", markdown)


if __name__ == "__main__":
    main()
