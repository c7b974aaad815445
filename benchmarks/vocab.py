"""Caption -> class matching speed on synthetic COCO-like captions (target: 616,767 captions in < 60 s).

Run: python benchmarks/vocab.py [--n 616767] [--spacy 5000] [--write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hf_spurious.cache import ArrayStore
from hf_spurious.text import PhraseExtractor, caption_class_matrix
from hf_spurious.vocab import load_vocabulary

FILL = [
    "a",
    "an",
    "the",
    "on",
    "of",
    "with",
    "in",
    "near",
    "sitting",
    "standing",
    "next",
    "to",
    "two",
    "large",
    "small",
    "white",
    "black",
    "red",
    "is",
    "are",
    "while",
]


def synthetic_captions(n: int, seed: int = 0) -> list[str]:
    """8-13 filler words plus 1-3 COCO words (30% with a plural "s"), capitalised, with a full stop."""
    rng = np.random.default_rng(seed)
    voc = load_vocabulary("coco")
    words = [w for c in voc.classes for w in voc.words(c)]
    out = []
    for _ in range(n):
        toks = [FILL[i] for i in rng.integers(0, len(FILL), rng.integers(8, 14))]
        for _ in range(rng.integers(1, 4)):
            w = words[rng.integers(0, len(words))] + ("s" if rng.random() < 0.3 else "")
            toks.insert(int(rng.integers(0, len(toks))), w)
        out.append(" ".join(toks).capitalize() + ".")
    return out


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=616_767)
    ap.add_argument(
        "--spacy", type=int, default=5000, help="captions for the spaCy noun-chunk line (0: skip)"
    )
    ap.add_argument("--write", action="store_true", help="write the section of docs/benchmarks.md")
    args = ap.parse_args()
    voc = load_vocabulary("coco")
    caps = synthetic_captions(args.n)
    rows = []
    _, w, c = timed(lambda: [voc.classes_in(x) for x in caps])
    rows.append(("ClassVocabulary.classes_in", args.n, w, c))
    _, w, c = timed(lambda: [voc.mentions(x) for x in caps])
    rows.append(("ClassVocabulary.mentions (char spans)", args.n, w, c))
    with tempfile.TemporaryDirectory() as d:
        store = ArrayStore(d)
        _, w, c = timed(lambda: caption_class_matrix(caps, voc, cache=store, progress=False))
        rows.append(("caption_class_matrix lexical (+ npy cache write)", args.n, w, c))
        _, w, c = timed(lambda: caption_class_matrix(caps, voc, cache=store, progress=False))
        rows.append(("caption_class_matrix lexical, cache hit", args.n, w, c))
    if args.spacy:
        ex = PhraseExtractor()
        sub = caps[: args.spacy]
        _, w, c = timed(lambda: ex.phrases_batch(sub, voc, progress=False))
        rows.append((f"PhraseExtractor.phrases_batch ({ex.backend})", len(sub), w, c))
    lines = [
        "Caption → class matching on synthetic COCO-like captions (8–13 filler words + 1–3 COCO words), "
        "`python benchmarks/vocab.py`. Target: the COCO gallery (616,767 captions) in < 60 s.",
        "",
        "| step | captions | wall s | captions / s (wall) | CPU s |",
        "|---|---|---|---|---|",
    ]
    for name, n, w, c in rows:
        lines.append(f"| {name} | {n:,} | {w:.1f} | {n / w:,.0f} | {c:.1f} |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        from _report import write_section

        write_section("vocab", text)


if __name__ == "__main__":
    main()
