"""``hf-spurious build-dataset`` and ``hf-spurious push`` (issue 15, item 2): recipe options per inpainter,
the Hub checked before a build, a failed push that keeps the export and prints the command that retries, and
a failed first run that does not block the retry. The Hub is a stand-in object (no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
from huggingface_hub import constants as hub_constants

from hf_spurious import cli
from hf_spurious.cli import build_dataset, push


class FakeHub:
    """The three ``HfApi`` calls the push makes, recorded; ``fail`` breaks whoami, ``upload_error`` the upload."""

    def __init__(self, user="me", orgs=(), role="write", fail=None, upload_error=None) -> None:
        self.user, self.orgs, self.role = user, orgs, role
        self.fail, self.upload_error = fail, upload_error
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def whoami(self, token=None) -> dict[str, Any]:
        self.calls.append(("whoami", {"token": token}))
        if self.fail is not None:
            raise self.fail
        orgs = [{"name": o} for o in self.orgs]
        return {"name": self.user, "orgs": orgs, "auth": {"accessToken": {"role": self.role}}}

    def create_repo(self, **kw: Any) -> str:
        self.calls.append(("create_repo", kw))
        return f"https://huggingface.co/datasets/{kw['repo_id']}"

    def upload_folder(self, **kw: Any) -> None:
        self.calls.append(("upload_folder", kw))
        if self.upload_error is not None:
            raise self.upload_error


@pytest.fixture
def online(monkeypatch):
    """Not offline, a token present; returns a setter for the HfApi stand-in the commands will build."""
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_token")
    hub = {"api": FakeHub()}
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda *a, **k: hub["api"])
    return hub


def _export(tmp_path: Path, configs=("test", "train")) -> Path:
    out = tmp_path / "export"
    for c in configs:
        (out / c).mkdir(parents=True)
        (out / c / f"{c}-00000-of-00001.parquet").write_bytes(b"PAR1")
    (out / "README.md").write_text("---\n---\n# card\n")
    (out / "provenance.json").write_text(json.dumps({c: {"settings": {"source": "shapes"}} for c in configs}))
    return out


# ------------------------------------------------------------------------------------- recipe options


def test_non_diffusers_inpainters_get_only_the_users_options():
    from hf_spurious.synthesis import get_inpainter

    assert build_dataset.inpainter_options("opencv", {}) == {}
    assert build_dataset.inpainter_options("blur", {"kernel": 5}) == {"kernel": 5}
    get_inpainter("opencv", **build_dataset.inpainter_options("opencv", {}))  # the old 'steps' TypeError
    diffusers = build_dataset.inpainter_options(build_dataset.SD_INPAINTING, {"steps": 50})
    assert diffusers == {"steps": 50, "batch_size": 8}  # the user's value wins, the rest of the recipe stays


def test_user_options_reach_counterfactuals_intact():
    parser = cli.command_parser("build-dataset")
    args = parser.parse_args(
        ["coco", "--data-dir", "d", "--inpainter-options", '{"steps": 50, "guidance_scale": 5}']
    )
    recipe = build_dataset.RECIPES["coco"]
    argv = build_dataset.counterfactual_argv(args, recipe, recipe.configs[0], "d", "o")
    sub = cli.command_parser("counterfactuals").parse_args(argv)
    assert sub.inpainter_options == {"steps": 50, "guidance_scale": 5, "batch_size": 8}
    assert (sub.source, sub.split, sub.config_name, sub.shard_size) == ("coco", "test", "test", 256)
    assert Path(sub.card_template).is_file() and "configs:" in Path(sub.card_template).read_text()
    shapes = build_dataset.RECIPES["shapes"]
    oracle = next(c for c in shapes.configs if c[3] == "oracle")
    argv = build_dataset.counterfactual_argv(parser.parse_args(["shapes"]), shapes, oracle, "w", "o")
    sub = cli.command_parser("counterfactuals").parse_args(argv)
    assert sub.inpainter == "oracle" and sub.inpainter_options == {} and sub.target_policy == "partner"


@pytest.mark.parametrize("bad", ["{steps: 30", "[1, 2]"])
def test_inpainter_options_must_be_a_json_object(bad, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["build-dataset", "coco", "--data-dir", "d", "--inpainter-options", bad])
    assert info.value.code == 2 and "--inpainter-options" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- push checks


def test_push_access_is_checked_with_a_named_reason(monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE"):
        push.check_push_access("me/x", token="t", api=FakeHub())
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(PermissionError, match="hf auth login"):
        push.check_push_access("me/x", api=FakeHub())
    with pytest.raises(ConnectionError, match=r"cannot reach the Hub.*ConnectError.*name resolution"):
        push.check_push_access(
            "me/x", token="t", api=FakeHub(fail=type("ConnectError", (Exception,), {})("name resolution"))
        )
    with pytest.raises(PermissionError, match=r"'other' is neither you nor one of your orgs.*me/x"):
        push.check_push_access("other/x", token="t", api=FakeHub(orgs=("lab",)))
    with pytest.raises(PermissionError, match="read-only"):
        push.check_push_access("me/x", token="t", api=FakeHub(role="read"))
    with pytest.raises(ValueError, match="'user/name'"):
        push.check_push_access("just-a-name", token="t", api=FakeHub())
    assert push.check_push_access("lab/x", token="t", api=FakeHub(orgs=("lab",))) == "me"


def test_push_uploads_the_chosen_configs_only(tmp_path, online):
    out = _export(tmp_path)
    assert cli.main(["push", str(out), "me/ds", "--config", "test"]) == 0
    calls = dict(online["api"].calls)
    assert calls["create_repo"]["repo_type"] == "dataset" and calls["create_repo"]["exist_ok"] is True
    assert calls["upload_folder"]["allow_patterns"] == ["README.md", "provenance.json", "test/*.parquet"]
    assert calls["upload_folder"]["folder_path"] == str(out)


def test_push_rejects_a_wrong_folder_or_config_before_the_network(tmp_path, online, capsys):
    assert cli.main(["push", str(tmp_path), "me/ds"]) == 2
    assert "not an exported dataset folder" in capsys.readouterr().err
    out = _export(tmp_path)
    assert cli.main(["push", str(out), "me/ds", "--config", "val"]) == 2
    assert "holds only test, train" in capsys.readouterr().err
    assert online["api"].calls == []


def test_failed_push_keeps_the_export_and_prints_the_retry(tmp_path, online, capsys):
    out = _export(tmp_path)
    online["api"] = FakeHub(upload_error=OSError("Temporary failure in name resolution"))
    assert push.push_or_explain(out, "me/ds", configs=["test", "train"]) == 1
    err = capsys.readouterr().err
    assert "name resolution" in err and f"kept in {out.resolve()}" in err
    assert f"hf-spurious push {out} me/ds --config test,train" in err
    assert sorted(p.name for p in out.rglob("*.parquet")) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
    ]


def test_build_with_push_checks_the_hub_before_building(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    world = tmp_path / "world"
    argv = [
        "build-dataset",
        "shapes",
        "--data-dir",
        str(world),
        "--out",
        str(tmp_path / "o"),
        "--push-to-hub",
        "me/x",
    ]
    assert cli.main(argv) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    assert not world.exists() and not (tmp_path / "o").exists()  # nothing built, not even the world


def test_build_needs_a_source_folder(tmp_path, capsys):
    assert cli.main(["build-dataset", "coco"]) == 2
    assert "--data-dir is required for coco" in capsys.readouterr().err
    assert cli.main(["build-dataset", "coco", "--data-dir", str(tmp_path / "nope")]) == 2
    assert "nope: no such folder" in capsys.readouterr().err
    assert cli.main(["build-dataset", "shapes", "--configs", "val"]) == 2
    assert "the shapes recipe has test_partner" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_build_retry_push_failure_and_push_again(tmp_path, online, capsys, monkeypatch):
    world = tmp_path / "world"
    sizes = ["--train-size", "30", "--val-size", "10", "--test-size", "40", "--no-contact-sheet"]
    assert cli.main(["world", "--out", str(world), *sizes]) == 0
    out = tmp_path / "export"
    base = [
        "build-dataset",
        "shapes",
        "--data-dir",
        str(world),
        "--out",
        str(out),
        "--configs",
        "test_partner,test",
    ]
    # a first run that fails before any shard is finished (an option the inpainter does not take) ...
    assert cli.main([*base, "--inpainter-options", '{"radius": 3, "no_such_option": 1}']) == 2
    capsys.readouterr()
    # ... does not block the retry with other settings, which also pushes; the push fails
    online["api"] = FakeHub(upload_error=OSError("503 Service Unavailable"))
    assert cli.main([*base, "--push-to-hub", "me/shapes"]) == 1
    captured = capsys.readouterr()
    assert "Hub reachable as me" in captured.out and "503" in captured.err
    retry = f"hf-spurious push {out} me/shapes --config test_partner,test"
    assert retry in captured.err
    assert {p.parent.name for p in out.glob("*/*.parquet")} == {"test_partner", "test"}
    # the printed command pushes the kept export
    online["api"] = FakeHub()
    assert cli.main(retry.split()[1:]) == 0
    upload = dict(online["api"].calls)["upload_folder"]
    assert upload["allow_patterns"] == [
        "README.md",
        "provenance.json",
        "test_partner/*.parquet",
        "test/*.parquet",
    ]
