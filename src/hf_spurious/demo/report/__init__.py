"""The demo's report: ``results.json``, ``report.md`` (PNG files beside it) and a self-contained ``report.html``.

:mod:`.document` is the document model and its two renderings, :mod:`.charts` the pictures, and
:mod:`.sections` the demo's sections assembled from ``results`` by :func:`build_report`.
"""

from __future__ import annotations

from .charts import gradcam_grid, image_grid, png_bytes
from .document import (
    Figure,
    ImageRef,
    Paragraph,
    Report,
    Rich,
    Section,
    Table,
    fmt,
    highlight,
    json_default,
    render_html,
    render_markdown,
    write_report,
)
from .sections import Visuals, build_report

__all__ = [
    "Figure",
    "ImageRef",
    "Paragraph",
    "Report",
    "Rich",
    "Section",
    "Table",
    "Visuals",
    "build_report",
    "fmt",
    "gradcam_grid",
    "highlight",
    "image_grid",
    "json_default",
    "png_bytes",
    "render_html",
    "render_markdown",
    "write_report",
]
