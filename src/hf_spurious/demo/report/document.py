"""The report as a small document model (sections of paragraphs, tables and figures), rendered twice:
to Markdown, whose images are files in ``figures/``, and to self-contained HTML, whose images are embedded
as base64 so the file can be mailed or opened anywhere.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hf_spurious.cache import atomic_write_text
from hf_spurious.evaluation.plots import mean_std

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


# ----------------------------------------------------------------------------------------------- text


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
mark{background:#ffd54f;font-weight:600}img.thumb{width:128px;max-width:none;image-rendering:pixelated}
img{max-width:100%;height:auto}table{max-width:100%}td,th{overflow-wrap:break-word}
figure{margin:1em 0}figcaption{font-size:.85em;color:#555}.pass{color:#1b5e20}.fail{color:#b71c1c}
@media (max-width:900px){body{margin:1em auto}table{font-size:.8em}img.thumb{width:96px}}
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


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for ``results.json``: numpy scalars and arrays, sets, paths."""
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
    atomic_write_text(
        paths["results"], json.dumps(results, indent=2, sort_keys=False, default=json_default) + "\n"
    )
    for name, png in report.images.items():
        (figures / f"{name}.png").write_bytes(png)
    paths["markdown"].write_text(render_markdown(report))
    paths["html"].write_text(render_html(report))
    return paths
