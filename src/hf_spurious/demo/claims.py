"""The issue's "must show" claims, checked on the demo's results (every claim reported, passed or not)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Check = dict[str, Any]


def metric_values(runs: Sequence[Mapping[str, Any]], *path: str) -> list[float]:
    """``run[path[0]][path[1]]...`` as a float for every run that has it (runs without it are skipped)."""
    out = []
    for run in runs:
        node: Any = run
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is not None:
            out.append(float(node))
    return out


def _mean(values: list[float]) -> float:
    """The mean as the report shows it (one decimal): every claim is judged on the number it prints, so a
    shown "+2.0" never fails "≥ +2.0"."""
    return round(float(np.mean(values)), 1) if values else float("nan")


def _check(claim: str, measured: str, needed: str, passed: bool) -> Check:
    return {"claim": claim, "measured": measured, "needed": needed, "passed": bool(passed)}


def _retrieval_exposure(biased: Sequence[Mapping[str, Any]]) -> list[Check]:
    checks = []
    for method in ("inpainted", "oracle"):
        p = _mean(metric_values(biased, "sets", f"partner/{method}", "mention@1"))
        r = _mean(metric_values(biased, "sets", f"random/{method}", "mention@1"))
        a = _mean(metric_values(biased, "sets", f"anchor/{method}", "mention@1"))
        if not np.isnan(p):
            checks.append(
                _check(
                    f"exposure: biased model names the removed object more often on partner-removed queries ({method})",
                    f"mention@1 partner {p:.1f} vs random {r:.1f} / anchor {a:.1f}",
                    "partner ≥ max(random, anchor) + 3",
                    round(p - max(r, a), 1) >= 3.0,
                )
            )
    return checks


def _retrieval_mitigation(
    a_runs: Sequence[Mapping[str, Any]],
    b_runs: Sequence[Mapping[str, Any]],
    family: str = "",
    min_gain: float = 5.0,
) -> list[Check]:
    checks = []
    prefix = f"{family} " if family else ""
    for method in ("inpainted", "oracle"):
        key = f"partner/{method}"
        diff = [
            b - a
            for a, b in zip(
                metric_values(a_runs, "sets", key, "odmap@1"), metric_values(b_runs, "sets", key, "odmap@1")
            )
        ]
        gain = _mean(diff)
        checks.append(
            _check(
                f"{prefix}retrieval mitigation: B − A ODmAP@1 on partner-removed queries ({method})",
                f"{gain:+.1f} (seeds: {', '.join(f'{d:+.1f}' for d in diff)})",
                f"mean ≥ {min_gain:+.1f}" if min_gain else "mean > 0",
                gain >= min_gain if min_gain else gain > 0,
            )
        )
    for direction in ("i2t@1", "t2i@1"):
        diff = [
            b - a
            for a, b in zip(
                metric_values(a_runs, "recall", direction), metric_values(b_runs, "recall", direction)
            )
        ]
        change = _mean(diff)
        checks.append(
            _check(
                f"{prefix}retrieval mitigation keeps Recall ({direction}, B − A)",
                f"{change:+.1f}",
                "|mean| ≤ 2.0",
                abs(change) <= 2.0,
            )
        )
    return checks


def _classification(arms: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Check]:
    checks = []
    zs = arms.get("zero-shot", [])
    if zs:
        avg, worst = _mean(metric_values(zs, "average")), _mean(metric_values(zs, "worst"))
        checks.append(
            _check(
                "exposure: zero-shot worst-group far below average accuracy",
                f"average {avg:.1f}, worst group {worst:.1f}",
                "average − worst ≥ 20",
                round(avg - worst, 1) >= 20.0,
            )
        )
    bal = _mean(metric_values(arms.get("clip-balanced", []), "worst"))
    if zs and not np.isnan(bal):
        zw = _mean(metric_values(zs, "worst"))
        checks.append(
            _check(
                "classification: group-balanced beats zero-shot worst-group",
                f"{bal:.1f} vs {zw:.1f} ({bal - zw:+.1f})",
                "≥ +25",
                round(bal - zw, 1) >= 25.0,
            )
        )
    uni = _mean(metric_values(arms.get("clip-uniform", []), "worst"))
    if not np.isnan(bal) and not np.isnan(uni):
        checks.append(
            _check(
                "classification: group-balanced beats uniform sampling on worst-group",
                f"{bal:.1f} vs {uni:.1f} ({bal - uni:+.1f})",
                "≥ +20",
                round(bal - uni, 1) >= 20.0,
            )
        )
    for arm in ("clip+vc+lc+vs", "clip+vc+lc+ls"):
        val = _mean(metric_values(arms.get(arm, []), "worst"))
        if not np.isnan(val) and not np.isnan(bal):
            checks.append(
                _check(
                    f"classification: {arm} non-inferior to L_CLIP group-balanced (worst-group)",
                    f"{val:.1f} vs {bal:.1f} ({val - bal:+.1f})",
                    "≥ −3",
                    round(val - bal, 1) >= -3.0,
                )
            )
    return checks


def evaluate_claims(results: Mapping[str, Any]) -> list[Check]:
    """Check the issue's "must show" claims on ``results``; every claim is reported, passed or not.

    CLIP's retrieval gain must reach +5 ODmAP@1 (the demo's calibration); VSE++'s and BLIP's (``--blip``)
    +2, above the spread of A between fine-tuning seeds (Kim et al. measured +3.8 on COCO for VSE++ against
    +10.3 for CLIP): a mean that is merely positive can be seed noise. The run time is no claim: see
    :func:`budget_line`.
    """
    retrieval = results.get("retrieval", {})
    models = retrieval.get("models", {})
    checks = _retrieval_exposure(models.get("biased", []))
    a_runs, b_runs = models.get("A", []), models.get("B", [])
    if a_runs and b_runs:
        checks += _retrieval_mitigation(a_runs, b_runs)
    vsepp = retrieval.get("vsepp", {}).get("models", {})
    if vsepp.get("A") and vsepp.get("B"):
        checks += _retrieval_mitigation(vsepp["A"], vsepp["B"], family="VSE++", min_gain=2.0)
    blip = retrieval.get("blip", {}).get("models", {})
    if blip.get("A") and blip.get("B"):
        checks += _retrieval_mitigation(blip["A"], blip["B"], family="BLIP", min_gain=2.0)
    checks += _classification(results.get("classification", {}).get("arms", {}))
    return checks


def budget_line(results: Mapping[str, Any], budget_seconds: float = 720.0) -> dict[str, Any]:
    """The run time against the one-seed budget (a machine-dependent budget line, not a scientific claim).

    ``within`` is None for a multi-seed or ``--quick`` run (the budget is for one full seed); the load
    averages say how busy the machine was (a shared machine stretches every step).
    """
    meta = results.get("meta", {})
    total = meta.get("total_seconds")
    one_seed = meta.get("seeds", 1) == 1 and not meta.get("quick", False)
    return {
        "total_seconds": total,
        "budget_seconds": budget_seconds,
        "within": (total <= budget_seconds) if (one_seed and total is not None) else None,
        "load_at_start": meta.get("load_at_start"),
        "load_at_end": meta.get("load_at_end"),
    }
