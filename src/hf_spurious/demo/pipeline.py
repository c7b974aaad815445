"""The demo pipeline: worlds -> biased tiny CLIPs -> expose -> mitigate -> report.

Everything runs offline on CPU from the built-in SpuriousShapes world. One pretraining seed (``seed``) fixes
the worlds, the counterfactual sets and the biased checkpoints; ``seeds`` fine-tuning seeds
(``seed, seed + 1, ...``) vary only the fine-tuning (batch order, augmentation, initial state of the
optimiser), which is what the mean ± std in the report is over.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from hf_spurious.cache import atomic_write_text

from . import classification, retrieval
from .claims import budget_line, evaluate_claims
from .config import DemoConfig, StepTimer, load_average
from .report import Visuals, build_report, json_default, write_report

QUICK_NOTICE = (
    "--quick: tiny worlds, models and step counts so that every step runs in about a minute (CI); "
    "its numbers are MEANINGLESS - run without --quick for the demo's results"
)
BUDGET_SECONDS = 720.0
"""The one-seed run-time budget of ``make demo`` (12 min on a 2-core machine): reported, not a claim."""

WHAT_VARIES = (
    "fine-tuning seeds; the worlds, counterfactual sets and biased 'pretrained' checkpoints come from one "
    "pretraining seed and are shared by all fine-tuning seeds"
)


def run_demo(config: DemoConfig, out_dir: str | Path, *, echo: bool = True) -> dict[str, Any]:
    """Run the whole demo into ``out_dir``; return the results (also written as ``results.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, config.threads))
    timer = StepTimer(echo=echo)
    if echo and config.quick:
        print(f"[demo] {QUICK_NOTICE}", flush=True)
    visuals = Visuals()
    results: dict[str, Any] = {
        "schema_version": 1,
        "meta": {
            "seed": config.seed,
            "seeds": config.seeds,
            "finetune_seeds": config.finetune_seeds,
            "what_varies": WHAT_VARIES,
            "quick": config.quick,
            "config": asdict(config),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_at_start": load_average(),
        },
        "calibration": [],
    }
    results["retrieval"] = retrieval.run_retrieval(config, out, timer, results["calibration"], visuals)
    results["classification"] = classification.run_classification(
        config, out, timer, results["calibration"], visuals
    )
    results["timings"] = timer.records
    results["meta"]["total_seconds"] = round(timer.total, 1)
    results["meta"]["load_at_end"] = load_average()
    results["checks"] = evaluate_claims(results)
    results["meta"]["budget"] = budget_line(results, BUDGET_SECONDS)
    with timer.step("report"):
        report = build_report(results, visuals)
        write_report(out, results, report)
    results["timings"] = timer.records
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=json_default) + "\n")
    if echo:
        for check in results["checks"]:
            mark = "PASS" if check["passed"] else "FAIL"
            print(f"[demo] {mark}  {check['claim']}: {check['measured']} (needed {check['needed']})")
        _echo_budget(results["meta"]["budget"], config)
        print(f"[demo] report: {out / 'report.html'} (and report.md, results.json)")
        if config.quick:
            print(f"[demo] {QUICK_NOTICE}")
    return results


def _echo_budget(budget: dict[str, Any], config: DemoConfig) -> None:
    """The run time as a budget line (one full seed: 12 min on 2 cores), with the machine's load."""
    total, limit = budget["total_seconds"], budget["budget_seconds"]
    what = "this --quick run" if config.quick else f"{config.seeds} fine-tuning seed(s)"
    verdict = {
        True: f"within the {limit:.0f}-s budget of one seed",
        False: f"OVER the {limit:.0f}-s budget of one seed",
        None: f"the {limit:.0f}-s budget is for one full seed",
    }[budget["within"]]
    print(
        f"[demo] budget: run time {total:.0f} s for {what}, {verdict} (load average at start "
        f"{budget['load_at_start']}, at end {budget['load_at_end']}; a busy machine stretches every step)"
    )
