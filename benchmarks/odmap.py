"""ODmAP@{1,5,10} at COCO scale: the chunked exact top-k engine against a dense baseline, plus the
caption -> class matching of a COCO-sized gallery with the lexical matcher.

Scale: 5,000 queries x 616,435 gallery captions, d = 512 (random L2-normalised embeddings), 80 classes
(random class sets). Each part runs in its own subprocess so its peak memory (``ru_maxrss``) is clean:

* ``chunked``: ``topk_similarities`` (k = 10) over all queries, then ``odmap_at_k`` and
  ``removed_mention_rate_at_k`` for k = 1, 5, 10.
* ``dense``: the baseline, a full similarity matrix then top-k, on a subset of the queries (the full
  5,000 x 616,435 float32 matrix is 12.3 GB), extrapolated linearly to 5,000 queries and labelled so;
  also checks that the chunked engine returns exactly the dense indices on that subset.
* ``matcher``: ``caption_class_matrix`` (lexical, COCO vocabulary) over 616,435 synthetic captions.
* ``precision``: exact top-10 with ``precision="exact-bf16"`` vs ``"exact-fp32"`` vs a bare loop of fp32
  matrix products + ``torch.topk`` (no tie rule), interleaved in one process, median of ``--repeats``
  runs on the first ``--precision-queries`` queries over the whole gallery (extrapolated linearly to all
  queries and labelled so); checks that bf16 and fp32 return the same indices and scores bit for bit.

Targets: chunked ODmAP < 90 s and < 2 GiB peak; matcher < 60 s. Run: ``python benchmarks/odmap.py``
(uses ``--threads`` CPU threads; writes the ``odmap`` section of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GiB = 1024**3


def _rss_now() -> int:
    """Current resident set size in bytes (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def make_embeddings(n: int, d: int, seed: int, chunk: int = 65536) -> np.ndarray:
    """(n, d) float32 rows, L2-normalised, generated chunk by chunk (no float64 temporaries)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - s), d), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[s : s + len(block)] = block
    return out


def make_class_data(args: argparse.Namespace) -> tuple[np.ndarray, list[str], list[set[str]], list[set[str]]]:
    """Random gallery class matrix (1-3 classes per caption) and per-query removed / present sets."""
    rng = np.random.default_rng(args.seed + 2)
    names = [f"class{i}" for i in range(args.classes)]
    matrix = np.zeros((args.gallery, args.classes), dtype=bool)
    for _ in range(3):
        cols = rng.integers(0, args.classes, size=args.gallery)
        on = rng.random(args.gallery) < 0.6
        matrix[np.arange(args.gallery)[on], cols[on]] = True
    matrix[np.arange(args.gallery), rng.integers(0, args.classes, size=args.gallery)] = True
    removed, present = [], []
    for _ in range(args.queries):
        picks = rng.choice(args.classes, size=1 + int(rng.integers(1, 5)), replace=False)
        removed.append({names[picks[0]]})
        present.append({names[p] for p in picks[1:]})
    return matrix, names, removed, present


def part_chunked(args: argparse.Namespace) -> dict:
    from hf_spurious.evaluation.topk import topk_similarities
    from hf_spurious.metrics import odmap_at_k, removed_mention_rate_at_k

    t0 = time.perf_counter()
    gallery = make_embeddings(args.gallery, args.dim, args.seed)
    queries = make_embeddings(args.queries, args.dim, args.seed + 1)
    matrix, names, removed, present = make_class_data(args)
    t_data = time.perf_counter() - t0
    rss_data = _rss_now()
    t1 = time.perf_counter()
    _, ranked = topk_similarities(
        queries, gallery, 10, chunk_size=args.chunk_size, query_chunk_size=args.query_chunk_size, device="cpu",
        precision="exact-fp32",
    )  # fmt: skip
    t_topk = time.perf_counter() - t1
    t2 = time.perf_counter()
    odmap = odmap_at_k(ranked, matrix, removed, present, k=(1, 5, 10), class_names=names)
    rate = removed_mention_rate_at_k(ranked, matrix, removed, k=(1, 5, 10), class_names=names)
    t_metric = time.perf_counter() - t2
    np.save(args.scratch / "chunked_head.npy", ranked[: args.dense_queries])
    return {
        "data_seconds": t_data,
        "topk_seconds": t_topk,
        "metric_seconds": t_metric,
        "total_seconds": t_topk + t_metric,
        "rss_after_data": rss_data,
        "peak_rss": _peak(),
        "odmap": odmap,
        "removed_mention_rate": rate,
    }


def part_dense(args: argparse.Namespace) -> dict:
    import torch

    gallery = torch.from_numpy(make_embeddings(args.gallery, args.dim, args.seed))
    queries = torch.from_numpy(make_embeddings(args.queries, args.dim, args.seed + 1)[: args.dense_queries])
    rss_data = _rss_now()
    t0 = time.perf_counter()
    sims = queries @ gallery.T  # the dense (q, G) matrix
    _, order = torch.sort(sims, dim=1, descending=True, stable=True)  # exact ranking, ties by index
    ranked = order[:, :10].numpy()
    t_dense = time.perf_counter() - t0
    peak = _peak()
    del sims, order
    t1 = time.perf_counter()
    _, tk = torch.topk(queries @ gallery.T, 10, dim=1)  # a cheaper dense variant (ties unordered)
    t_dense_topk = time.perf_counter() - t1
    return {
        "queries": int(queries.shape[0]),
        "dense_sort_seconds": t_dense,
        "dense_topk_seconds": t_dense_topk,
        "rss_after_data": rss_data,
        "peak_rss": peak,
        "matrix_bytes_full": args.queries * args.gallery * 4,
        "ranked_head": ranked.tolist(),
        "topk_agrees_with_sort": bool((tk.numpy() == ranked).mean() > 0.999),
    }


def synthetic_captions(n: int, seed: int) -> list[str]:
    """COCO-like captions from the COCO vocabulary's words and some non-class nouns."""
    from hf_spurious.vocab import load_vocabulary

    vocab = load_vocabulary("coco")
    words = [w for c in vocab.classes for w in vocab.words(c)]
    other = [
        "field",
        "street",
        "kitchen",
        "beach",
        "table top",
        "room",
        "park",
        "sky",
        "water",
        "snow",
        "road",
        "wall",
    ]
    adjs = ["a small", "a large", "a red", "two", "some", "an old", "a white", "three"]
    rels = ["next to", "on", "near", "in front of", "behind", "with", "under"]
    rng = np.random.default_rng(seed)
    w = rng.integers(0, len(words), size=(n, 2))
    o = rng.integers(0, len(other), size=n)
    a = rng.integers(0, len(adjs), size=(n, 2))
    r = rng.integers(0, len(rels), size=(n, 2))
    shape = rng.integers(0, 3, size=n)
    out = []
    for i in range(n):
        if shape[i] == 0:
            out.append(f"{adjs[a[i, 0]]} {words[w[i, 0]]} {rels[r[i, 0]]} {adjs[a[i, 1]]} {words[w[i, 1]]}.")
        elif shape[i] == 1:
            out.append(f"{adjs[a[i, 0]]} {words[w[i, 0]]} {rels[r[i, 0]]} the {other[o[i]]}")
        else:
            out.append(
                f"A view of the {other[o[i]]} {rels[r[i, 1]]} {adjs[a[i, 1]]} {words[w[i, 1]]} and a {words[w[i, 0]]}"
            )
    return out


def part_matcher(args: argparse.Namespace) -> dict:
    from hf_spurious.text import caption_class_matrix
    from hf_spurious.vocab import load_vocabulary

    captions = synthetic_captions(args.gallery, args.seed)
    vocab = load_vocabulary("coco")
    t0 = time.perf_counter()
    matrix, names = caption_class_matrix(captions, vocab, method="lexical", progress=False)
    seconds = time.perf_counter() - t0
    return {
        "captions": len(captions),
        "seconds": seconds,
        "mean_classes_per_caption": float(matrix.sum(axis=1).mean()),
        "classes": len(names),
        "peak_rss": _peak(),
    }


def _bare_loop(q, g, k: int, chunk: int, qchunk: int):
    """The baseline: fp32 products chunk by chunk + ``torch.topk``, merged by ``torch.topk`` (no tie rule)."""
    import torch

    out = []
    for qs in range(0, q.shape[0], qchunk):
        qq, vs, js = q[qs : qs + qchunk], [], []
        for gs in range(0, g.shape[0], chunk):
            v, i = torch.topk(qq @ g[gs : gs + chunk].T, k, dim=1)
            vs.append(v)
            js.append(i + gs)
        v, i = torch.topk(torch.cat(vs, 1), k, dim=1)
        out.append(torch.cat(js, 1).gather(1, i))
    return torch.cat(out)


def part_precision(args: argparse.Namespace) -> dict:
    import torch

    from hf_spurious.evaluation.exact_topk import bf16_speedup, bf16_topk, hardware_bf16
    from hf_spurious.evaluation.topk import topk_similarities

    gallery = make_embeddings(args.gallery, args.dim, args.seed)
    queries = make_embeddings(args.queries, args.dim, args.seed + 1)[: args.precision_queries]
    gt, qt = torch.from_numpy(gallery), torch.from_numpy(queries)
    opts = {"chunk_size": args.chunk_size, "query_chunk_size": args.query_chunk_size}
    rss_data = _rss_now()
    times: dict[str, list[float]] = {"bf16": [], "fp32": [], "bare": []}
    peak_bf16, stats, same = 0, {}, True
    with torch.no_grad():  # warm-up (oneDNN kernel generation, probes), not timed
        bf16_topk(queries[:256], gallery[: 4 * args.chunk_size], 10, **opts)
        _bare_loop(qt[:256], gt[: 4 * args.chunk_size], 10, args.chunk_size, args.query_chunk_size)
    for _rep in range(args.repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            v_b, i_b, stats = bf16_topk(queries, gallery, 10, **opts)
        times["bf16"].append(time.perf_counter() - t0)
        peak_bf16 = peak_bf16 or _peak()
        t0 = time.perf_counter()
        v_f, i_f = topk_similarities(
            queries, gallery, 10, device="cpu", progress=False, precision="exact-fp32", **opts
        )
        times["fp32"].append(time.perf_counter() - t0)
        same = same and np.array_equal(v_f, v_b.numpy()) and np.array_equal(i_f, i_b.numpy())
        t0 = time.perf_counter()
        with torch.no_grad():
            _bare_loop(qt, gt, 10, args.chunk_size, args.query_chunk_size)
        times["bare"].append(time.perf_counter() - t0)
    return {
        "queries": int(queries.shape[0]),
        "times": times,
        "medians": {key: float(np.median(v)) for key, v in times.items()},
        "rss_after_data": rss_data,
        "peak_bf16": peak_bf16,
        "peak_rss": _peak(),
        "identical": bool(same),
        "stats": stats,
        "hardware_bf16": hardware_bf16(),
        "probe_speedup": bf16_speedup(args.dim, torch.get_num_threads()),
        "cpu_flags": sorted({f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in _cpu_flags()}),
        "torch": torch.__version__,
    }


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return {w for line in f if line.startswith("flags") for w in line.split()}
    except OSError:
        return set()


PARTS = {"chunked": part_chunked, "dense": part_dense, "matcher": part_matcher, "precision": part_precision}


def _run_part(name: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--part", name, "--scratch", str(args.scratch)]
    for key in (
        "queries",
        "gallery",
        "dim",
        "classes",
        "threads",
        "dense_queries",
        "chunk_size",
        "query_chunk_size",
        "seed",
        "precision_queries",
        "repeats",
    ):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    print(f"[odmap benchmark] part {name} ...", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"


def report(args: argparse.Namespace, res: dict) -> str:
    c, d, m = res["chunked"], res["dense"], res["matcher"]
    scale = args.queries / d["queries"]
    same = np.array_equal(np.load(args.scratch / "chunked_head.npy"), np.array(d["ranked_head"]))
    dense_extra_full = d["rss_after_data"] + d["matrix_bytes_full"]
    ok_time, ok_mem, ok_match = c["total_seconds"] < 90, c["peak_rss"] < 2 * GiB, m["seconds"] < 60
    verdict = lambda ok: "meets target" if ok else "**misses target**"  # noqa: E731
    lines = [
        "## ODmAP at COCO scale (`benchmarks/odmap.py`)",
        "",
        f"{args.queries:,} queries x {args.gallery:,} gallery captions, d = {args.dim}, {args.classes} classes, "
        f"random L2-normalised float32 embeddings and random class sets; {args.threads} CPU threads; "
        f"chunks: {args.query_chunk_size} queries x {args.chunk_size:,} captions. Each part ran in its own "
        "subprocess; peak = `ru_maxrss` of that process (it includes the "
        f"{_gib(args.gallery * args.dim * 4)} of gallery embeddings and the interpreter with torch).",
        "",
        "| step | time | peak memory | note |",
        "| --- | ---: | ---: | --- |",
        f"| chunked exact top-10 (`topk_similarities`) | {c['topk_seconds']:.1f} s | {_gib(c['peak_rss'])} | "
        f"RSS after building the data: {_gib(c['rss_after_data'])} |",
        f"| ODmAP@1,5,10 + removed-mention rate from the top-10 | {c['metric_seconds']:.1f} s | | |",
        f"| **chunked total (top-k + metrics)** | **{c['total_seconds']:.1f} s** | **{_gib(c['peak_rss'])}** | "
        f"time {verdict(ok_time)} (< 90 s), memory {verdict(ok_mem)} (< 2 GiB) |",
        f"| dense baseline, measured on {d['queries']} queries (matrix + stable sort) | {d['dense_sort_seconds']:.1f} s | "
        f"{_gib(d['peak_rss'])} | |",
        f"| dense baseline, matrix + `torch.topk`, measured on {d['queries']} queries | {d['dense_topk_seconds']:.1f} s | | |",
        f"| dense baseline for all {args.queries:,} queries (**extrapolated**, x{scale:.0f}) | "
        f"{d['dense_sort_seconds'] * scale:.0f} s (sort) / {d['dense_topk_seconds'] * scale:.0f} s (topk) | "
        f"{_gib(dense_extra_full)} (**extrapolated**: data + the {_gib(d['matrix_bytes_full'])} matrix) | not run: does not fit |",
        f"| lexical caption -> class matching, {m['captions']:,} synthetic captions | {m['seconds']:.1f} s | "
        f"{_gib(m['peak_rss'])} | {verdict(ok_match)} (< 60 s); {m['mean_classes_per_caption']:.2f} classes per caption |",
        "",
        f"Chunked indices equal the dense stable-sort indices on the {d['queries']} measured queries: **{same}**.",
        "ODmAP on random data (a sanity value, not a result): "
        + ", ".join(f"{k} = {v:.2f}" for k, v in c["odmap"].items())
        + "; removed-mention rate: "
        + ", ".join(f"{k.split('@')[1]}: {v:.1f}" for k, v in c["removed_mention_rate"].items())
        + ".",
    ]
    return "\n".join(lines + _precision_lines(args, res["precision"]))


def _precision_lines(args: argparse.Namespace, p: dict) -> list[str]:
    med, scale = p["medians"], args.queries / p["queries"]
    ratio = med["bf16"] / med["bare"]
    ok = ratio <= 0.6 and p["peak_bf16"] <= 2 * GiB
    runs = lambda key: ", ".join(f"{t:.1f}" for t in p["times"][key])  # noqa: E731
    return [
        "",
        "### Exact top-10: bf16 candidates + fp32 verification vs exact fp32 vs a bare fp32 loop",
        "",
        f"First {p['queries']:,} queries x {args.gallery:,} captions x d = {args.dim}, the three methods "
        f"interleaved in one process, {args.repeats} runs each (median; all runs listed); totals for all "
        f"{args.queries:,} queries **extrapolated** linearly (x{scale:.2f}). CPU flags: "
        f"{', '.join(p['cpu_flags']) or 'none'}; oneDNN bf16 available to torch {p['torch']}: "
        f"{p['hardware_bf16']}; one-time probe: bf16 matrix product {p['probe_speedup']:.1f}x faster than fp32.",
        "",
        "| method | median s (runs) | all queries (**extrapolated**) | ratio to bare fp32 loop |",
        "| --- | ---: | ---: | ---: |",
        f"| bare fp32 products + `torch.topk` (baseline, no tie rule) | {med['bare']:.1f} ({runs('bare')}) | "
        f"{med['bare'] * scale:.0f} s | 1.00 |",
        f'| `precision="exact-fp32"` | {med["fp32"]:.1f} ({runs("fp32")}) | {med["fp32"] * scale:.0f} s | '
        f"{med['fp32'] / med['bare']:.2f} |",
        f'| **`precision="exact-bf16"`** | **{med["bf16"]:.1f}** ({runs("bf16")}) | {med["bf16"] * scale:.0f} s | '
        f"**{ratio:.2f}** |",
        "",
        f"Peak memory of the process after the first bf16 run: {_gib(p['peak_bf16'])} (RSS after building "
        f"the data: {_gib(p['rss_after_data'])}); target <= 0.6x the bare loop and <= 2 GiB: "
        f"{'**met**' if ok else '**missed**'}. bf16 and fp32 indices and scores identical bit for bit: "
        f"**{p['identical']}**; rows re-scored in fp32 per query: {p['stats']['candidates']:.1f} of "
        f"{args.gallery:,}; query blocks that fell back to fp32: {p['stats']['fallback_blocks']}. "
        "The gallery is converted to bf16 chunk by chunk on the fly (no bf16 copy in the embedding cache).",
    ]


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--part", choices=[*PARTS, "all"], default="all")
    p.add_argument("--queries", type=int, default=5000)
    p.add_argument("--gallery", type=int, default=616_435)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--classes", type=int, default=80)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dense-queries", type=int, default=200)
    p.add_argument("--chunk-size", type=int, default=32768)
    p.add_argument("--query-chunk-size", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision-queries", type=int, default=2048, help="queries timed in the precision part")
    p.add_argument("--repeats", type=int, default=3, help="runs per method in the precision part (median)")
    p.add_argument(
        "--parts", default="matcher,dense,chunked,precision", help="parts to run (comma-separated)"
    )
    p.add_argument("--scratch", type=Path, default=Path("/tmp/hf_spurious_odmap_bench"))
    p.add_argument(
        "--no-write", action="store_true", help="print the report instead of writing docs/benchmarks.md"
    )
    args = p.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.part != "all":
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(PARTS[args.part](args)))
        return
    results = {name: _run_part(name, args) for name in args.parts.split(",")}
    (args.scratch / "results.json").write_text(json.dumps(results))
    md = report(args, results)
    if args.no_write:
        print(md)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import write_section

    write_section("odmap", md)
    print(md)


if __name__ == "__main__":
    main()
