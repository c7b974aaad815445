"""The demo's report sections: retrieval (expose, mitigate, examples) and classification, from ``results``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hf_spurious.evaluation.plots import bar_chart

from ..claims import metric_values
from .charts import gradcam_grid
from .document import Block, Cell, Figure, Paragraph, Report, Section, Table, fmt
from .examples import Visuals, examples_section

QUERY_SETS = ("partner", "random", "anchor")
IMAGE_METHODS = ("inpainted", "oracle")
RETRIEVAL_MODELS = (("biased", 'biased ("pretrained")'), ("A", "A: D only"), ("B", "B: D ∪ D′"))
ODMAP_COLUMNS = ("odmap@1", "odmap@5", "odmap@10", "mention@1")
RECALL_KEYS = ("i2t@1", "i2t@5", "i2t@10", "t2i@1", "t2i@5", "t2i@10")
CLASSIFICATION_ARMS = (
    ("zero-shot", "biased model, zero-shot"),
    ("clip-uniform", "L_CLIP, uniform sampling (ERM-like)"),
    ("clip-balanced", "L_CLIP, group-balanced"),
    ("group-dro", "Group DRO"),
    ("clip+vc+lc+vs", "L_CLIP + L_vc + L_lc + L_vs"),
    ("clip+vc+lc+ls", "L_CLIP + L_vc + L_lc + L_ls"),
)
Runs = list[Mapping[str, Any]]


def _runs(results: Mapping[str, Any], model: str) -> Runs:
    return list(results.get("retrieval", {}).get("models", {}).get(model, []))


# ------------------------------------------------------------------------------------------ retrieval


def _expose_section(results: Mapping[str, Any], report: Report) -> Section:
    ret = results["retrieval"]
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
    biased = _runs(results, "biased")
    rows: list[list[Cell]] = [
        [f"{qset} removed, {method}"]
        + [fmt(metric_values(biased, "sets", f"{qset}/{method}", m)) for m in ODMAP_COLUMNS]
        for qset in QUERY_SETS
        for method in IMAGE_METHODS
    ]
    rows.append(
        ["original test images (reference)"]
        + [fmt(metric_values(biased, "sets", "original", m)) for m in ODMAP_COLUMNS]
    )
    expose.blocks.append(
        Table(["query set", "ODmAP@1", "ODmAP@5", "ODmAP@10", "mention@1"], rows, caption="Biased model")
    )
    if biased:
        name = report.add_image(
            "expose_mention",
            bar_chart(
                list(QUERY_SETS),
                {
                    m: [metric_values(biased, "sets", f"{q}/{m}", "mention@1") for q in QUERY_SETS]
                    for m in IMAGE_METHODS
                },
                title="Biased model: top-1 caption names the removed object",
                ylabel="mention@1 (%)",
            ),
        )
        expose.blocks.append(
            Figure(name, "Removed-object mention rate@1 by query set (higher = more spurious).")
        )
    return expose


def _comparison_row(
    label: str, metric: str, biased: Runs, a_runs: Runs, b_runs: Runs, *path: str
) -> list[Cell]:
    a, b = metric_values(a_runs, *path), metric_values(b_runs, *path)
    return [
        label,
        metric,
        fmt(metric_values(biased, *path)),
        fmt(a),
        fmt(b),
        fmt([y - x for x, y in zip(a, b)], signed=True),
    ]


def _comparison_table(family: str, models: Mapping[str, Runs]) -> Table:
    """Biased, A, B and B − A per query set and metric, for one model family's runs."""
    biased, a_runs, b_runs = (list(models.get(k, [])) for k in ("biased", "A", "B"))
    rows = [
        _comparison_row(f"{qset} removed, {method}", m, biased, a_runs, b_runs, "sets", f"{qset}/{method}", m)
        for qset in QUERY_SETS
        for method in IMAGE_METHODS
        for m in ODMAP_COLUMNS
        if m == "odmap@1" or qset == "partner"
    ]
    rows += [
        _comparison_row("Recall (original test set)", m, biased, a_runs, b_runs, "recall", m)
        for m in RECALL_KEYS
    ]
    seeds = len(a_runs)
    caption = f"Retrieval, {seeds} fine-tuning seed{'s' if seeds != 1 else ''} (mean ± sample std)"
    return Table(
        ["query set", "metric", "biased", "A: D only", "B: D ∪ D′", "B − A"],
        rows,
        caption=f"{family}: {caption}" if family else caption,
    )


def _mitigate_section(results: Mapping[str, Any], report: Report) -> Section:
    ret = results["retrieval"]
    mitigate = Section("Mitigate: retrieval (A = fine-tune on D, B = on D ∪ D′, same steps and seed)")
    mitigate.blocks.append(
        Paragraph(
            f"D′ holds {ret.get('d_prime', '?')} counterfactual training pairs (inpainted image, noun-phrase-removed "
            "caption). B is compared with A, never with the biased checkpoint: any fine-tuning improves the "
            "undertrained biased model."
        )
    )
    families = [("tiny CLIP (ViT, contrastive loss)", ret.get("models", {}))]
    if ret.get("vsepp", {}).get("models"):
        families.append(("tiny VSE++ (CNN + Bi-GRU, triplet loss)", ret["vsepp"]["models"]))
    if ret.get("blip", {}).get("models"):
        families.append(("tiny BLIP (ViT + BERT, ITC + ITM)", ret["blip"]["models"]))
    for name, models in families:
        mitigate.blocks.append(_comparison_table(name if len(families) > 1 else "", models))
    a_runs, b_runs = _runs(results, "A"), _runs(results, "B")
    if a_runs and b_runs:
        series = {
            label: [
                metric_values(_runs(results, key), "sets", f"{q}/{m}", "odmap@1")
                for q in QUERY_SETS
                for m in IMAGE_METHODS
            ]
            for key, label in RETRIEVAL_MODELS
        }
        groups = [f"{q}\n{m}" for q in QUERY_SETS for m in IMAGE_METHODS]
        chart = bar_chart(
            groups, series, title="ODmAP@1 on counterfactual queries", ylabel="ODmAP@1 (%)", ylim=(0, 100)
        )
        name = report.add_image("mitigate_odmap", chart)
        mitigate.blocks.append(
            Figure(name, "ODmAP@1 per query set: biased model, A and B (whiskers: std over seeds).")
        )
    return mitigate


def retrieval_sections(results: Mapping[str, Any], report: Report, visuals: Visuals) -> list[Section]:
    """Expose, mitigate and (when there are pictures) examples; nothing without retrieval results."""
    if not results.get("retrieval"):
        return []
    sections = [_expose_section(results, report), _mitigate_section(results, report)]
    examples = examples_section(report, visuals)
    if examples.blocks:
        sections.append(examples)
    return sections


# ------------------------------------------------------------------------------------------ classification


def _arm_tables(arms: Mapping[str, Runs]) -> list[Table]:
    """The per-arm summary table and (when runs have groups) the per-group accuracy / AIoU table."""
    rows: list[list[Cell]] = [
        [
            label,
            fmt(metric_values(arms[key], "average")),
            fmt(metric_values(arms[key], "adjusted")),
            fmt(metric_values(arms[key], "worst")),
            fmt(metric_values(arms[key], "aiou"), 3),
            fmt(metric_values(arms[key], "worst_group_aiou"), 3),
        ]
        for key, label in CLASSIFICATION_ARMS
        if arms.get(key, [])
    ]
    tables = [
        Table(
            ["arm", "average acc", "adjusted avg acc", "worst-group acc", "AIoU", "worst-group AIoU"],
            rows,
            caption="Test set (mean ± sample std over fine-tuning seeds; zero-shot: one model)",
        )
    ]
    group_names = sorted({g for runs in arms.values() for run in runs for g in run.get("groups", {})})
    if group_names:
        rows = [
            [
                label,
                *(
                    f"{fmt(metric_values(arms[key], 'groups', g))} / {fmt(metric_values(arms[key], 'aiou_groups', g), 3)}"
                    for g in group_names
                ),
            ]
            for key, label in CLASSIFICATION_ARMS
            if arms.get(key, [])
        ]
        tables.append(Table(["arm", *group_names], rows, caption="Per group: accuracy / AIoU"))
    return tables


AIOU_NOTE = (
    "AIoU (Yang et al., Eqs. 8–9) compares the true class's GradCAM map with the best other class's "
    "map on the bird's mask; 0.5 means the true class's map covers the bird no better than the other "
    "class's. It is reported as a diagnostic, without a threshold: these arms train only the "
    "projections on frozen features, which changes how pooled features are read out but not where "
    "the frozen encoder looks, and the 8×8 token grid of a 64-px ViT gives coarse maps. The prototype "
    "of this demo also saw no AIoU gain from the spurious-aware losses, unlike the paper."
)


def _accuracy_figure(arms: Mapping[str, Runs], report: Report) -> Figure:
    present = [key for key, _ in CLASSIFICATION_ARMS if arms.get(key)]
    chart = bar_chart(
        present,
        {
            "average": [metric_values(arms[k], "average") for k in present],
            "worst group": [metric_values(arms[k], "worst") for k in present],
        },
        title="Classification accuracy per arm",
        ylabel="accuracy (%)",
        ylim=(0, 105),
    )
    return Figure(
        report.add_image("classification_worst", chart), "Average and worst-group test accuracy per arm."
    )


def classification_sections(results: Mapping[str, Any], report: Report, visuals: Visuals) -> list[Section]:
    """Group counts, per-arm accuracies and AIoU, the accuracy chart and the GradCAM grid."""
    cls = results.get("classification")
    if not cls:
        return []
    arms = cls.get("arms", {})
    section = Section("Expose and mitigate: classification (Waterbirds layout)")
    counts = cls.get("world", {}).get("group_counts")
    if counts:
        splits = list(counts)
        groups = sorted({g for s in splits for g in counts[s]})
        section.blocks.append(
            Table(
                ["group (label / place)", *splits],
                [[g, *(str(counts[s].get(g, 0)) for s in splits)] for g in groups],
                caption="Images per group",
            )
        )
    section.blocks.append(
        Paragraph(
            "Fine-tuning trains only the visual and text projections and the logit scale, on cached frozen "
            "features; each arm keeps the epoch with the best validation worst-group accuracy. Test numbers below."
        )
    )
    tables = _arm_tables(arms)
    section.blocks += tables
    if len(tables) > 1:  # there are per-group results
        section.blocks += [Paragraph(AIOU_NOTE), _accuracy_figure(arms, report)]
    if visuals.gradcam:
        arm_keys = [k for k, _ in CLASSIFICATION_ARMS if any(k in g["maps"] for g in visuals.gradcam)]
        name = report.add_image("gradcam", gradcam_grid(visuals.gradcam, arm_keys))
        section.blocks.append(
            Figure(name, "GradCAM of the true class (input of the last vision block) per arm.")
        )
    return [section]


# ------------------------------------------------------------------------------------------ the report


def summary_section(results: Mapping[str, Any]) -> Section:
    """What ran (models, seeds, time, machine load), the claims checked and the world calibration."""
    meta = results.get("meta", {})
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
        rows: list[list[Cell]] = [
            [
                c["check"],
                fmt(c["value"]),
                f"[{c['band'][0]}, {c['band'][1]}]",
                "n/a" if c["ok"] is None else "PASS" if c["ok"] else "FAIL",
            ]
            for c in calibration
        ]
        summary.blocks.append(
            Table(["calibration check", "value", "band", "ok"], rows, caption="World calibration")
        )
    return summary


def build_report(results: Mapping[str, Any], visuals: Visuals | None = None) -> Report:
    """Assemble the demo's report from ``results`` (the ``results.json`` content) and its pictures."""
    visuals = visuals or Visuals()
    report = Report("hf_spurious demo: exposing and mitigating spurious correlations on SpuriousShapes")
    report.sections.append(summary_section(results))
    report.sections += retrieval_sections(results, report, visuals)
    report.sections += classification_sections(results, report, visuals)
    if timings := results.get("timings", []):
        report.sections.append(timings_section(timings, results.get("meta", {})))
    return report


def timings_section(timings: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> Section:
    """Step times per job, the budget line, and how the jobs shared the machine."""
    rows: list[list[Cell]] = [
        [t.get("job", ""), t["step"], f"{t['seconds']:.1f}", t.get("load", "")] for t in timings
    ]
    header = ["job", "step", "seconds", "load average (1 / 5 / 15 min) at the end"]
    blocks: list[Block] = [Table(header, rows)]
    if (workers := meta.get("workers", 1)) > 1:
        blocks.insert(
            0,
            Paragraph(
                f"The jobs ran side by side in {workers} worker processes with {meta.get('threads')} torch "
                "thread(s) each, so their steps overlap: the run time is less than the sum of the steps."
            ),
        )
    if budget := budget_text(meta.get("budget")):
        blocks.insert(0, Paragraph(budget))
    return Section("Timings", blocks)


def budget_text(budget: Mapping[str, Any] | None) -> str:
    """The run time against the one-seed budget, as a plain line (a budget, not a scientific claim)."""
    if not budget:
        return ""
    verdict = {True: "within the budget", False: "over the budget", None: "no budget applies to this run"}
    return (
        f"Run time {budget.get('total_seconds', 0):.0f} s; the one-seed demo's budget is "
        f"{budget.get('budget_seconds', 0) / 60:.0f} minutes: {verdict.get(budget.get('within'), '?')} "
        f"(load average {budget.get('load_at_start', '?')} at the start, {budget.get('load_at_end', '?')} at the end)."
    )
