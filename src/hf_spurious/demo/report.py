"""The demo's report: ``results.json``, ``report.md`` (PNG files beside it) and a self-contained ``report.html``.

A report is a small document model (sections of paragraphs, tables and figures) rendered twice: to
Markdown, whose images are files in ``figures/``, and to HTML, whose images are embedded as base64 so the
file can be mailed or opened anywhere. Chart and image-grid helpers return PNG bytes.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Segment = tuple[str, bool]  # (text, highlighted)


@dataclass(frozen=True)
class Rich:
    """A table cell or line of text whose highlighted segments are shown bold (md) or marked (html)."""

    segments: tuple[Segment, ...]

    @property
    def plain(self) -> str:
        return "".join(text for text, _ in self.segments)


@dataclass(frozen=True)
class ImageRef:
    """A table cell showing a registered image (``Report.images[name]``)."""

    name: str
    alt: str = ""


Cell = str | float | int | Rich | ImageRef | None


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    columns: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    caption: str = ""


@dataclass
class Figure:
    name: str
    caption: str = ""


Block = Paragraph | Table | Figure


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    """A titled list of sections plus the PNG images they refer to (name -> bytes)."""

    title: str
    sections: list[Section] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)

    def add_image(self, name: str, png: bytes) -> str:
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(
                f"image name {name!r} must be letters, digits, '-' or '_' (it becomes a file name)"
            )
        if not png.startswith(b"\x89PNG"):
            raise ValueError(f"image {name!r} is not PNG data")
        self.images[name] = png
        return name


# ----------------------------------------------------------------------------------------------- helpers


def highlight(text: str, spans: Iterable[tuple[int, int]]) -> Rich:
    """Split ``text`` into segments, highlighting the character ``spans`` (overlaps merged)."""
    merged: list[list[int]] = []
    for start, end in sorted((int(s), int(e)) for s, e in spans):
        if not 0 <= start <= end <= len(text):
            raise ValueError(f"span ({start}, {end}) is outside the text of length {len(text)}: {text!r}")
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    segments: list[Segment] = []
    pos = 0
    for start, end in merged:
        if start > pos:
            segments.append((text[pos:start], False))
        if end > start:
            segments.append((text[start:end], True))
        pos = end
    if pos < len(text):
        segments.append((text[pos:], False))
    return Rich(tuple(segments))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value); NaN for no values."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def fmt(values: float | Sequence[float] | None, digits: int = 1, signed: bool = False) -> str:
    """``67.9`` for one value, ``67.9 ± 2.1`` for several, ``–`` for none (``+2.1`` with ``signed``)."""
    if values is None:
        return "–"
    if isinstance(values, (int, float)):
        values = [values]
    if len(values) == 0:
        return "–"
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "–"
    head = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    return head if len(values) == 1 else f"{head} ± {std:.{digits}f}"


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """Encode an ``HxWx3`` uint8 (or ``HxW``) array as PNG, optionally upscaled by nearest neighbour."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"png_bytes expects uint8 pixels, got {arr.dtype}")
    if scale > 1:
        arr = arr.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _figure_png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def bar_chart(
    groups: Sequence[str],
    series: Mapping[str, Sequence[Sequence[float]]],
    *,
    title: str,
    ylabel: str,
    ylim: tuple[float, float] | None = None,
) -> bytes:
    """Grouped bars: ``series[name][i]`` holds the per-seed values for ``groups[i]`` (mean bar, std whisker)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
                    f"{m:.0f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height() + (sd if spread else 0.0)),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    ax.set_xticks(x, groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if ylim:
        ax.set_ylim(*ylim)
    if len(names) > 1:
        ax.legend(fontsize=7, frameon=False, ncol=min(len(names), 4))
    ax.spines[["top", "right"]].set_visible(False)
    return _figure_png(fig)


def image_grid(
    rows: Sequence[Sequence[np.ndarray]], *, column_titles: Sequence[str], row_labels: Sequence[str] = ()
) -> bytes:
    """A grid of images (each ``HxWx3`` uint8), one row per example, titled columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("image_grid needs at least one row")
    ncols = len(column_titles)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.6 * ncols + 0.4, 1.6 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        if len(row) != ncols:
            raise ValueError(f"row {i} has {len(row)} images for {ncols} columns")
        for j, img in enumerate(row):
            ax = axes[i][j]
            ax.imshow(np.asarray(img), interpolation="nearest", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(column_titles[j], fontsize=8)
            if j == 0 and i < len(row_labels):
                ax.set_ylabel(row_labels[i], fontsize=7)
    fig.tight_layout()
    return _figure_png(fig)


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a ``[0, 1]`` heat map (``HxW``, same size as ``image``) over the image with a jet colour map."""
    import matplotlib

    heat = np.asarray(heat, dtype=float)
    if heat.shape != image.shape[:2]:
        raise ValueError(f"heat map of shape {heat.shape} does not match image of shape {image.shape[:2]}")
    coloured = matplotlib.colormaps["jet"](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    out = (1 - alpha) * image.astype(float) + alpha * coloured
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- rendering


def _md_cell(cell: Cell) -> str:
    if cell is None:
        return "–"
    if isinstance(cell, Rich):
        text = "".join(f"**{t}**" if hl and t.strip() else t for t, hl in cell.segments)
    elif isinstance(cell, ImageRef):
        text = f"![{cell.alt or cell.name}](figures/{cell.name}.png)"
    elif isinstance(cell, float):
        text = fmt(cell)
    else:
        text = str(cell)
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    """Markdown text; images are referenced as ``figures/<name>.png``."""
    lines = [f"# {report.title}", ""]
    for section in report.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Paragraph):
                lines += [block.text, ""]
            elif isinstance(block, Table):
                if block.caption:
                    lines += [f"**{block.caption}**", ""]
                lines.append("| " + " | ".join(_md_cell(c) for c in block.columns) + " |")
                lines.append("|" + "|".join("---" for _ in block.columns) + "|")
                for row in block.rows:
                    if len(row) != len(block.columns):
                        raise ValueError(
                            f"table {block.caption!r}: row {list(row)!r} does not have "
                            f"{len(block.columns)} cells"
                        )
                    lines.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
                lines.append("")
            elif isinstance(block, Figure):
                _check_image(report, block.name)
                lines += [f"![{block.caption or block.name}](figures/{block.name}.png)", ""]
                if block.caption:
                    lines += [f"*{block.caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _check_image(report: Report, name: str) -> None:
    if name not in report.images:
        raise KeyError(f"the report refers to image {name!r}, which was never added (Report.add_image)")


def _data_uri(report: Report, name: str) -> str:
    _check_image(report, name)
    return "data:image/png;base64," + base64.b64encode(report.images[name]).decode("ascii")


def _html_cell(report: Report, cell: Cell) -> str:
    if cell is None:
        return "–"
    if isinstance(cell, Rich):
        return "".join(f"<mark>{html.escape(t)}</mark>" if hl else html.escape(t) for t, hl in cell.segments)
    if isinstance(cell, ImageRef):
        return f'<img class="thumb" alt="{html.escape(cell.alt)}" src="{_data_uri(report, cell.name)}">'
    if isinstance(cell, float):
        return html.escape(fmt(cell))
    return html.escape(str(cell))


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;vertical-align:top}th{background:#f3f3f3}
td{text-align:left}caption{caption-side:top;font-weight:600;text-align:left;padding:.3em 0}
mark{background:#ffd54f;font-weight:600}img.thumb{width:96px;image-rendering:pixelated}
figure{margin:1em 0}figcaption{font-size:.85em;color:#555}.pass{color:#1b5e20}.fail{color:#b71c1c}
"""


def render_html(report: Report) -> str:
    """A self-contained HTML page: every image is embedded as a base64 data URI."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(report.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
    ]
    for section in report.sections:
        out.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Paragraph):
                out.append(f"<p>{_inline_html(block.text)}</p>")
            elif isinstance(block, Table):
                out.append("<table>")
                if block.caption:
                    out.append(f"<caption>{html.escape(block.caption)}</caption>")
                out.append(
                    "<tr>" + "".join(f"<th>{_html_cell(report, c)}</th>" for c in block.columns) + "</tr>"
                )
                for row in block.rows:
                    cells = "".join(f"<td{_cell_class(c)}>{_html_cell(report, c)}</td>" for c in row)
                    out.append(f"<tr>{cells}</tr>")
                out.append("</table>")
            elif isinstance(block, Figure):
                out.append(
                    f'<figure><img alt="{html.escape(block.caption or block.name)}" '
                    f'src="{_data_uri(report, block.name)}"><figcaption>{html.escape(block.caption)}'
                    "</figcaption></figure>"
                )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _cell_class(cell: Cell) -> str:
    if isinstance(cell, str) and cell in ("PASS", "FAIL"):
        return f' class="{cell.lower()}"'
    return ""


def _inline_html(text: str) -> str:
    """Escape ``text`` and turn ``**bold**`` and `` `code` `` into tags (the only markup paragraphs use)."""
    parts = html.escape(text).split("**")
    text = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"results.json cannot hold a value of type {type(obj).__name__}: {obj!r}")


def write_report(out_dir: str | Path, results: Mapping[str, Any], report: Report) -> dict[str, Path]:
    """Write ``results.json``, ``figures/*.png``, ``report.md`` and ``report.html``; return their paths."""
    out = Path(out_dir)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.json", "markdown": out / "report.md", "html": out / "report.html"}
    paths["results"].write_text(json.dumps(results, indent=2, sort_keys=False, default=_json_default) + "\n")
    for name, png in report.images.items():
        (figures / f"{name}.png").write_bytes(png)
    paths["markdown"].write_text(render_markdown(report))
    paths["html"].write_text(render_html(report))
    return paths


# ----------------------------------------------------------------------------------------------- the demo's report

QUERY_SETS = ("partner", "random", "anchor")
IMAGE_METHODS = ("inpainted", "oracle")
RETRIEVAL_MODELS = (("biased", 'biased ("pretrained")'), ("A", "A: D only"), ("B", "B: D ∪ D′"))


@dataclass
class Visuals:
    """Pictures for the report that do not belong in ``results.json`` (uint8 ``HxWx3`` arrays).

    ``triples``: dicts with ``original``, ``inpainted``, ``oracle`` images, ``caption``, ``edited``, ``removed``.
    ``retrieval_examples``: dicts with ``image`` (the inpainted query), ``removed``, ``present`` and ``rankings``
    (model -> list of ``{"text", "spans"}``; spans are the removed-class mentions to highlight).
    ``gradcam``: dicts with ``group``, ``image`` and ``maps`` (arm -> ``HxW`` heat map in ``[0, 1]``).
    """

    triples: list[dict[str, Any]] = field(default_factory=list)
    retrieval_examples: list[dict[str, Any]] = field(default_factory=list)
    gradcam: list[dict[str, Any]] = field(default_factory=list)


def _runs(results: Mapping[str, Any], model: str) -> list[Mapping[str, Any]]:
    return list(results.get("retrieval", {}).get("models", {}).get(model, []))


def _metric(runs: Sequence[Mapping[str, Any]], *path: str) -> list[float]:
    out = []
    for run in runs:
        node: Any = run
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is not None:
            out.append(float(node))
    return out


def _retrieval_section(results: Mapping[str, Any], report: Report, visuals: Visuals) -> list[Section]:
    ret = results.get("retrieval")
    if not ret:
        return []
    world = ret.get("world", {})
    expose = Section("Expose: retrieval (ODmAP@k on counterfactual queries)")
    expose.blocks.append(
        Paragraph(
            f"World: {world.get('train', '?')} / {world.get('val', '?')} / {world.get('test', '?')} train / val / test "
            f"images, gallery of {ret.get('gallery_size', '?')} captions (all splits). Queries are counterfactual "
            f"test images: {', '.join(f'{k} removed: {v}' for k, v in ret.get('queries', {}).items())}. Each query "
            "exists twice: *inpainted* (OpenCV Telea over the removed boxes) and *oracle* (the world redraws the "
            "scene without the removed objects). mention@1 = % of queries whose top-1 caption names a removed class."
        )
    )
    if world.get("cooccurrence"):
        expose.blocks.append(
            Table(
                ["pair (anchor → partner)", "P(partner | anchor), train"],
                [[k, f"{v:.2f}"] for k, v in world["cooccurrence"].items()],
                caption="Co-occurrence in the biased training data",
            )
        )
    rows = []
    biased = _runs(results, "biased")
    for qset in QUERY_SETS:
        for method in IMAGE_METHODS:
            key = f"{qset}/{method}"
            rows.append(
                [f"{qset} removed, {method}"]
                + [
                    fmt(_metric(biased, "sets", key, m))
                    for m in ("odmap@1", "odmap@5", "odmap@10", "mention@1")
                ]
            )
    rows.append(
        ["original test images (reference)"]
        + [
            fmt(_metric(biased, "sets", "original", m))
            for m in ("odmap@1", "odmap@5", "odmap@10", "mention@1")
        ]
    )
    expose.blocks.append(
        Table(["query set", "ODmAP@1", "ODmAP@5", "ODmAP@10", "mention@1"], rows, caption="Biased model")
    )
    if biased:
        name = report.add_image(
            "expose_mention",
            bar_chart(
                [q for q in QUERY_SETS],
                {
                    m: [_metric(biased, "sets", f"{q}/{m}", "mention@1") for q in QUERY_SETS]
                    for m in IMAGE_METHODS
                },
                title="Biased model: top-1 caption names the removed object",
                ylabel="mention@1 (%)",
            ),
        )
        expose.blocks.append(
            Figure(name, "Removed-object mention rate@1 by query set (higher = more spurious).")
        )

    mitigate = Section("Mitigate: retrieval (A = fine-tune on D, B = on D ∪ D′, same steps and seed)")
    mitigate.blocks.append(
        Paragraph(
            f"D′ holds {ret.get('d_prime', '?')} counterfactual training pairs (inpainted image, noun-phrase-removed "
            "caption). B is compared with A, never with the biased checkpoint: any fine-tuning improves the "
            "undertrained biased model."
        )
    )
    a_runs, b_runs = _runs(results, "A"), _runs(results, "B")
    rows = []
    for qset in QUERY_SETS:
        for method in IMAGE_METHODS:
            key = f"{qset}/{method}"
            for m in ("odmap@1", "odmap@5", "odmap@10", "mention@1"):
                if m != "odmap@1" and qset != "partner":
                    continue
                a, b = _metric(a_runs, "sets", key, m), _metric(b_runs, "sets", key, m)
                diff = [y - x for x, y in zip(a, b)]
                rows.append(
                    [
                        f"{qset} removed, {method}",
                        m,
                        fmt(_metric(biased, "sets", key, m)),
                        fmt(a),
                        fmt(b),
                        fmt(diff, signed=True),
                    ]
                )
    for m in ("i2t@1", "i2t@5", "i2t@10", "t2i@1", "t2i@5", "t2i@10"):
        a, b = _metric(a_runs, "recall", m), _metric(b_runs, "recall", m)
        rows.append(
            [
                "Recall (original test set)",
                m,
                fmt(_metric(biased, "recall", m)),
                fmt(a),
                fmt(b),
                fmt([y - x for x, y in zip(a, b)], signed=True),
            ]
        )
    seeds = len(a_runs)
    mitigate.blocks.append(
        Table(
            ["query set", "metric", "biased", "A: D only", "B: D ∪ D′", "B − A"],
            rows,
            caption=f"Retrieval, {seeds} fine-tuning seed{'s' if seeds != 1 else ''} (mean ± sample std)",
        )
    )
    if a_runs and b_runs:
        groups = [f"{q}\n{m}" for q in QUERY_SETS for m in IMAGE_METHODS]
        name = report.add_image(
            "mitigate_odmap",
            bar_chart(
                groups,
                {
                    label: [
                        _metric(_runs(results, key), "sets", f"{q}/{m}", "odmap@1")
                        for q in QUERY_SETS
                        for m in IMAGE_METHODS
                    ]
                    for key, label in RETRIEVAL_MODELS
                },
                title="ODmAP@1 on counterfactual queries",
                ylabel="ODmAP@1 (%)",
                ylim=(0, 100),
            ),
        )
        mitigate.blocks.append(
            Figure(name, "ODmAP@1 per query set: biased model, A and B (whiskers: std over seeds).")
        )

    sections = [expose, mitigate]
    examples = Section("Examples: counterfactual queries and what the models retrieve")
    if visuals.triples:
        name = report.add_image(
            "triples",
            image_grid(
                [[t["original"], t["inpainted"], t["oracle"]] for t in visuals.triples],
                column_titles=["original", "inpainted", "oracle"],
                row_labels=[f"− {', '.join(t['removed'])}" for t in visuals.triples],
            ),
        )
        examples.blocks.append(
            Figure(name, "Original test image, its inpainted counterfactual and the oracle redraw.")
        )
        examples.blocks.append(
            Table(
                ["#", "removed", "original caption", "edited caption (noun-phrase removal)"],
                [
                    [str(i + 1), ", ".join(t["removed"]), t["caption"], t["edited"]]
                    for i, t in enumerate(visuals.triples)
                ],
                caption="Captions of the triples above",
            )
        )
    if visuals.retrieval_examples:
        rows = []
        for i, ex in enumerate(visuals.retrieval_examples):
            img = report.add_image(f"query_{i}", png_bytes(ex["image"], scale=2))
            for model, ranking in ex["rankings"].items():
                cells = [highlight(r["text"], r.get("spans", ())) for r in ranking[:3]]
                cells += [""] * (3 - len(cells))
                rows.append([ImageRef(img, f"query {i}"), ", ".join(ex["removed"]), model, *cells])
        examples.blocks.append(
            Table(
                ["query", "removed", "model", "top-1", "top-2", "top-3"],
                rows,
                caption="Top-3 retrieved captions; mentions of the removed class are highlighted",
            )
        )
    if examples.blocks:
        sections.append(examples)
    return sections


CLASSIFICATION_ARMS = (
    ("zero-shot", "biased model, zero-shot"),
    ("clip-uniform", "L_CLIP, uniform sampling (ERM-like)"),
    ("clip-balanced", "L_CLIP, group-balanced"),
    ("group-dro", "Group DRO"),
    ("clip+vc+lc+vs", "L_CLIP + L_vc + L_lc + L_vs"),
    ("clip+vc+lc+ls", "L_CLIP + L_vc + L_lc + L_ls"),
)


def _classification_section(results: Mapping[str, Any], report: Report, visuals: Visuals) -> list[Section]:
    cls = results.get("classification")
    if not cls:
        return []
    arms = cls.get("arms", {})
    section = Section("Expose and mitigate: classification (Waterbirds layout)")
    world = cls.get("world", {})
    if world.get("group_counts"):
        splits = list(world["group_counts"])
        groups = sorted({g for s in splits for g in world["group_counts"][s]})
        section.blocks.append(
            Table(
                ["group (label / place)", *splits],
                [[g, *(str(world["group_counts"][s].get(g, 0)) for s in splits)] for g in groups],
                caption="Images per group",
            )
        )
    section.blocks.append(
        Paragraph(
            "Fine-tuning trains only the visual and text projections and the logit scale, on cached frozen "
            "features; each arm keeps the epoch with the best validation worst-group accuracy. Test numbers below."
        )
    )
    rows = []
    for key, label in CLASSIFICATION_ARMS:
        runs = arms.get(key, [])
        if not runs:
            continue
        rows.append(
            [
                label,
                fmt(_metric(runs, "average")),
                fmt(_metric(runs, "adjusted")),
                fmt(_metric(runs, "worst")),
                fmt(_metric(runs, "aiou"), 3),
                fmt(_metric(runs, "worst_group_aiou"), 3),
            ]
        )
    section.blocks.append(
        Table(
            ["arm", "average acc", "adjusted avg acc", "worst-group acc", "AIoU", "worst-group AIoU"],
            rows,
            caption="Test set (mean ± sample std over fine-tuning seeds; zero-shot: one model)",
        )
    )
    group_names = sorted({g for runs in arms.values() for run in runs for g in run.get("groups", {})})
    if group_names:
        rows = []
        for key, label in CLASSIFICATION_ARMS:
            runs = arms.get(key, [])
            if runs:
                rows.append(
                    [
                        label,
                        *(
                            f"{fmt(_metric(runs, 'groups', g))} / {fmt(_metric(runs, 'aiou_groups', g), 3)}"
                            for g in group_names
                        ),
                    ]
                )
        section.blocks.append(Table(["arm", *group_names], rows, caption="Per group: accuracy / AIoU"))
        section.blocks.append(
            Paragraph(
                "AIoU (Yang et al., Eqs. 8–9) compares the true class's GradCAM map with the best other class's "
                "map on the bird's mask; 0.5 means the true class's map covers the bird no better than the other "
                "class's. It is reported as a diagnostic, without a threshold: these arms train only the "
                "projections on frozen features, which changes how pooled features are read out but not where "
                "the frozen encoder looks, and the 8×8 token grid of a 64-px ViT gives coarse maps. The prototype "
                "of this demo also saw no AIoU gain from the spurious-aware losses, unlike the paper."
            )
        )
        present = [(key, label) for key, label in CLASSIFICATION_ARMS if arms.get(key)]
        name = report.add_image(
            "classification_worst",
            bar_chart(
                [k for k, _ in present],
                {
                    "average": [_metric(arms[k], "average") for k, _ in present],
                    "worst group": [_metric(arms[k], "worst") for k, _ in present],
                },
                title="Classification accuracy per arm",
                ylabel="accuracy (%)",
                ylim=(0, 105),
            ),
        )
        section.blocks.append(Figure(name, "Average and worst-group test accuracy per arm."))
    if visuals.gradcam:
        arm_keys = [k for k, _ in CLASSIFICATION_ARMS if any(k in g["maps"] for g in visuals.gradcam)]
        rows = [
            [
                g["image"],
                *(
                    overlay_heatmap(g["image"], g["maps"][k]) if k in g["maps"] else g["image"]
                    for k in arm_keys
                ),
            ]
            for g in visuals.gradcam
        ]
        name = report.add_image(
            "gradcam",
            image_grid(
                rows, column_titles=["image", *arm_keys], row_labels=[g["group"] for g in visuals.gradcam]
            ),
        )
        section.blocks.append(
            Figure(name, "GradCAM of the true class (input of the last vision block) per arm.")
        )
    return [section]


def build_report(results: Mapping[str, Any], visuals: Visuals | None = None) -> Report:
    """Assemble the demo's report from ``results`` (the ``results.json`` content) and its pictures."""
    visuals = visuals or Visuals()
    meta = results.get("meta", {})
    report = Report("hf_spurious demo: exposing and mitigating spurious correlations on SpuriousShapes")
    summary = Section("Summary")
    summary.blocks.append(
        Paragraph(
            "All models are tiny CLIPs trained from scratch on CPU: stand-ins for real checkpoints, so the numbers "
            "show the pipeline and the direction of the effects, not the papers' values. "
            f"Seeds: {meta.get('seeds', '?')} ({meta.get('what_varies', '')}). "
            f"Total time {meta.get('total_seconds', 0):.0f} s on {meta.get('threads', '?')} CPU thread(s); load "
            f"average (1/5/15 min) {meta.get('load_at_start', '?')} at the start and {meta.get('load_at_end', '?')} "
            "at the end (a shared machine makes every step slower)."
        )
    )
    if meta.get("quick"):
        summary.blocks.append(
            Paragraph(
                "**This is a --quick run**: tiny worlds, models and budgets that check the plumbing. Its numbers "
                "mean nothing; run without --quick for the real demo."
            )
        )
    checks = results.get("checks", [])
    if checks:
        summary.blocks.append(
            Table(
                ["claim", "measured", "needed", "result"],
                [[c["claim"], c["measured"], c["needed"], "PASS" if c["passed"] else "FAIL"] for c in checks],
                caption="What the demo must show",
            )
        )
    calibration = results.get("calibration", [])
    if calibration:
        summary.blocks.append(
            Table(
                ["calibration check", "value", "band", "ok"],
                [
                    [
                        c["check"],
                        fmt(c["value"]),
                        f"[{c['band'][0]}, {c['band'][1]}]",
                        "n/a" if c["ok"] is None else "PASS" if c["ok"] else "FAIL",
                    ]
                    for c in calibration
                ],
                caption="World calibration",
            )
        )
    report.sections.append(summary)
    report.sections += _retrieval_section(results, report, visuals)
    report.sections += _classification_section(results, report, visuals)
    timings = results.get("timings", [])
    if timings:
        report.sections.append(
            Section(
                "Timings",
                [
                    Table(
                        ["step", "seconds", "load average (1 / 5 / 15 min) at the end"],
                        [[t["step"], f"{t['seconds']:.1f}", t.get("load", "")] for t in timings],
                    )
                ],
            )
        )
    return report
