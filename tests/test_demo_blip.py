"""The demo's tiny BLIP arm (``--blip``): its run at quick sizes, its claims, its flag."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hf_spurious.demo.claims import evaluate_claims
from hf_spurious.demo.config import DemoConfig, StepTimer


@pytest.fixture(scope="module")
def blip_run(tmp_path_factory) -> tuple[DemoConfig, Path, Any, dict[str, Any]]:
    """A quick retrieval world and one run of the BLIP arm on it (two fine-tuning seeds)."""
    from hf_spurious.demo.blip import run_blip
    from hf_spurious.demo.retrieval_data import prepare_retrieval

    config = DemoConfig.quick_preset(blip=True, seeds=2, workers=1, threads=1, progress_bars=False)
    out = tmp_path_factory.mktemp("blip")
    timer = StepTimer(echo=False)
    data = prepare_retrieval(config, out, timer, [])
    torch.set_num_threads(1)
    return config, out, data, run_blip(config, out, timer, data)


def _percentages(run: dict[str, Any]) -> list[float]:
    """Every ODmAP / mention / Recall@K number of a run (not ``rsum``, a sum of six percentages)."""
    recall = [v for k, v in run["recall"].items() if k != "rsum"]
    return [v for s in run["sets"].values() for v in s.values()] + recall


@pytest.mark.slow  # prepares a quick retrieval world and trains three tiny BLIPs (~15 s)
def test_run_blip_shape_and_ranges(blip_run):
    config, _out, _data, part = blip_run
    assert set(part) == {"model", "models"}
    models = part["models"]
    assert set(models) == {"biased", "A", "B"}
    assert len(models["biased"]) == 1 and len(models["A"]) == len(models["B"]) == 2
    sets = {f"{q}/{m}" for q in ("partner", "random", "anchor") for m in ("inpainted", "oracle")}
    for run in [r for runs in models.values() for r in runs]:
        assert "_rankings" not in run
        assert sets | {"original"} == set(run["sets"])
        assert {"odmap@1", "odmap@5", "odmap@10", "mention@1"} <= set(run["sets"]["partner/inpainted"])
        assert {"i2t@1", "t2i@1", "rsum"} <= set(run["recall"])
        values = np.array(_percentages(run), dtype=float)
        assert len(values) == 7 * 4 + 6 and np.all((values >= 0) & (values <= 100)), values
    model = part["model"]
    assert model["hidden_size"] == config.blip_hidden_size and model["parameters"] > 0


@pytest.mark.slow  # shares the blip_run fixture
def test_biased_blip_reloads_with_its_trained_itm_head(blip_run):
    from hf_spurious.demo.blip import new_blip
    from hf_spurious.models import load_adapter

    config, out, data, part = blip_run
    adapter = load_adapter(out / "models" / "blip_biased" / "checkpoint")
    assert adapter.model_kind == "blip-retrieval"
    assert float(adapter.temp.detach()) == pytest.approx(part["model"]["biased_temperature"], abs=1e-4)
    emb = adapter.embed_texts(["a dog with a frisbee"])
    assert emb.shape[0] == 1 and np.isclose(np.linalg.norm(emb), 1.0, atol=1e-4)
    fresh = new_blip(config, data.all_captions)  # the same seeded start: only training moved the heads
    trained = adapter.base_model.itm_head.weight.detach()
    assert not torch.allclose(trained, fresh.base_model.itm_head.weight.detach())  # ITM was trained
    assert not torch.allclose(
        adapter.base_model.vision_proj.weight.detach(), fresh.base_model.vision_proj.weight.detach()
    )  # ITC was trained


@pytest.mark.slow  # shares the blip_run fixture
def test_evaluate_model_reranks_like_evaluate_recall(blip_run):
    from hf_spurious.demo.arms import evaluate_model
    from hf_spurious.evaluation.retrieval import evaluate_recall
    from hf_spurious.models import load_adapter

    _config, out, data, _part = blip_run
    adapter = load_adapter(out / "models" / "blip_biased" / "checkpoint")
    cache = out / "cache"
    plain = evaluate_model(adapter, data.evaluation, cache, 64)
    reranked = evaluate_model(adapter, data.evaluation, cache, 64, rerank_top_n=8)
    reference = evaluate_recall(adapter, data.evaluation["recall"], k=(1, 5, 10), rerank_top_n=8)
    assert reranked["recall"]["i2t@1"] == pytest.approx(reference["i2t_r@1"])
    assert reranked["recall"]["t2i@1"] == pytest.approx(reference["t2i_r@1"])
    # re-ranking within the first 8 candidates leaves Recall@10 alone; top-1 moves (random ITM head)
    assert reranked["recall"]["i2t@10"] == pytest.approx(plain["recall"]["i2t@10"])
    tops = [
        [r["top"][0]["caption"] for r in run["_rankings"]["partner/inpainted"]] for run in (plain, reranked)
    ]
    assert tops[0] != tops[1]


def test_blip_training_args_use_the_blip_batch_and_itm():
    from hf_spurious.demo.blip import blip_training_args

    config = DemoConfig(blip_batch_size=48, blip_itm_weight=0.5)
    args = blip_training_args(config, Path("unused"), steps=10, lr=1e-4, seed=3)
    assert args.per_device_train_batch_size == 48 and args.itm_weight == 0.5
    assert args.retrieval_loss == "auto" and args.freeze_policy == "full" and args.seed == 3


def _fake_retrieval(gain: float) -> dict[str, Any]:
    def run(shift: float) -> dict[str, Any]:
        sets = {
            f"{q}/{m}": {"odmap@1": 40.0 + shift, "mention@1": 20.0}
            for q in ("partner", "random", "anchor")
            for m in ("inpainted", "oracle")
        }
        return {"sets": sets, "recall": {"i2t@1": 20.0, "t2i@1": 18.0}}

    return {"biased": [run(0.0)], "A": [run(1.0), run(3.0)], "B": [run(1.0 + gain), run(3.0 + gain)]}


def test_blip_claims_when_present():
    results: dict[str, Any] = {"retrieval": {"models": _fake_retrieval(8.0)}}
    without = evaluate_claims(results)
    assert not any(c["claim"].startswith("BLIP ") for c in without)
    results["retrieval"]["blip"] = {"models": _fake_retrieval(2.5)}
    blip = {c["claim"]: c for c in evaluate_claims(results) if c["claim"].startswith("BLIP ")}
    assert len(blip) == 4 and all(c["passed"] for c in blip.values())
    gain = blip["BLIP retrieval mitigation: B − A ODmAP@1 on partner-removed queries (inpainted)"]
    assert gain["measured"].startswith("+2.5") and gain["needed"] == "mean ≥ +2.0"
    assert not any("exposure" in k for k in blip)  # the exposure check is CLIP's only
    results["retrieval"]["blip"] = {"models": _fake_retrieval(1.0)}  # within the seed noise
    failed = [c for c in evaluate_claims(results) if c["claim"].startswith("BLIP retrieval mitigation: B")]
    assert len(failed) == 2 and not any(c["passed"] for c in failed)


def test_blip_flag_and_step_flags():
    from hf_spurious.cli.demo import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert not config_from_args(parser.parse_args([])).blip
    cfg = config_from_args(parser.parse_args(["--blip", "--blip-pretrain-steps", "5"]))
    assert (
        cfg.blip
        and cfg.blip_pretrain_steps == 5
        and cfg.blip_finetune_steps == DemoConfig().blip_finetune_steps
    )
    quick = config_from_args(parser.parse_args(["--quick", "--blip"]))
    assert quick.blip and quick.blip_pretrain_steps == DemoConfig.quick_preset().blip_pretrain_steps < 10


def test_mitigate_section_lists_the_blip_family():
    from hf_spurious.demo.report import Report
    from hf_spurious.demo.report.sections import _mitigate_section

    results = {"retrieval": {"models": _fake_retrieval(8.0), "blip": {"models": _fake_retrieval(1.0)}}}
    section = _mitigate_section(results, Report("t"))
    captions = [getattr(b, "caption", "") for b in section.blocks]
    assert any(c.startswith("tiny BLIP (ViT + BERT, ITC + ITM)") for c in captions)
