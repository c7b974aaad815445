"""``hf-spurious push DIR REPO``: upload an exported dataset folder (parquet + card) to a Hub dataset repo.

The same upload ``--push-to-hub`` does at the end of a build; use it when that push failed (the export is
kept) or to publish a folder later. Before anything is uploaded, the token and the Hub are checked
(:func:`check_push_access`), so a build with ``--push-to-hub`` can fail in seconds instead of after hours.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hf_spurious.cli._common import ListAction

#: Files of an export folder that go to the Hub (the work shards in ``.work/`` stay local).
EXPORT_FILES = ("README.md", "provenance.json")


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def check_push_access(repo_id: str, *, token: str | None = None, api: Any = None) -> str:
    """Check, before any work, that ``repo_id`` can be pushed to: not offline, a token, the Hub reachable
    with it, and the repo's namespace one the token may write to. Returns the user name."""
    if "/" not in repo_id or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"Hub repo {repo_id!r}: give it as 'user/name' or 'org/name'")
    if _hub_offline():
        raise ConnectionError(
            "HF_HUB_OFFLINE=1 is set, so nothing can be pushed: run with HF_HUB_OFFLINE=0 to push"
        )
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    if token is None:
        from huggingface_hub import get_token

        token = get_token()
    if not token:
        raise PermissionError("no Hugging Face token: run `hf auth login` (or set HF_TOKEN), then retry")
    try:
        info = api.whoami(token=token)
    except Exception as err:  # network, DNS, 401: all mean "cannot push"; say which in one line
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConnectionError(
            f"cannot reach the Hub with your token ({type(err).__name__}: {reason[:200]}); "
            "check the network and `hf auth whoami`, then retry"
        ) from err
    user = str(info.get("name", ""))
    allowed = {user} | {str(org.get("name")) for org in info.get("orgs", []) if isinstance(org, dict)}
    namespace = repo_id.split("/")[0]
    if namespace not in allowed:
        raise PermissionError(
            f"your token (user {user!r}) cannot write to {repo_id!r}: {namespace!r} is neither you nor one "
            f"of your orgs ({', '.join(sorted(allowed))}); push to {user}/{repo_id.split('/')[1]} instead"
        )
    role = (info.get("auth") or {}).get("accessToken", {}).get("role")
    if role == "read":
        raise PermissionError("your Hugging Face token is read-only: create a write token and log in with it")
    return user


def export_configs(out: Path) -> list[str]:
    """The config names of an export folder (from its ``provenance.json``)."""
    missing = [name for name in EXPORT_FILES if not (out / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{out} is not an exported dataset folder ({', '.join(missing)} missing): pass the --out "
            "folder of `hf-spurious build-dataset` or `hf-spurious counterfactuals`"
        )
    try:
        provenance = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{out / 'provenance.json'} is not valid JSON ({err}): rebuild the export") from err
    return sorted(provenance)


def push_export(
    out_dir: str | Path,
    repo_id: str,
    *,
    configs: Sequence[str] | None = None,
    private: bool | None = None,
    api: Any = None,
    token: str | None = None,
) -> str:
    """Check access, create the dataset repo if needed and upload the card, provenance and the parquet
    files of ``configs`` (default: all of the folder's); returns the repo URL."""
    out = Path(out_dir)
    available = export_configs(out)
    chosen = list(configs) if configs else available
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise ValueError(f"--config {','.join(unknown)}: {out} holds only {', '.join(available)}")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    check_push_access(repo_id, token=token, api=api)
    url = api.create_repo(repo_id=repo_id, repo_type="dataset", private=private, exist_ok=True, token=token)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(out),
        repo_type="dataset",
        commit_message=f"Upload {', '.join(chosen)} (hf_spurious)",
        token=token,
        allow_patterns=[*EXPORT_FILES, *(f"{c}/*.parquet" for c in chosen)],
    )
    return str(url)


def push_command(out: str | Path, repo_id: str, configs: Sequence[str] | None = None) -> str:
    """The one command that pushes ``out`` again."""
    words = ["hf-spurious", "push", str(out), repo_id]
    if configs:
        words += ["--config", ",".join(configs)]
    return shlex.join(words)


def push_or_explain(
    out: str | Path,
    repo_id: str,
    *,
    configs: Sequence[str] | None = None,
    private: bool | None = None,
    api: Any = None,
) -> int:
    """Push; when that fails, keep the export and print where it is and the command that retries. 0 / 1."""
    try:
        url = push_export(out, repo_id, configs=configs, private=private, api=api)
    except Exception as err:  # whatever broke the upload, the export is complete and kept
        print(f"push to {repo_id} failed: {type(err).__name__}: {str(err).strip()[:300]}", file=sys.stderr)
        print(
            f"The export is complete and kept in {Path(out).resolve()}; push it again with:", file=sys.stderr
        )
        print(f"  {push_command(out, repo_id, configs)}", file=sys.stderr)
        return 1
    print(f"pushed to {url}")
    return 0


def add_arguments(parser: Any) -> None:
    parser.add_argument("dir", help="the exported folder (README.md, provenance.json, <config>/*.parquet)")
    parser.add_argument("repo", help="Hub dataset repo, 'user/name' or 'org/name'")
    parser.add_argument(
        "--config",
        action=ListAction,
        default=None,
        metavar="NAME",
        help="configs to upload (comma or space list; default: every config in the folder)",
    )
    parser.add_argument("--private", action="store_true", help="create the repo as private when it is new")


def run(args: Any) -> int:
    out = Path(args.dir)
    export_configs(out)  # a wrong folder is a user error before any network access
    url = push_export(out, args.repo, configs=args.config, private=args.private or None)
    print(f"pushed {out} to {url}")
    return 0
