"""The demo: report rendering, claim checks, and a tiny end-to-end run whose every artifact is checked."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_spurious.demo.claims import evaluate_claims
from hf_spurious.demo.config import DemoConfig
from hf_spurious.demo.report import (
    Report,
    Visuals,
    build_report,
    fmt,
    highlight,
    image_grid,
    png_bytes,
    render_html,
    render_markdown,
    write_report,
)
from hf_spurious.evaluation.plots import bar_chart, overlay_heatmap, save_overlay

# ------------------------------------------------------------------------------------------ helpers


def _naive_marks(text: str, spans: list[tuple[int, int]]) -> list[bool]:
    marks = [False] * len(text)
    for s, e in spans:
        for i in range(s, e):
            marks[i] = True
    return marks


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab c", min_size=0, max_size=30), st.data())
def test_highlight_marks_exactly_the_spans(text, data):
    n = len(text)
    spans = data.draw(
        st.lists(st.tuples(st.integers(0, n), st.integers(0, n)).map(lambda t: tuple(sorted(t))), max_size=4)
    )
    rich = highlight(text, spans)
    assert rich.plain == text
    got = [hl for seg, hl in rich.segments for _ in seg]
    assert got == _naive_marks(text, spans)
    assert all(seg for seg, _ in rich.segments)  # no empty segments


def test_highlight_rejects_out_of_range_span():
    with pytest.raises(ValueError, match="outside the text"):
        highlight("a dog", [(2, 9)])


def test_fmt_hand_worked():
    assert fmt(67.94) == "67.9"
    assert fmt([1.0, 2.0, 3.0]) == "2.0 ± 1.0"  # sample std of 1, 2, 3 is 1
    assert fmt([]) == "–" and fmt(None) == "–"
    assert fmt([0.51234], 3) == "0.512"


def test_png_helpers_decode():
    from PIL import Image

    img = (np.arange(4 * 5 * 3) % 256).astype(np.uint8).reshape(4, 5, 3)
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(img, scale=2))))
    assert decoded.shape == (8, 10, 3)
    assert np.array_equal(decoded[::2, ::2], img)
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(img.astype(float))
    heat = np.zeros((4, 5))
    assert np.array_equal(overlay_heatmap(img, heat, alpha=0.0), img)
    with pytest.raises(ValueError, match="does not match"):
        overlay_heatmap(img, np.zeros((3, 3)))
    for png in (
        bar_chart(["a", "b"], {"x": [[1.0, 2.0], [3.0]]}, title="t", ylabel="y"),
        image_grid([[img, img]], column_titles=["p", "q"]),
    ):
        assert Image.open(io.BytesIO(png)).size[0] > 10
    with pytest.raises(ValueError, match="entries for 2 groups"):
        bar_chart(["a", "b"], {"x": [[1.0]]}, title="t", ylabel="y")


def test_save_overlay_writes_the_overlay_pixels(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    cam = rng.random((6, 7)) * 1.4 - 0.2  # out-of-range values are clipped to [0, 1]
    path = save_overlay(img, cam, tmp_path / "sub" / "o.png", alpha=0.3)
    blended = overlay_heatmap(img, cam, alpha=0.3)
    assert blended.dtype == np.uint8 and blended.shape == img.shape
    assert np.array_equal(np.asarray(Image.open(path)), blended)
    assert np.array_equal(
        overlay_heatmap(img, cam, alpha=1.0), overlay_heatmap(img, np.clip(cam, 0, 1), alpha=1.0)
    )
    with pytest.raises(ValueError, match="differ in size"):
        save_overlay(img, np.zeros((3, 3)), tmp_path / "x.png")


def test_demo_config_builds_the_world_configs():
    cfg = DemoConfig.quick_preset(seed=3, cls_world={"train_agreement": 0.8})
    world = cfg.retrieval_world_config()
    assert (world.train_size, world.val_size, world.test_size) == (120, 30, 60)
    assert (world.image_size, world.seed, world.p_partner, world.p_co_name) == (64, 3, 0.9, 0.75)
    cls = cfg.classification_world_config()
    assert (cls.train_size, cls.val_size, cls.test_size, cls.pretrain_size) == (160, 40, 40, 160)
    assert (cls.image_size, cls.seed, cls.train_agreement) == (64, 3, 0.8)


def _metric_set(base: float, mention: float) -> dict:
    return {"odmap@1": base, "odmap@5": base - 5, "odmap@10": base - 8, "mention@1": mention}


def _fake_results(b_gain: float = 10.0) -> dict:
    def run(shift: float, partner_mention: float) -> dict:
        sets = {}
        for q, m in (("partner", partner_mention), ("random", 19.0), ("anchor", 16.0)):
            for method in ("inpainted", "oracle"):
                sets[f"{q}/{method}"] = _metric_set(65.0 + shift, m)
        sets["original"] = _metric_set(96.0, 0.0)
        return {"sets": sets, "recall": {f"{d}@{k}": 15.0 + k for d in ("i2t", "t2i") for k in (1, 5, 10)}}

    groups = ["landbird/land", "landbird/water", "waterbird/land", "waterbird/water"]

    def arm(avg: float, worst: float) -> dict:
        return {
            "average": avg,
            "adjusted": avg,
            "worst": worst,
            "groups": dict.fromkeys(groups, avg),
            "aiou": 0.5,
            "worst_group_aiou": 0.4,
            "aiou_groups": dict.fromkeys(groups, 0.5),
        }

    return {
        "meta": {"seeds": 2, "what_varies": "fine-tuning seeds", "total_seconds": 10.0},
        "calibration": [{"check": "zero-shot worst", "value": 20.0, "band": [10, 50], "ok": True}],
        "retrieval": {
            "world": {"train": 10, "val": 2, "test": 3, "cooccurrence": {"dog → frisbee": 0.9}},
            "queries": {"partner": 3, "random": 3, "anchor": 3},
            "gallery_size": 75,
            "d_prime": 12,
            "models": {
                "biased": [run(0, 25.0)],
                "A": [run(2, 23.0), run(3, 23.0)],
                "B": [run(2 + b_gain, 17.0), run(3 + b_gain, 17.0)],
            },
        },
        "classification": {
            "world": {"group_counts": {"train": dict.fromkeys(groups, 5), "test": dict.fromkeys(groups, 2)}},
            "arms": {
                "zero-shot": [arm(60.0, 10.0)],
                "clip-uniform": [arm(52.0, 2.0)] * 2,
                "clip-balanced": [arm(68.0, 56.0)] * 2,
                "group-dro": [arm(67.0, 55.0)] * 2,
                "clip+vc+lc+vs": [arm(68.0, 58.0)] * 2,
                "clip+vc+lc+ls": [arm(67.0, 52.0)] * 2,
            },
        },
        "timings": [{"step": "x", "seconds": 1.0, "load": "0.1 / 0.1 / 0.1"}],
    }


def test_evaluate_claims_hand_worked():
    checks = {c["claim"]: c for c in evaluate_claims(_fake_results(b_gain=10.0))}
    assert all(c["passed"] for c in checks.values() if "ls non-inferior" not in c["claim"]), checks
    # ls arm is 52 vs balanced 56: -4 < -3, must fail; vs arm +2 passes.
    ls = next(c for c in checks.values() if "clip+vc+lc+ls" in c["claim"])
    assert not ls["passed"] and "-4.0" in ls["measured"].replace("−", "-")
    weak = evaluate_claims(_fake_results(b_gain=4.0))
    gains = [c for c in weak if c["claim"].startswith("retrieval mitigation: B − A")]
    assert len(gains) == 2 and not any(c["passed"] for c in gains)
    assert "+4.0" in gains[0]["measured"]


def test_vsepp_claims_and_no_runtime_claim():
    results = _fake_results(b_gain=10.0)
    fake = _fake_results(b_gain=2.5)["retrieval"]["models"]
    results["retrieval"]["vsepp"] = {"models": fake}
    checks = {c["claim"]: c for c in evaluate_claims(results)}
    vsepp = {k: c for k, c in checks.items() if k.startswith("VSE++ ")}
    assert len(vsepp) == 4 and all(c["passed"] for c in vsepp.values())  # +2.5 ≥ +2; recall unchanged
    assert (
        vsepp["VSE++ retrieval mitigation: B − A ODmAP@1 on partner-removed queries (oracle)"]["needed"]
        == "mean ≥ +2.0"
    )
    for gain in (0.0, 1.5):  # no gain, or a gain within the seed noise, is no mitigation
        results["retrieval"]["vsepp"]["models"] = _fake_results(b_gain=gain)["retrieval"]["models"]
        flat = [c for c in evaluate_claims(results) if c["claim"].startswith("VSE++ retrieval mitigation: B")]
        assert len(flat) == 2 and not any(c["passed"] for c in flat)
    assert not any("runtime" in c["claim"] or "run time" in c["claim"] for c in checks.values())


def test_claims_are_judged_on_the_numbers_they_show():
    """A gain shown as "+2.0" passes "≥ +2.0" (before, 1.997 was printed "+2.0" and failed); "+1.9" fails.
    Differences of shown numbers are judged without float residue (32.3 − 7.3 is 25.0, not 24.9999...)."""
    results = _fake_results(b_gain=10.0)
    for gain, passed in ((1.997, True), (1.96, True), (1.94, False)):
        results["retrieval"]["vsepp"] = {"models": _fake_results(b_gain=gain)["retrieval"]["models"]}
        (oracle,) = [c for c in evaluate_claims(results) if c["claim"].startswith("VSE++ retrieval mitigation: B")
                     and "oracle" in c["claim"]]  # fmt: skip
        assert oracle["passed"] is passed and oracle["measured"].startswith("+2.0" if passed else "+1.9")
    arms = results["classification"]["arms"]
    arms["zero-shot"] = [arm | {"worst": 7.3} for arm in arms["zero-shot"]]
    arms["clip-balanced"] = [arm | {"worst": 32.3} for arm in arms["clip-balanced"]]
    assert 32.3 - 7.3 < 25.0  # the float residue the rounding removes
    (beats,) = [c for c in evaluate_claims(results) if "beats zero-shot" in c["claim"]]
    assert beats["passed"] and "(+25.0)" in beats["measured"]


def test_budget_line_is_a_line_not_a_claim():
    from hf_spurious.demo.claims import budget_line

    meta = {"seeds": 1, "quick": False, "total_seconds": 700.0, "load_at_start": "1", "load_at_end": "2"}
    assert budget_line({"meta": meta}, 720.0) == {
        "total_seconds": 700.0, "budget_seconds": 720.0, "within": True, "load_at_start": "1", "load_at_end": "2"
    }  # fmt: skip
    assert budget_line({"meta": {**meta, "total_seconds": 721.0}}, 720.0)["within"] is False
    assert budget_line({"meta": {**meta, "seeds": 3}}, 720.0)["within"] is None  # the budget is for one seed
    assert budget_line({"meta": {**meta, "quick": True}}, 720.0)["within"] is None


def test_report_renders_every_block(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    visuals = Visuals(
        triples=[
            {
                "original": img,
                "inpainted": img,
                "oracle": img,
                "caption": "a dog with a frisbee",
                "edited": "a dog with",
                "removed": ["frisbee"],
            }
        ],
        retrieval_examples=[
            {
                "image": img,
                "removed": ["frisbee"],
                "present": ["dog"],
                "rankings": {
                    "biased": [{"text": "a dog and a frisbee", "spans": [[12, 19]]}],
                    "B": [{"text": "a dog", "spans": []}],
                },
            }
        ],
        gradcam=[{"group": "landbird/water", "image": img, "maps": {"zero-shot": rng.random((16, 16))}}],
    )
    results = _fake_results()
    results["checks"] = evaluate_claims(results)
    report = build_report(results, visuals)
    paths = write_report(tmp_path, results, report)
    md = paths["markdown"].read_text()
    page = paths["html"].read_text()
    assert json.loads(paths["results"].read_text())["retrieval"]["d_prime"] == 12
    assert "**frisbee**" in md and "<mark>frisbee</mark>" in page
    # every markdown image exists on disk and every html image is embedded
    for ref in re.findall(r"\]\((figures/[^)]+\.png)\)", md):
        assert (tmp_path / ref).is_file(), ref
    assert 'src="figures' not in page
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    # figures once each; a query thumbnail once per ranking row (one row per model)
    rows = sum(len(ex["rankings"]) for ex in visuals.retrieval_examples)
    assert len(uris) == len(report.images) - len(visuals.retrieval_examples) + rows
    from PIL import Image

    for uri in uris:
        Image.open(io.BytesIO(base64.b64decode(uri))).verify()
    # tables are well formed: each row has as many cells as its header
    _check_md_tables(md)
    assert "FAIL" in md and "PASS" in md  # the ls arm fails its claim and the report says so


def _check_md_tables(md: str) -> None:
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---") or line.startswith("|---|"):
            width = _cells(lines[i - 1])
            assert width > 1
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert _cells(lines[j]) == width, lines[j]
                j += 1


def _cells(line: str) -> int:
    return len(re.split(r"(?<!\\)\|", line.strip().strip("|")))


def test_report_rejects_missing_image():
    from hf_spurious.demo.report import Figure, Section

    report = Report("t", [Section("s", [Figure("nope")])])
    with pytest.raises(KeyError, match="never added"):
        render_markdown(report)
    with pytest.raises(KeyError, match="never added"):
        render_html(report)
    with pytest.raises(ValueError, match="not PNG"):
        report.add_image("x", b"GIF89a")


def test_cli_flags_map_to_config():
    import argparse

    from hf_spurious.cli.demo import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--quick", "--seeds", "3", "--finetune-steps", "7"]))
    assert cfg.quick and cfg.seeds == 3 and cfg.finetune_steps == 7 and cfg.finetune_seeds == [0, 1, 2]
    full = config_from_args(parser.parse_args([]))
    assert full == DemoConfig() and full.vsepp
    cfg = config_from_args(parser.parse_args(["--no-vsepp", "--vsepp-finetune-steps", "9"]))
    assert not cfg.vsepp and cfg.vsepp_finetune_steps == 9
    with pytest.raises(SystemExit):
        config_from_args(parser.parse_args(["--seeds", "0"]))
    for flag in ("--workers", "--threads"):
        with pytest.raises(SystemExit, match=f"{flag} must be at least 1, got 0"):
            config_from_args(parser.parse_args([flag, "0"]))
    assert config_from_args(parser.parse_args(["--workers", "1"])).workers == 1


# ------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory) -> tuple[Path, dict]:
    """One tiny end-to-end demo run (every step runs; the numbers mean nothing at this size)."""
    from hf_spurious.cli import main

    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", "--quick", "--quiet", "--out", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.slow  # the quick_demo fixture runs the tiny demo end to end (~75 s on 2 cores)
def test_quick_demo_results_json(quick_demo):
    _out, results = quick_demo
    assert {"meta", "calibration", "retrieval", "classification", "timings", "checks"} <= set(results)
    models = results["retrieval"]["models"]
    assert len(models["biased"]) == 1 and len(models["A"]) == len(models["B"]) == 1
    expected_sets = {f"{q}/{m}" for q in ("partner", "random", "anchor") for m in ("inpainted", "oracle")}
    for run in models["biased"] + models["A"] + models["B"]:
        assert set(run["sets"]) == expected_sets | {"original"}
        for values in run["sets"].values():
            assert set(values) == {"odmap@1", "odmap@5", "odmap@10", "mention@1"}
            assert all(0.0 <= v <= 100.0 for v in values.values())
        assert {"i2t@1", "i2t@5", "i2t@10", "t2i@1", "t2i@5", "t2i@10"} <= set(run["recall"])
    assert models["biased"][0]["sets"]["original"]["mention@1"] == 0.0  # nothing removed, nothing to mention
    queries = results["retrieval"]["queries"]
    assert all(queries[q] > 0 for q in ("partner", "random", "anchor"))
    arms = results["classification"]["arms"]
    assert set(arms) == {
        "zero-shot",
        "clip-uniform",
        "clip-balanced",
        "group-dro",
        "clip+vc+lc+vs",
        "clip+vc+lc+ls",
    }
    for runs in arms.values():
        run = runs[0]
        assert run["worst"] <= run["average"] + 1e-9
        assert set(run["groups"]) == {"landbird/land", "landbird/water", "waterbird/land", "waterbird/water"}
        assert min(run["groups"].values()) == pytest.approx(run["worst"])
        assert 0.0 <= run["aiou"] <= 1.0 and set(run["aiou_groups"]) <= set(run["groups"])
    vsepp = results["retrieval"]["vsepp"]
    assert {k: len(v) for k, v in vsepp["models"].items()} == {"biased": 1, "A": 1, "B": 1}
    for run in vsepp["models"]["biased"] + vsepp["models"]["A"] + vsepp["models"]["B"]:
        assert set(run["sets"]) == expected_sets | {"original"} and "_rankings" not in run
    assert vsepp["model"]["parameters"] > 0 and vsepp["model"]["vocabulary"] > 4
    assert results["meta"]["budget"]["within"] is None  # --quick: no budget verdict
    steps = [t["step"] for t in results["timings"]]
    assert any("pretrain" in s for s in steps) and steps[-1] == "report"
    assert all(c["passed"] in (True, False) for c in results["checks"])


@pytest.mark.slow  # the quick_demo fixture runs the tiny demo end to end (~75 s on 2 cores)
def test_quick_demo_saved_models_reload(quick_demo):
    from hf_spurious.models import load_adapter

    out, _ = quick_demo
    for name in ("retrieval_biased", "classification_biased", "vsepp_biased"):
        adapter = load_adapter(out / "models" / name / "checkpoint")
        assert adapter.model_kind == ("vsepp" if name.startswith("vsepp") else "clip")
        emb = adapter.embed_texts(["a dog with a frisbee"])
        assert emb.shape[0] == 1 and np.isclose(np.linalg.norm(emb), 1.0, atol=1e-4)


@pytest.mark.slow  # the quick_demo fixture runs the tiny demo end to end (~75 s on 2 cores)
def test_quick_demo_report_files(quick_demo):
    from PIL import Image

    out, results = quick_demo
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for heading in (
        "## Summary",
        "## Expose: retrieval",
        "## Mitigate: retrieval",
        "## Expose and mitigate: classification",
        "## Timings",
    ):
        assert heading in md
    _check_md_tables(md)
    refs = re.findall(r"\]\((figures/[^)]+\.png)\)", md)
    assert {"figures/triples.png", "figures/gradcam.png", "figures/mitigate_odmap.png"} <= set(refs)
    for ref in refs:
        with Image.open(out / ref) as im:
            im.load()
            assert im.size[0] > 0
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    uris = re.findall(r'src="([^"]+)"', page)
    assert uris and all(u.startswith("data:image/png;base64,") for u in uris)
    for uri in uris:
        Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).verify()
    # every claim in results.json is in the report
    for check in results["checks"]:
        assert check["claim"] in md


def _numbers(results: dict) -> dict:
    """Everything a run measured (no timings, loads, paths or wall-clock fields)."""
    return {"retrieval": results["retrieval"], "classification": results["classification"]}


@pytest.mark.slow
def test_quick_demo_is_deterministic(quick_demo, tmp_path):
    from safetensors.numpy import load_file

    from hf_spurious.cli import main

    out, results = quick_demo
    again = tmp_path / "again"
    assert main(["demo", "--quick", "--quiet", "--out", str(again)]) == 0
    assert _numbers(json.loads((again / "results.json").read_text())) == _numbers(results)
    for name in ("retrieval_biased", "classification_biased", "vsepp_biased"):
        a = load_file(out / "models" / name / "checkpoint" / "model.safetensors")
        b = load_file(again / "models" / name / "checkpoint" / "model.safetensors")
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_quick_demo_numbers_do_not_depend_on_the_workers(quick_demo, tmp_path):
    """The fixture ran the three jobs side by side (2 workers, 1 thread each); one after another in this
    process with 1 thread gives the same numbers (each job seeds itself)."""
    from hf_spurious.cli import main

    _out, results = quick_demo
    assert results["meta"]["workers"] == 2 and results["meta"]["threads"] == 1
    assert {t.get("job") for t in results["timings"]} >= {
        "retrieval world",
        "clip",
        "vsepp",
        "classification",
    }
    serial = tmp_path / "serial"
    assert main(["demo", "--quick", "--quiet", "--workers", "1", "--threads", "1", "--out", str(serial)]) == 0
    again = json.loads((serial / "results.json").read_text())
    assert again["meta"]["workers"] == 1
    assert _numbers(again) == _numbers(results) and again["calibration"] == results["calibration"]


def test_jobs_threads_and_in_process_executor():
    from hf_spurious.demo.jobs import InProcess, run_job, threads_per_job, worker_config

    assert [threads_per_job(DemoConfig(threads=t, workers=w)) for t, w in [(2, 2), (2, 1), (1, 2), (8, 3)]] == [
        1, 2, 1, 2
    ]  # fmt: skip
    assert worker_config(DemoConfig(workers=2)).progress_bars is False
    assert worker_config(DemoConfig(workers=1)).progress_bars is True
    with InProcess() as pool:
        assert pool.submit(divmod, 7, 2).result() == (3, 1)
        failed = pool.submit(run_job, "nope", DemoConfig(workers=1), Path("."), False)
    with pytest.raises(
        ValueError, match="unknown demo job 'nope'; choose one of classification, clip, vsepp"
    ):
        failed.result()


def test_a_failing_job_stops_the_other_workers_at_once():
    """A job that fails (or Ctrl-C in the main process) cancels the queue and stops running workers instead
    of waiting minutes for them; the error reaches the caller."""
    import multiprocessing
    import time

    from hf_spurious.demo.jobs import job_pool

    others = set(multiprocessing.active_children())
    start = time.monotonic()
    with pytest.raises(ValueError, match="invalid literal"), job_pool(DemoConfig(workers=2)) as pool:
        slow = pool.submit(time.sleep, 120)  # one worker busy for two minutes
        failing = pool.submit(int, "x")  # the other worker fails
        queued = pool.submit(time.sleep, 120)
        failing.result()
    assert time.monotonic() - start < 60 and not set(multiprocessing.active_children()) - others
    assert not slow.done() or slow.cancelled() or slow.exception() is not None
    assert queued.cancelled() or queued.exception() is not None


def test_a_worker_registers_no_semaphore_for_progress_bars():
    """tqdm's default lock is a multiprocessing semaphore; a worker stopped mid-job left it registered and
    Python warned of a leaked semaphore after Ctrl-C. Workers use a thread lock instead."""
    code = (
        "import multiprocessing\n"
        "multiprocessing.set_start_method('spawn')  # as in the workers: semaphores are named and registered\n"
        "from multiprocessing import resource_tracker\n"
        "from hf_spurious.demo.jobs import _init_worker\n"
        "_init_worker(None)\n"
        "registered = []\n"
        "resource_tracker.register = lambda name, rtype: registered.append(rtype)\n"
        "import tqdm\n"
        "tqdm.tqdm(total=1).close()\n"
        "print('registered', registered)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "registered []" in done.stdout


def test_timings_section_names_jobs_and_says_they_overlap():
    from hf_spurious.demo.report.sections import timings_section

    timings = [{"step": "a", "seconds": 2.0, "job": "clip"}, {"step": "report", "seconds": 1.0}]
    text = str(timings_section(timings, {"workers": 2, "threads": 1}))
    assert "side by side in 2 worker processes with 1 torch thread(s)" in text and "clip" in text
    assert "side by side" not in str(timings_section(timings, {"workers": 1, "threads": 2}))


# ------------------------------------------------------------------------------------------ demo helpers


def test_caption_words_hand_worked():
    from hf_spurious.demo.models import caption_words

    assert caption_words(["A dog, two Frisbees!", "a stop light 3x"]) == [
        "a",
        "dog",
        "frisbees",
        "light",
        "stop",
        "two",
        "x",
    ]


def test_random_caption_images_is_seeded_and_faithful():
    from types import SimpleNamespace

    from hf_spurious.demo.models import RandomCaptionImages

    records = [
        SimpleNamespace(image_path=f"/img/{i}.png", captions=[f"c{i}-{j}" for j in range(5)])
        for i in range(4)
    ]
    a, b, c = (RandomCaptionImages(records, s) for s in (3, 3, 4))
    seq_a = [a[i % 4]["caption"] for i in range(40)]
    assert seq_a == [b[i % 4]["caption"] for i in range(40)]
    assert seq_a != [c[i % 4]["caption"] for i in range(40)]
    for i in range(40):
        row = a[i % 4]
        assert row["caption"].startswith(f"c{i % 4}-") and row["image"] == f"/img/{i % 4}.png"
        assert row["is_counterfactual"] is False
    assert len({x for x in seq_a}) > 4  # more than one caption per image gets drawn


def test_paired_query_sets_keeps_common_queries_in_order():
    import datasets

    from hf_spurious.demo.retrieval_data import paired_query_sets

    inp = datasets.Dataset.from_dict(
        {
            "source_image_id": ["1", "2", "3", "4"],
            "removed_classes": [["dog"], ["bird"], ["car", "person"], ["kite"]],
        }
    )
    ora = datasets.Dataset.from_dict(
        {"source_image_id": ["3", "1", "4"], "removed_classes": [["person", "car"], ["dog"], ["bench"]]}
    )
    ia, ib = paired_query_sets(inp, ora)
    assert ia == [0, 2] and ib == [1, 0]  # image 2 missing from oracle, image 4 removed a different class


def test_stratified_subset_hand_worked():
    from types import SimpleNamespace

    from hf_spurious.demo.classification import stratified_subset

    recs = [SimpleNamespace(group=g, i=i) for i, g in enumerate([0, 0, 0, 1, 3, 3, 0])]
    assert [r.i for r in stratified_subset(recs, 5)] == [0, 3, 4, 1, 5]
    assert [r.i for r in stratified_subset(recs, 100)] == [0, 3, 4, 1, 5, 2, 6]
    assert stratified_subset(recs, 0) == []


def test_decode_images_keeps_pixels_and_preprocessed_rows_collate_like_raw_ones(tmp_path, tiny_model_dir):
    from types import SimpleNamespace

    import torch
    from PIL import Image

    from hf_spurious.demo.models import RandomCaptionImages, decode_images, pixel_values_of
    from hf_spurious.models import load_adapter
    from hf_spurious.training.collators import RetrievalCollator

    rng = np.random.default_rng(1)
    pixels = [rng.integers(0, 256, (8 + 4 * i, 8, 3), dtype=np.uint8) for i in range(3)]
    paths = []
    for i, arr in enumerate(pixels):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(arr).save(paths[-1])
    decoded = decode_images([paths[0], Image.fromarray(pixels[1]), paths[2]])
    assert all(np.array_equal(a, b) for a, b in zip(decoded, pixels))
    records = [SimpleNamespace(image_path=p, captions=[f"a dog {i}"]) for i, p in enumerate(paths)]
    adapter = load_adapter(tiny_model_dir("clip"))
    pre = pixel_values_of(adapter, decoded, batch_size=2)  # two chunks
    assert pre.shape[0] == 3 and pre.dtype == torch.float32
    collate = RetrievalCollator(adapter.processor)
    raw = collate([RandomCaptionImages(records, 0)[i] for i in range(3)])
    fast = collate([RandomCaptionImages(records, 0, pre)[i] for i in range(3)])
    assert set(RandomCaptionImages(records, 0, pre)[0]) == {"pixel_values", "caption", "is_counterfactual"}
    for key in ("pixel_values", "input_ids", "attention_mask"):
        torch.testing.assert_close(fast[key], raw[key], rtol=0, atol=0)
    with pytest.raises(ValueError, match="one per record"):
        RandomCaptionImages(records, 0, pre[:1])
    mixed = [RandomCaptionImages(records, 0, pre)[0], RandomCaptionImages(records, 0)[1]]
    with pytest.raises(ValueError, match="row 1 has no 'pixel_values'"):
        collate(mixed)


def test_visuals_show_the_same_queries_in_triples_and_rankings(tmp_path):
    """The image triples and the retrieved-captions table are of the same queries: named-removed ones first."""
    from types import SimpleNamespace

    from PIL import Image

    from hf_spurious.demo.retrieval import _collect_visuals

    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    img = Image.new("RGB", (8, 8), (9, 9, 9))
    rows = [
        {"image": img, "source_image_id": str(q), "source_caption": f"c{q}", "caption": f"e{q}",
         "removed_classes": ["frisbee"]}
        for q in range(5)
    ]  # fmt: skip
    names = [False, True, False, True, False]  # biased top-1 names the removed object for queries 1 and 3
    rank = [
        {"top": [{"caption": "a dog and a frisbee", "names_removed": n}], "removed_classes": ["frisbee"],
         "present_classes": ["dog"]}
        for n in names
    ]  # fmt: skip
    run = {"_rankings": {"partner/inpainted": rank}}
    visuals = Visuals()
    records = [SimpleNamespace(image_id=str(q), image_path=tmp_path / "x.png") for q in range(5)]
    config = DemoConfig(examples=3)
    built = {("partner", "inpainted"): rows, ("partner", "oracle"): rows}
    _collect_visuals(config, visuals, records, built, {"biased": [run], "A": [run], "B": []})
    assert [t["query"] for t in visuals.triples] == [1, 3, 0]
    assert [e["query"] for e in visuals.retrieval_examples] == [1, 3, 0]
    assert [t["caption"] for t in visuals.triples] == ["c1", "c3", "c0"]
    assert set(visuals.retrieval_examples[0]["rankings"]) == {"biased", "A"}
    assert visuals.retrieval_examples[0]["rankings"]["A"][0]["spans"] == [(12, 19)]  # "frisbee"
