"""The headline metrics of ``hf-spurious evaluate`` as a plain-text table for the terminal."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_table", "print_summary", "summary_rows"]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the first column left-aligned, the others right-aligned."""
    cells = [list(header), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        first = r[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(r[1:], widths[1:]))]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _at_k(section: Mapping[str, Any], prefix: str) -> dict[int, float]:
    out = {}
    for key, value in section.items():
        m = re.fullmatch(rf"{re.escape(prefix)}@(\d+)", key)
        if m:
            out[int(m.group(1))] = float(value)
    return out


def _retrieval_rows(results: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    recall = results.get("recall") or {}
    series = [
        ("ODmAP (%)", _at_k(results.get("odmap") or {}, "odmap")),
        (
            "removed-mention rate (%)",
            _at_k(results.get("removed_mention_rate") or {}, "removed_mention_rate"),
        ),
        ("Recall image->text (%)", _at_k(recall, "i2t_r")),
        ("Recall text->image (%)", _at_k(recall, "t2i_r")),
    ]
    series = [(name, vals) for name, vals in series if vals]
    ks = sorted({k for _, vals in series for k in vals})
    rows = [[name, *(f"{vals[k]:.2f}" if k in vals else "" for k in ks)] for name, vals in series]
    if "rsum" in recall:
        rows.append(["rsum", f"{float(recall['rsum']):.2f}", *([""] * (len(ks) - 1))])
    return ["metric", *(f"@{k}" for k in ks)], rows


def _classification_rows(results: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    rows = [["accuracy (%)", f"{float(results['accuracy']):.2f}"]] if "accuracy" in results else []
    group = results.get("group") or {}
    for key, name in (
        ("average_accuracy", "average accuracy (%)"),
        ("adjusted_average_accuracy", "adjusted average accuracy (%)"),
        ("worst_group_accuracy", "worst-group accuracy (%)"),
    ):
        if key in group:
            rows.append([name, f"{float(group[key]):.2f}"])
    if group.get("worst_group") is not None:
        rows.append(["worst group", str(group["worst_group"])])
    aiou = results.get("aiou") or {}
    if "aiou" in aiou:
        rows.append([f"AIoU ({aiou.get('layer', 'default layer')})", f"{float(aiou['aiou']):.4f}"])
    if "worst_group_aiou" in aiou:
        rows.append(["worst-group AIoU", f"{float(aiou['worst_group_aiou']):.4f}"])
    for name, other in (aiou.get("by_layer") or {}).items():
        if name != aiou.get("layer") and "aiou" in other:
            rows.append([f"AIoU ({name})", f"{float(other['aiou']):.4f}"])
    return ["metric", "value"], rows


def summary_rows(results: Mapping[str, Any], task: str) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)`` of the headline metrics of a retrieval or classification result."""
    return _retrieval_rows(results) if task == "retrieval" else _classification_rows(results)


def print_summary(results: Mapping[str, Any], task: str) -> None:
    """Print the headline table (nothing when the results hold no headline metric)."""
    header, rows = summary_rows(results, task)
    if rows:
        print(format_table(header, rows))
