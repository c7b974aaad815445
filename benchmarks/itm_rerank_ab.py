"""ITM re-ranking of one image query at real size (BLIP ITM base, 384 px, random weights): the query image
encoded once (``rerank_with_itm``, BLIP's own way) vs once per candidate pair (``itm_pair_scores`` on the
image repeated, the earlier path), interleaved A B A B ... in one process, process CPU seconds per run.

Run: ``.venv/bin/python benchmarks/itm_rerank_ab.py [--candidates 16] [--repeats 3] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _geometry as g
import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--candidates", type=int, default=16, help="captions re-ranked (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from hf_spurious.evaluation.rerank import itm_pair_scores, rerank_with_itm

    adapter = g.build_adapter("blip-itm-base-coco", "cpu")
    image = g.make_images(1)[0]
    captions = g.make_captions(args.candidates, seed=1)
    indices = np.arange(args.candidates)[None, :]
    n = args.candidates

    def once() -> None:
        rerank_with_itm(adapter, [image], captions, indices, top_n=n, batch_size=n)

    def per_pair() -> None:
        itm_pair_scores(adapter, [image] * n, captions, batch_size=n)

    times: dict[str, list[float]] = {"once": [], "per_pair": []}
    for _ in range(args.repeats):
        for name, fn in (("once", once), ("per_pair", per_pair)):
            c0 = time.process_time()
            fn()
            times[name].append(time.process_time() - c0)
    ratios = [a / b for a, b in zip(times["once"], times["per_pair"])]
    for name, ts in times.items():
        print(f"{name}: median {statistics.median(ts):.2f} CPU-s ({', '.join(f'{t:.2f}' for t in ts)})")
    print(
        f"ratio once / per_pair: median {statistics.median(ratios):.3f} ({', '.join(f'{r:.3f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
