"""The demo pipeline: worlds -> biased tiny models -> expose -> mitigate -> report.

Everything runs offline on CPU from the built-in SpuriousShapes world. One pretraining seed (``seed``) fixes
the worlds, the counterfactual sets and the biased checkpoints; ``seeds`` fine-tuning seeds
(``seed, seed + 1, ...``) vary only the fine-tuning (batch order, augmentation, initial state of the
optimiser), which is what the mean ± std in the report is over. The retrieval world is prepared here; the
jobs of :mod:`.jobs` (classification, tiny CLIP, tiny VSE++, optional tiny BLIP) run side by side in ``workers``
processes.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from hf_spurious.cache import atomic_write_text

from .claims import budget_line, evaluate_claims
from .config import DemoConfig, StepTimer, load_average
from .jobs import JobOutput, job_pool, run_job, threads_per_job, worker_config
from .report import Visuals, build_report, json_default, write_report
from .retrieval_data import prepare_retrieval

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


def run_demo(
    config: DemoConfig,
    out_dir: str | Path,
    *,
    echo: bool = True,
    worker_setup: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run the whole demo into ``out_dir``; return the results (also written as ``results.json``).

    ``worker_setup`` (a module-level function) runs first in every worker process, e.g. warning filters."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads_per_job(config))
    timer = StepTimer(echo=echo)
    if echo and config.quick:
        print(f"[demo] {QUICK_NOTICE}", flush=True)
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
            "workers": max(1, config.workers),
            "threads": torch.get_num_threads(),
            "load_at_start": load_average(),
        },
        "calibration": [],
    }
    outputs = _run_jobs(config, out, timer, results["calibration"], echo, worker_setup)
    visuals = _collect(results, outputs, timer)
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


def _collect(results: dict[str, Any], outputs: dict[str, JobOutput], timer: StepTimer) -> Visuals:
    """Put the jobs' parts, calibration checks and step times into ``results``; return their pictures."""
    results["retrieval"] = outputs["clip"].part
    if "vsepp" in outputs:
        results["retrieval"]["vsepp"] = outputs["vsepp"].part
    if "blip" in outputs:
        results["retrieval"]["blip"] = outputs["blip"].part
    results["classification"] = outputs["classification"].part
    results["calibration"] += outputs["classification"].calibration
    jobs = [outputs[name] for name in ("clip", "vsepp", "blip", "classification") if name in outputs]
    timer.records = [{**r, "job": "retrieval world"} for r in timer.records]
    timer.records += [record for job in jobs for record in job.timings]
    return Visuals(
        triples=outputs["clip"].visuals.triples,
        retrieval_examples=outputs["clip"].visuals.retrieval_examples,
        gradcam=outputs["classification"].visuals.gradcam,
    )


def _run_jobs(
    config: DemoConfig,
    out: Path,
    timer: StepTimer,
    calibration: list[dict[str, Any]],
    echo: bool,
    worker_setup: Callable[[], None] | None,
) -> dict[str, JobOutput]:
    """Classification starts at once; the retrieval jobs start when the retrieval world is prepared."""
    job_config = worker_config(config)
    with job_pool(config, worker_setup) as pool:
        futures = {"classification": pool.submit(run_job, "classification", job_config, out, echo)}
        data = prepare_retrieval(config, out, timer, calibration)
        futures["clip"] = pool.submit(run_job, "clip", job_config, out, echo, data)
        if config.vsepp:
            futures["vsepp"] = pool.submit(run_job, "vsepp", job_config, out, echo, data)
        if config.blip:
            futures["blip"] = pool.submit(run_job, "blip", job_config, out, echo, data)
        return {name: future.result() for name, future in futures.items()}


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
