"""Result reports: markdown tables and matplotlib bar charts (PNG) for the evaluation runners."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "bar_chart",
    "classification_markdown",
    "plot_classification",
    "plot_retrieval",
    "retrieval_markdown",
]


def bar_chart(
    values: Mapping[str, float],
    path: str | os.PathLike,
    *,
    title: str,
    ylabel: str,
    ylim: tuple[float, float] | None = (0, 100),
) -> Path:
    """One bar per key, value printed on top; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not values:
        raise ValueError(f"nothing to plot for {title!r}")
    fig, ax = plt.subplots(figsize=(max(3.5, 0.9 * len(values) + 1.5), 3.2))
    names, heights = list(values), [float(v) for v in values.values()]
    bars = ax.bar(names, heights, color="#4C72B0")
    for bar, h in zip(bars, heights):
        ax.annotate(
            f"{h:.1f}" if abs(h) >= 1 else f"{h:.3f}",
            (bar.get_x() + bar.get_width() / 2, h),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.tick_params(axis="x", labelrotation=30 if len(values) > 4 else 0, labelsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_retrieval(results: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    out = Path(out_dir)
    paths = []
    if "odmap" in results:
        paths.append(
            bar_chart(
                results["odmap"], out / "odmap.png", title="ODmAP@k (higher is better)", ylabel="percent"
            )
        )
    if "removed_mention_rate" in results:
        paths.append(
            bar_chart(
                results["removed_mention_rate"],
                out / "removed_mention_rate.png",
                title="Removed-object mention rate@k (lower is better)",
                ylabel="percent",
            )
        )
    if "recall" in results:
        recall = {k: v for k, v in results["recall"].items() if "_r@" in k}
        paths.append(bar_chart(recall, out / "recall.png", title="Recall@K", ylabel="percent"))
    return paths


def plot_classification(results: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    out = Path(out_dir)
    paths = []
    if "group" in results:
        acc = {str(k): v for k, v in results["group"]["group_accuracy"].items()}
        paths.append(bar_chart(acc, out / "group_accuracy.png", title="Accuracy per group", ylabel="percent"))
    if "aiou" in results and "group_aiou" in results["aiou"]:
        aiou = {str(k): v for k, v in results["aiou"]["group_aiou"].items()}
        paths.append(
            bar_chart(aiou, out / "group_aiou.png", title="AIoU per group", ylabel="AIoU", ylim=(0, 1))
        )
    return paths


def _table(rows: list[tuple[str, Any]], header: tuple[str, str] = ("metric", "value")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | ---: |"]
    for name, value in rows:
        if isinstance(value, float):
            value = f"{value:.3f}" if "AIoU" in name else f"{value:.2f}"
        lines.append(f"| {name} | {value} |")
    return "\n".join(lines)


def retrieval_markdown(results: Mapping[str, Any], title: str = "Retrieval evaluation") -> str:
    rows: list[tuple[str, Any]] = []
    for section in ("odmap", "removed_mention_rate", "recall"):
        rows.extend((k, float(v)) for k, v in results.get(section, {}).items())
    rows += [
        ("queries", results.get("num_queries", "")),
        ("gallery captions", results.get("gallery_size", "")),
    ]
    s = results.get("settings", {})
    notes = ", ".join(f"{k}={v}" for k, v in s.items() if k != "fingerprint")
    return f"# {title}\n\n{_table(rows)}\n\nSettings: {notes}\n"


def classification_markdown(results: Mapping[str, Any], title: str = "Classification evaluation") -> str:
    rows: list[tuple[str, Any]] = [
        ("accuracy", float(results["accuracy"])),
        ("images", results["num_images"]),
    ]
    group = results.get("group")
    if group:
        rows += [
            (k, float(group[k]))
            for k in ("average_accuracy", "adjusted_average_accuracy", "worst_group_accuracy")
        ]
        rows.append(("worst group", group.get("worst_group")))
        rows += [(f"accuracy[{g}]", float(v)) for g, v in group["group_accuracy"].items()]
    aiou = results.get("aiou")
    if aiou:
        rows.append(("AIoU", float(aiou["aiou"])))
        if "worst_group_aiou" in aiou:
            rows += [
                ("worst-group AIoU", float(aiou["worst_group_aiou"])),
                ("min group AIoU", float(aiou["min_group_aiou"])),
            ]
            rows += [(f"AIoU[{g}]", float(v)) for g, v in aiou["group_aiou"].items()]
    return f"# {title}\n\n{_table(rows)}\n\nAccuracies in percent; AIoU in [0, 1].\n"
