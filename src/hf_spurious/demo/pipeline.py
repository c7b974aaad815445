"""The demo pipeline: worlds -> biased tiny CLIPs -> expose -> mitigate -> report.

Everything runs offline on CPU from the built-in SpuriousShapes world. One pretraining seed (``seed``) fixes
the worlds, the counterfactual sets and the biased checkpoints; ``seeds`` fine-tuning seeds
(``seed, seed + 1, ...``) vary only the fine-tuning (batch order, augmentation, initial state of the
optimiser), which is what the mean ± std in the report is over.
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

WHAT_VARIES = (
    "fine-tuning seeds; the worlds, counterfactual sets and biased 'pretrained' checkpoints come from one "
    "pretraining seed and are shared by all fine-tuning seeds"
)


@dataclass
class DemoConfig:
    """Every size, budget and world knob of the demo (defaults: the measured full demo, about 11 min on 2 cores)."""

    seed: int = 0
    seeds: int = 1
    threads: int = 2
    # retrieval world (COCO layout)
    train_size: int = 3000
    val_size: int = 500
    test_size: int = 500
    image_size: int = 64
    p_partner: float = 0.9
    pair_naming: float = 0.75
    # tiny CLIP
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    patch_size: int = 8
    intermediate_size: int = 256  # MLP width 2 x hidden: 30 % less compute per step than 4 x (measured)
    projection_dim: int = 64
    # retrieval training
    batch_size: int = 128
    pretrain_steps: int = 400
    pretrain_lr: float = 5e-4
    finetune_steps: int = 150
    finetune_lr: float = 3e-4
    max_grad_norm: float = 1.0  # the Trainer default; measured: without clipping the biased model is weaker
    eval_batch_size: int = 512
    # classification world (Waterbirds layout)
    cls_train_size: int = 4795
    cls_val_size: int = 1200
    cls_test_size: int = 1200
    cls_pretrain_size: int = 9600
    cls_world: dict[str, Any] = field(default_factory=dict)  # extra ClassificationWorldConfig knobs
    cls_pretrain_steps: int = 450
    cls_pretrain_lr: float = 5e-4
    cls_max_grad_norm: float = 1.0  # the classification world is calibrated with clipping at 1.0
    cls_epochs: int = 20
    cls_lr: float = 1e-3
    cls_batch_size: int = 128
    gradcam_images: int = 1200  # test images scored for AIoU (all of them by default)
    # calibration bands (classification zero-shot worst-group, retrieval gallery answerability)
    zero_shot_worst_band: tuple[float, float] = (10.0, 50.0)
    # report
    examples: int = 4
    quick: bool = False

    @classmethod
    def quick_preset(cls, **overrides: Any) -> DemoConfig:
        """Tiny sizes and budgets for CI: every step runs, numbers mean nothing."""
        base = cls(
            train_size=120,
            val_size=30,
            test_size=60,
            hidden_size=32,
            num_layers=1,
            num_heads=2,
            projection_dim=16,
            intermediate_size=64,
            batch_size=32,
            pretrain_steps=6,
            finetune_steps=4,
            cls_train_size=160,
            cls_val_size=40,
            cls_test_size=40,
            cls_pretrain_size=160,
            cls_pretrain_steps=6,
            cls_epochs=2,
            cls_batch_size=32,
            gradcam_images=16,
            examples=2,
            quick=True,
        )
        return replace(base, **overrides)

    @property
    def finetune_seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]


def load_average() -> str:
    """The 1/5/15-minute load averages, as ``uptime`` prints them (the machine may be shared)."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - platform without getloadavg
        return "n/a"


class StepTimer:
    """Times named steps, prints one line per step, and keeps them for ``results.json``."""

    def __init__(self, echo: bool = True) -> None:
        self.records: list[dict[str, Any]] = []
        self.echo = echo
        self.start = time.perf_counter()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self.echo:
            print(f"[demo] {name} ...", flush=True)
        t0 = time.perf_counter()
        yield
        seconds = time.perf_counter() - t0
        self.records.append({"step": name, "seconds": round(seconds, 2), "load": load_average()})
        if self.echo:
            print(f"[demo] {name}: {seconds:.1f} s (load {load_average()})", flush=True)

    @property
    def total(self) -> float:
        return time.perf_counter() - self.start


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU) for a deterministic step."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _vals(runs: list[Mapping[str, Any]], *path: str) -> list[float]:
    out = []
    for run in runs:
        node: Any = run
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is not None:
            out.append(float(node))
    return out


def _check(claim: str, measured: str, needed: str, passed: bool) -> dict[str, Any]:
    return {"claim": claim, "measured": measured, "needed": needed, "passed": bool(passed)}


def evaluate_claims(
    results: Mapping[str, Any], *, budget_seconds: float | None = 720.0
) -> list[dict[str, Any]]:
    """Check the issue's "must show" claims on ``results``; every claim is reported, passed or not."""
    checks: list[dict[str, Any]] = []
    models = results.get("retrieval", {}).get("models", {})
    biased = models.get("biased", [])
    for method in ("inpainted", "oracle"):
        p = _mean(_vals(biased, "sets", f"partner/{method}", "mention@1"))
        r = _mean(_vals(biased, "sets", f"random/{method}", "mention@1"))
        a = _mean(_vals(biased, "sets", f"anchor/{method}", "mention@1"))
        if not np.isnan(p):
            checks.append(
                _check(
                    f"exposure: biased model names the removed object more often on partner-removed queries ({method})",
                    f"mention@1 partner {p:.1f} vs random {r:.1f} / anchor {a:.1f}",
                    "partner ≥ max(random, anchor) + 3",
                    p >= max(r, a) + 3.0,
                )
            )
    a_runs, b_runs = models.get("A", []), models.get("B", [])
    if a_runs and b_runs:
        for method in ("inpainted", "oracle"):
            key = f"partner/{method}"
            diff = [
                b - a
                for a, b in zip(_vals(a_runs, "sets", key, "odmap@1"), _vals(b_runs, "sets", key, "odmap@1"))
            ]
            checks.append(
                _check(
                    f"retrieval mitigation: B − A ODmAP@1 on partner-removed queries ({method})",
                    f"{_mean(diff):+.1f} (seeds: {', '.join(f'{d:+.1f}' for d in diff)})",
                    "mean ≥ +5.0",
                    _mean(diff) >= 5.0,
                )
            )
        for direction in ("i2t@1", "t2i@1"):
            diff = [
                b - a for a, b in zip(_vals(a_runs, "recall", direction), _vals(b_runs, "recall", direction))
            ]
            checks.append(
                _check(
                    f"retrieval mitigation keeps Recall ({direction}, B − A)",
                    f"{_mean(diff):+.1f}",
                    "|mean| ≤ 2.0",
                    abs(_mean(diff)) <= 2.0,
                )
            )
    arms = results.get("classification", {}).get("arms", {})
    zs = arms.get("zero-shot", [])
    if zs:
        avg, worst = _mean(_vals(zs, "average")), _mean(_vals(zs, "worst"))
        checks.append(
            _check(
                "exposure: zero-shot worst-group far below average accuracy",
                f"average {avg:.1f}, worst group {worst:.1f}",
                "average − worst ≥ 20",
                avg - worst >= 20.0,
            )
        )
    bal = _mean(_vals(arms.get("clip-balanced", []), "worst"))
    if zs and not np.isnan(bal):
        zw = _mean(_vals(zs, "worst"))
        checks.append(
            _check(
                "classification: group-balanced beats zero-shot worst-group",
                f"{bal:.1f} vs {zw:.1f} ({bal - zw:+.1f})",
                "≥ +25",
                bal - zw >= 25.0,
            )
        )
    uni = _mean(_vals(arms.get("clip-uniform", []), "worst"))
    if not np.isnan(bal) and not np.isnan(uni):
        checks.append(
            _check(
                "classification: group-balanced beats uniform sampling on worst-group",
                f"{bal:.1f} vs {uni:.1f} ({bal - uni:+.1f})",
                "≥ +20",
                bal - uni >= 20.0,
            )
        )
    for arm in ("clip+vc+lc+vs", "clip+vc+lc+ls"):
        val = _mean(_vals(arms.get(arm, []), "worst"))
        if not np.isnan(val) and not np.isnan(bal):
            checks.append(
                _check(
                    f"classification: {arm} non-inferior to L_CLIP group-balanced (worst-group)",
                    f"{val:.1f} vs {bal:.1f} ({val - bal:+.1f})",
                    "≥ −3",
                    val - bal >= -3.0,
                )
            )
    total = results.get("meta", {}).get("total_seconds")
    if budget_seconds is not None and total is not None and results.get("meta", {}).get("seeds", 1) == 1:
        checks.append(
            _check(
                "runtime of the one-seed demo",
                f"{total:.0f} s",
                f"≤ {budget_seconds:.0f} s",
                total <= budget_seconds,
            )
        )
    return checks


def run_demo(config: DemoConfig, out_dir: str | Path, *, echo: bool = True) -> dict[str, Any]:
    """Run the whole demo into ``out_dir``; return the results (also written as ``results.json``)."""
    import torch

    from . import classification, retrieval
    from .report import Visuals, build_report, write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, config.threads))
    timer = StepTimer(echo=echo)
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
    results["checks"] = evaluate_claims(results, budget_seconds=None if config.quick else 720.0)
    with timer.step("report"):
        report = build_report(results, visuals)
        write_report(out, results, report)
    results["timings"] = timer.records
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    if echo:
        for check in results["checks"]:
            mark = "PASS" if check["passed"] else "FAIL"
            print(f"[demo] {mark}  {check['claim']}: {check['measured']} (needed {check['needed']})")
        print(
            f"[demo] report: {out / 'report.html'} (and report.md, results.json); total {timer.total:.0f} s"
        )
    return results


def _json_default(obj: Any) -> Any:
    from .report import _json_default as default

    return default(obj)
