"""Memory of the D′ training rows as D′ grows: rows held as Python objects vs memory-mapped Arrow.

Setting: a D′ parquet split in the builder's schema (``image`` bytes of a 320×240 PNG, ~230 KB each, caption,
source ids), read the way ``hf-spurious train --counterfactual-dir`` reads it (``load_counterfactuals`` →
``counterfactual_rows`` → ``training_pairs`` with 1,000 D pairs), then one pass over every row as the
collator sees it (the image cell's bytes). "python rows" is the previous behaviour (every D′ row a dict
holding its PNG bytes, in every process); "arrow" is the current one. The figure is the process's peak
*anonymous* resident memory (``RssAnon`` in ``/proc/self/status``, sampled every 250 rows): mapped parquet/Arrow
pages are file-backed and reclaimable, so they are not counted.

Run: ``.venv/bin/python benchmarks/dprime_memory.py [--sizes 1000 8000]``; writes the "dprime_memory" section
of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def rss_anon_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_split(path: Path, n: int) -> None:
    """``n`` D′ rows in the builder's columns; every image a distinct 320×240 PNG (no dictionary encoding)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(
        buf, format="PNG", compress_level=0
    )
    png = buf.getvalue()
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema(
        [
            ("image", image),
            ("source_image_id", pa.string()),
            ("source_split", pa.string()),
            ("caption", pa.string()),
        ]
    )
    features = {
        "image": {"_type": "Image"},
        "source_image_id": {"dtype": "string", "_type": "Value"},
        "source_split": {"dtype": "string", "_type": "Value"},
        "caption": {"dtype": "string", "_type": "Value"},
    }
    schema = schema.with_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    with pq.ParquetWriter(str(path), schema, use_dictionary=False, compression="none") as writer:
        for start in range(0, n, 100):  # 100-row groups, as `datasets` writes image parquet
            rows = range(start, min(n, start + 100))
            writer.write_table(
                pa.table(
                    {
                        "image": [{"bytes": png + i.to_bytes(4, "little"), "path": None} for i in rows],
                        "source_image_id": [str(i) for i in rows],
                        "source_split": ["train"] * len(rows),
                        "caption": [f"a dog on a bench number {i}" for i in rows],
                    },
                    schema=schema,
                )
            )


def measure(path: str, mode: str, cache: str) -> float:
    """Peak anonymous RSS (MiB) of loading D ∪ D′ and one pass over it, in this process."""
    os.environ["HF_DATASETS_CACHE"] = cache
    from hf_spurious.cli.train import load_counterfactuals
    from hf_spurious.training.rows import counterfactual_rows, training_pairs

    d = [{"image": f"img{i}.jpg", "caption": f"caption {i}", "image_id": str(i)} for i in range(1000)]
    d_prime = counterfactual_rows(load_counterfactuals(path), train_split="train")
    peak = rss_anon_mib()
    if mode == "python rows":
        d_prime = [dict(row) for row in d_prime]  # the previous behaviour: every row in Python memory
    pairs = training_pairs(d, d_prime)
    for i in range(len(pairs)):
        cell = pairs[i]["image"]
        _ = len(cell["bytes"] or b"") if isinstance(cell, dict) else cell
        if i % 250 == 0:
            peak = max(peak, rss_anon_mib())
    return max(peak, rss_anon_mib())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1000, 8000], help="D′ sizes (default: 1000 8000)"
    )
    parser.add_argument("--measure", nargs=3, metavar=("PATH", "MODE", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    results: dict[tuple[int, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(tmp, f"train-{n}.parquet")
            write_split(path, n)
            for mode in ("python rows", "arrow"):
                cache = tempfile.mkdtemp(dir=tmp)
                out = subprocess.run(
                    [sys.executable, __file__, "--measure", str(path), mode, cache],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                results[n, mode] = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"D′ {n:>6} rows  {mode:<12} peak RssAnon {results[n, mode]:8.0f} MiB", flush=True)
    lines = [
        "## D′ training rows: memory as D′ grows",
        "",
        "`.venv/bin/python benchmarks/dprime_memory.py` — D′ read as `hf-spurious train --counterfactual-dir` "
        "reads it, joined to 1,000 D pairs, then one pass over every row. 320×240 PNGs (~230 KB each; COCO-size PNGs would be ~4x larger). Peak "
        "anonymous RSS (mapped Arrow pages are file-backed and not counted).",
        "",
        "| D′ rows | python rows (previous) | arrow (current) |",
        "|---:|---:|---:|",
    ]
    for n in args.sizes:
        lines.append(f"| {n:,} | {results[n, 'python rows']:,.0f} MiB | {results[n, 'arrow']:,.0f} MiB |")
    from _report import write_section

    write_section("dprime_memory", "\n".join(lines))


if __name__ == "__main__":
    main()
