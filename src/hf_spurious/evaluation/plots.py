"""Result pictures: the one bar chart, the one GradCAM overlay, and the evaluation runners' reports.

Charts are returned as PNG bytes (a report may embed them); :func:`save_png` writes them to disk.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hf_spurious.cache import atomic_write_bytes

__all__ = [
    "bar_chart",
    "classification_markdown",
    "figure_png",
    "mean_std",
    "overlay_heatmap",
    "plot_classification",
    "plot_retrieval",
    "pyplot",
    "retrieval_markdown",
    "save_overlay",
    "save_png",
]


def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value); NaN for no values (``None`` skipped)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib  # lazy: matplotlib is slow to import

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # lazy: matplotlib is slow to import

    return plt


def figure_png(fig: Any) -> bytes:
    """PNG bytes of a matplotlib figure (110 dpi, tight bounding box); the figure is closed."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return buf.getvalue()


def save_png(png: bytes, path: str | os.PathLike) -> Path:
    """Write PNG bytes to ``path`` (atomically, parent directories created)."""
    return atomic_write_bytes(path, png)


def _whole(value: float) -> str:
    return f"{value:.0f}"


def bar_chart(
    groups: Sequence[str],
    series: Mapping[str, Sequence[Sequence[float]]],
    *,
    title: str,
    ylabel: str,
    ylim: tuple[float, float] | None = None,
    value_format: Callable[[float], str] = _whole,
) -> bytes:
    """Grouped bars as PNG: ``series[name][i]`` holds the per-seed values for ``groups[i]``.

    Each bar is the mean, with a sample-std whisker when some group has several values, and the mean
    (``value_format``) printed on top. Several series get a legend.
    """
    plt = pyplot()
    names = list(series)
    for name in names:
        if len(series[name]) != len(groups):
            raise ValueError(f"series {name!r} has {len(series[name])} entries for {len(groups)} groups")
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(groups) * max(1, len(names)) ** 0.5 + 2), 3.2))
    width = 0.8 / max(1, len(names))
    x = np.arange(len(groups))
    for j, name in enumerate(names):
        stats = [mean_std(v) for v in series[name]]
        means = [0.0 if math.isnan(m) else m for m, _ in stats]
        stds = [0.0 if math.isnan(s) else s for _, s in stats]
        spread = any(len(v) > 1 for v in series[name])  # one seed: no whisker to draw
        bars = ax.bar(
            x + (j - (len(names) - 1) / 2) * width,
            means,
            width,
            yerr=stds if spread else None,
            capsize=3,
            label=name,
        )
        for bar, (m, _), sd in zip(bars, stats, stds):
            if not math.isnan(m):
                ax.annotate(
                    value_format(m),
                    (bar.get_x() + bar.get_width() / 2, bar.get_height() + (sd if spread else 0.0)),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    ax.set_xticks(x, groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10, pad=18 if len(names) > 1 else 6)  # room for the legend above the bars
    if ylim:
        ax.set_ylim(*ylim)
    if len(names) > 1:
        # above the axes, outside the bars (inside, bars near the top hid it and the edge clipped it)
        ax.legend(
            fontsize=7, frameon=False, ncol=min(len(names), 4), loc="lower center", bbox_to_anchor=(0.5, 1.0)
        )
    ax.spines[["top", "right"]].set_visible(False)
    return figure_png(fig)


def overlay_heatmap(image: np.ndarray, cam: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """Blend a ``[0, 1]`` map (jet colour map, ``HxW``) over an ``HxWx3`` uint8 image; uint8 result."""
    from matplotlib import colormaps  # lazy: matplotlib is slow to import

    image = np.asarray(image)
    cam = np.asarray(cam, dtype=np.float32)
    if image.shape[:2] != cam.shape:
        raise ValueError(
            f"map of shape {cam.shape} does not match image of shape {image.shape[:2]} (they differ in size)"
        )
    heat = colormaps["jet"](np.clip(cam, 0, 1))[..., :3]
    blend = (1 - alpha) * image.astype(np.float32) / 255.0 + alpha * heat
    return (blend * 255).round().astype(np.uint8)


def save_overlay(image: np.ndarray, cam: np.ndarray, path: str | os.PathLike, *, alpha: float = 0.5) -> Path:
    """:func:`overlay_heatmap` saved as a PNG at ``path`` (parent directories created)."""
    blended = overlay_heatmap(image, cam, alpha=alpha)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(blended).save(path)
    return path


# --------------------------------------------------------------------------------- evaluation reports


def _value_label(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.3f}"


def _plot(
    values: Mapping[str, float], path: Path, *, title: str, ylabel: str, ylim: tuple[float, float] = (0, 100)
) -> Path:
    """One bar per key of ``values`` (one value each), saved as PNG at ``path``."""
    if not values:
        raise ValueError(f"nothing to plot for {title!r}")
    png = bar_chart(
        [str(k) for k in values],
        {"": [[float(v)] for v in values.values()]},
        title=title,
        ylabel=ylabel,
        ylim=ylim,
        value_format=_value_label,
    )
    return save_png(png, path)


def plot_retrieval(results: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """``odmap.png``, ``removed_mention_rate.png`` and ``recall.png`` for the sections present."""
    out = Path(out_dir)
    paths = []
    if "odmap" in results:
        paths.append(
            _plot(results["odmap"], out / "odmap.png", title="ODmAP@k (higher is better)", ylabel="percent")
        )
    if "removed_mention_rate" in results:
        paths.append(
            _plot(
                results["removed_mention_rate"],
                out / "removed_mention_rate.png",
                title="Removed-object mention rate@k (lower is better)",
                ylabel="percent",
            )
        )
    if "recall" in results:
        recall = {k: v for k, v in results["recall"].items() if "_r@" in k}
        paths.append(_plot(recall, out / "recall.png", title="Recall@K", ylabel="percent"))
    return paths


def plot_classification(results: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """``group_accuracy.png`` and ``group_aiou.png`` for the sections present."""
    out = Path(out_dir)
    paths = []
    if "group" in results:
        acc = {str(k): v for k, v in results["group"]["group_accuracy"].items()}
        paths.append(_plot(acc, out / "group_accuracy.png", title="Accuracy per group", ylabel="percent"))
    if "aiou" in results and "group_aiou" in results["aiou"]:
        aiou = {str(k): v for k, v in results["aiou"]["group_aiou"].items()}
        paths.append(_plot(aiou, out / "group_aiou.png", title="AIoU per group", ylabel="AIoU", ylim=(0, 1)))
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
