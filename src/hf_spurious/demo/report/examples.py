"""The report's examples section: what the shapes mean, counterfactual triples and retrieved captions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hf_spurious.world import SHAPES_CLASSES

from .charts import image_grid, png_bytes, shapes_legend
from .document import Cell, Figure, ImageRef, Report, Section, Table, highlight


@dataclass
class Visuals:
    """Pictures for the report that do not belong in ``results.json`` (uint8 ``HxWx3`` arrays).

    ``triples``: dicts with ``original``, ``inpainted``, ``oracle`` images, ``caption``, ``edited``, ``removed``.
    ``retrieval_examples``: dicts with ``image`` (the inpainted query), ``removed``, ``present`` and ``rankings``
    (model -> list of ``{"text", "spans"}``; spans are the removed-class mentions to highlight).
    ``gradcam``: dicts with ``group``, ``image`` and ``maps`` (arm -> ``HxW`` heat map in ``[0, 1]``).
    A triple and a retrieval example with the same ``query`` (row of the query set) share a ``#`` in the report.
    """

    triples: list[dict[str, Any]] = field(default_factory=list)
    retrieval_examples: list[dict[str, Any]] = field(default_factory=list)
    gradcam: list[dict[str, Any]] = field(default_factory=list)


def examples_section(report: Report, visuals: Visuals) -> Section:
    """The shapes legend, the triples (original / inpainted / oracle) with their captions, and the top-3
    captions each model retrieves for the example queries."""
    examples = Section("Examples: counterfactual queries and what the models retrieve")
    if visuals.triples or visuals.retrieval_examples:
        legend = report.add_image("shapes_legend", shapes_legend(SHAPES_CLASSES))
        examples.blocks.append(
            Figure(legend, "How each class is drawn in SpuriousShapes (shape, colour, texture).")
        )
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
        examples.blocks.append(_retrieved_table(report, visuals))
    return examples


def _retrieved_table(report: Report, visuals: Visuals) -> Table:
    """Top-3 captions per model for each example query; ``#`` is the query's row in the triples above
    (matched by the ``query`` index both carry), so the two tables read together."""
    number = {t["query"]: str(i + 1) for i, t in enumerate(visuals.triples) if t.get("query") is not None}
    rows: list[list[Cell]] = []
    for i, ex in enumerate(visuals.retrieval_examples):
        img = report.add_image(f"query_{i}", png_bytes(ex["image"], scale=2))
        label = number.get(ex.get("query"), "–")
        for model, ranking in ex["rankings"].items():
            cells: list[Cell] = [highlight(r["text"], r.get("spans", ())) for r in ranking[:3]]
            cells += [""] * (3 - len(cells))
            rows.append([label, ImageRef(img, f"query {label}"), ", ".join(ex["removed"]), model, *cells])
    same = bool(number) and all(ex.get("query") in number for ex in visuals.retrieval_examples)
    caption = "Top-3 retrieved captions" + (" for the queries above" if same else "")
    return Table(
        ["#", "query", "removed", "model", "top-1", "top-2", "top-3"],
        rows,
        caption=caption + "; mentions of the removed class are highlighted",
    )
