"""The demo report reads well (issue 15, item 5): a legend of the shapes, the captions table numbered like the
triples it belongs to, and a page that fits 1400 and 800 px windows in headless Chromium (skipped when no
Chromium is installed; the command is in docs/report-check.md)."""

from __future__ import annotations

import numpy as np
import pytest

from hf_spurious.demo.report import Figure, Report, Visuals, png_bytes, render_html
from hf_spurious.demo.report.charts import shapes_legend
from hf_spurious.demo.report.examples import examples_section
from hf_spurious.demo.report.layout_check import check_layout, chromium
from hf_spurious.world import SHAPES_CLASSES


def _image(side: int = 64, value: int = 90) -> np.ndarray:
    return np.full((side, side, 3), value, np.uint8)


def _visuals(triple_queries, example_queries) -> Visuals:
    ranking = [{"text": "A dog catching a frisbee.", "spans": [(15, 22)]}, {"text": "A dog.", "spans": []}]
    return Visuals(
        triples=[
            {"original": _image(), "inpainted": _image(), "oracle": _image(), "caption": "A dog and a frisbee.",
             "edited": "A dog.", "removed": ["frisbee"], "query": q}
            for q in triple_queries
        ],
        retrieval_examples=[
            {"image": _image(), "removed": ["frisbee"], "present": ["dog"], "rankings": {"biased": ranking, "B": ranking},
             "query": q}
            for q in example_queries
        ],
    )  # fmt: skip


def _tables(section):
    return [b for b in section.blocks if hasattr(b, "rows")]


def test_shapes_legend_draws_every_class_and_rejects_unknown_ones():
    png = shapes_legend(SHAPES_CLASSES)
    assert png.startswith(b"\x89PNG") and len(png) > 2000
    with pytest.raises(ValueError, match="no glyph for \\['unicorn'\\]"):
        shapes_legend(["dog", "unicorn"])


def test_captions_table_is_numbered_like_the_triples():
    report = Report("t")
    section = examples_section(report, _visuals([7, 3], [3, 7]))
    assert "shapes_legend" in report.images and section.blocks[0].name == "shapes_legend"
    captions = _tables(section)[-1]
    assert captions.caption.startswith("Top-3 retrieved captions for the queries above")
    assert [row[0] for row in captions.rows] == ["2", "2", "1", "1"]  # query 3 is the second triple
    other = examples_section(Report("t"), _visuals([7, 3], [3, 9]))
    table = _tables(other)[-1]
    assert "for the queries above" not in table.caption and [r[0] for r in table.rows][-1] == "–"


def _report_page(tmp_path, wide_px: int) -> str:
    report = Report("layout")
    section = examples_section(report, _visuals([1, 2], [1, 2]))
    report.add_image("wide", png_bytes(_image(side=10).repeat(wide_px // 10, axis=1)))
    section.blocks.append(Figure("wide", "a figure wider than the column"))
    report.sections.append(section)
    path = tmp_path / f"report_{wide_px}.html"
    path.write_text(render_html(report))
    return str(path)


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="no Chromium on PATH (Debian: apt-get install chromium)")
@pytest.mark.parametrize("width", [1400, 800])
def test_report_fits_the_window_in_chromium(tmp_path, width):
    result = check_layout(_report_page(tmp_path, 2400), width)
    assert result["ok"], result
    # the check itself fails on a page that scrolls sideways
    page = tmp_path / "broken.html"
    page.write_text(
        render_html(Report("x")).replace("</body>", '<div style="width:3000px">wide</div></body>')
    )
    broken = check_layout(page, width)
    assert not broken["ok"] and broken["scroll_width"] > width


def test_run_time_is_a_budget_line_and_vsepp_gets_its_own_table():
    from hf_spurious.demo.report.sections import budget_text, build_report

    assert budget_text(None) == ""
    line = budget_text({"total_seconds": 702.4, "budget_seconds": 720.0, "within": True, "load_at_start": "0.6",
                        "load_at_end": "1.9"})  # fmt: skip
    assert line.startswith("Run time 702 s; the one-seed demo's budget is 12 minutes: within the budget")
    assert "over the budget" in budget_text({"total_seconds": 800, "budget_seconds": 720, "within": False})
    run = {"sets": {f"{q}/{m}": {k: 10.0 for k in ("odmap@1", "odmap@5", "odmap@10", "mention@1")}
                    for q in ("partner", "random", "anchor") for m in ("inpainted", "oracle")},
           "recall": {k: 1.0 for k in ("i2t@1", "i2t@5", "i2t@10", "t2i@1", "t2i@5", "t2i@10")}}  # fmt: skip
    models = {"biased": [run], "A": [run], "B": [run]}
    results = {
        "meta": {"budget": {"total_seconds": 10, "budget_seconds": 720, "within": None}},
        "retrieval": {"models": models, "vsepp": {"models": models}},
        "checks": [{"claim": "c", "measured": "m", "needed": "n", "passed": True}],
        "timings": [{"step": "s", "seconds": 1.0}],
    }
    report = build_report(results)
    captions = [b.caption for s in report.sections for b in s.blocks if hasattr(b, "rows")]
    assert any(c.startswith("tiny VSE++") for c in captions) and any(
        c.startswith("tiny CLIP") for c in captions
    )
    timings = next(s for s in report.sections if s.title == "Timings")
    assert "no budget applies" in timings.blocks[0].text
    summary = [r[0] for s in report.sections for b in s.blocks if hasattr(b, "rows") for r in b.rows]
    assert not any("run time" in str(c).lower() or "runtime" in str(c).lower() for c in summary)
