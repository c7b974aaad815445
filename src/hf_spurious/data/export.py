"""Share decorrelated splits: parquet with embedded images, a generated dataset card, and the Hub upload.

Layout written by :func:`export_parquet` (one folder per config, the card's YAML lists them)::

    out_dir/README.md                         card: configs YAML + provenance of every config
    out_dir/provenance.json                   machine-readable provenance (settings, counts, skips)
    out_dir/<config>/<split>-00000-of-00001.parquet

``load_dataset(out_dir, "<config>")`` works with no code, and so does ``load_dataset(repo_id, "<config>")``
once the folder is pushed. Offline, a folder placed at ``./hf_spurious/coco_decorrelated`` (the repo id as a
relative path) is found by ``load_dataset("hf_spurious/coco_decorrelated")`` itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from hf_spurious.cache import atomic_write_json, atomic_write_text
from hf_spurious.data.export_folder import (
    clean_leftovers,
    dataset_info,
    folder_lock,
    read_provenance,
    rebuilt_entry,
    staging_dir,
    swap_in,
)
from hf_spurious.hub import DATASET_REPOS
from hf_spurious.synthesis.merge import merge_shards
from hf_spurious.synthesis.settings import SynthesisError
from hf_spurious.synthesis.shards import collect_stats, read_manifest

WORD_LISTS = {
    "coco": "CHAIR word list (substitute) of Rohrbach et al. 2018; Kim et al.'s own list is unpublished",
    "shapes": "CHAIR word list (substitute) restricted to the SpuriousShapes classes",
    "flickr30k": "Flickr30k Entities phrase types (annotated phrases, no word list)",
}
PAPER = "Kim, Koepke, Schmid, Akata. Exposing and Mitigating Spurious Correlations for Cross-Modal Retrieval. CVPRW 2023"
# a config name becomes a folder under the export folder: no separators, and not "." / ".." / hidden
_CONFIG_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _is_work_dir(obj: Any) -> bool:
    return isinstance(obj, (str, os.PathLike)) and (Path(obj) / "manifest.json").exists()


def export_parquet(
    dataset_or_dir: Any,
    out_dir: str | Path,
    *,
    config_name: str | None = None,
    split: str | None = None,
    settings: dict[str, Any] | None = None,
    stats: dict[str, Any] | None = None,
    card_template: str | Path | None = None,
    pretty_name: str | None = None,
    default_config: str | None = None,
    allow_empty: bool = False,
) -> Path:
    """Write a decorrelated split as parquet with embedded image bytes, and (re)write the card.

    ``dataset_or_dir``: a generator work directory (with ``manifest.json``; settings and counts are read
    from it), a ``datasets.Dataset`` or a ``datasets.DatasetDict`` (pass ``settings``/``stats`` for the
    card). Image columns that point to files are embedded first (``embed_table_storage``), since
    ``to_parquet`` alone keeps only the paths. Several configs can be exported into one ``out_dir``, also
    at the same time (see :mod:`hf_spurious.data.export_folder`): the new files are staged and swapped in
    only when complete, so a failed export leaves the previous one intact. Zero rows is an error unless
    ``allow_empty``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if _is_work_dir(dataset_or_dir):
        manifest = read_manifest(dataset_or_dir)
        settings = settings or manifest["settings"]
        stats = stats or collect_stats(dataset_or_dir)
        split = split or settings["split"]
        config_name = check_config_name(config_name or split)
        if not allow_empty:
            check_not_empty(int(stats.get("rows", 0)), stats, config_name)
    else:
        parts = _dataset_parts(dataset_or_dir, split)
        config_name = check_config_name(config_name or (settings or {}).get("split") or next(iter(parts)))
        if not allow_empty:
            check_not_empty(sum(len(ds) for ds in parts.values()), stats or {}, config_name)
    staged = staging_dir(out, config_name)
    try:
        if _is_work_dir(dataset_or_dir):
            files = merge_shards(dataset_or_dir, staged, split=split)
            splits = {str(split): [f.name for f in files]}
        else:
            splits = {str(name): [_write_dataset(ds, staged, str(name)).name] for name, ds in parts.items()}
        entry = {
            "splits": splits,
            "settings": settings or {},
            "stats": stats or {},
            "dataset_info": dataset_info(staged, config_name, splits),
        }
        card = {"template": card_template, "pretty_name": pretty_name, "default_config": default_config}
        _commit(out, staged, config_name, entry, card)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out


def check_not_empty(rows: int, stats: dict[str, Any], config_name: str) -> None:
    """Zero rows is not a result: a SynthesisError with the reason (the skip counts) and the way out."""
    if rows > 0:
        return
    skipped = stats.get("skipped") or {}
    images = stats.get("images", "?")
    reason = f"skipped: {skipped}" if skipped else "no source images were read"
    raise SynthesisError(
        f"config {config_name!r} has 0 rows ({images} source images; {reason}); nothing was exported. Check "
        "the source folder, the split and the settings (--max-images, --target-pair, the α values), or pass "
        "--allow-empty (allow_empty=True in Python) to export an empty split on purpose"
    )


def _commit(out: Path, staged: Path, config_name: str, entry: dict[str, Any], card: dict[str, Any]) -> None:
    """Under the folder lock: swap the staged config in, then rewrite provenance.json and the card."""
    with folder_lock(out):
        swap_in(staged, out / config_name)
        provenance = read_provenance(out, rebuild=lambda name: rebuilt_entry(out, name))
        provenance[config_name] = entry
        atomic_write_json(out / "provenance.json", provenance, default=str)  # key order matters to datasets
        text = render_card(provenance, **card)
        atomic_write_text(out / "README.md", text)
        clean_leftovers(out)


def _dataset_parts(dataset: Any, split: str | None) -> dict[str, Any]:
    """``{split name: Dataset}`` of a ``Dataset`` (its split, else ``split`` or "train") or a ``DatasetDict``."""
    import datasets  # lazy: heavy optional dependency

    if isinstance(dataset, datasets.Dataset):
        if split is None:
            split = str(dataset.split) if dataset.split is not None else "train"
        return {split: dataset}
    if isinstance(dataset, datasets.DatasetDict):
        return dict(dataset)
    if isinstance(dataset, (str, os.PathLike)):
        raise FileNotFoundError(
            f"{dataset} is not a counterfactual work directory (no manifest.json); pass the --work-dir of a "
            "finished run (default <out>/.work/<config>), a Dataset or a DatasetDict"
        )
    raise ValueError(
        f"export_parquet takes a generator work dir, a Dataset or a DatasetDict, got {type(dataset).__name__}"
    )


def _write_dataset(ds: Any, target: Path, name: str) -> Path:
    """One split of a ``Dataset`` as ``<target>/<name>-00000-of-00001.parquet``, images embedded."""
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob(f"{name}-*-of-*.parquet"):
        old.unlink()
    path = target / f"{name}-00000-of-00001.parquet"
    embed_images(ds).to_parquet(str(path))
    return path


def embed_images(ds):
    """Return ``ds`` with every Image/Audio file reference replaced by its bytes (the to_parquet pitfall)."""
    from datasets.table import embed_table_storage  # lazy: heavy optional dependency

    return ds.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)


def check_config_name(name: str) -> str:
    """``name`` if it is a safe config name (it becomes a folder of the export); else a ValueError."""
    if not isinstance(name, str) or not _CONFIG_NAME.match(name):
        raise ValueError(
            f"config name {name!r} must match {_CONFIG_NAME.pattern} (letters, digits, '_', '.', '-', not "
            "starting with '.' or '-'; it becomes a folder), e.g. 'test' or 'test_partner'"
        )
    return name


def _read_provenance(out: Path) -> dict[str, Any]:
    path = out / "provenance.json"
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{path} is unreadable ({err}); re-export a config into {out} to rebuild it"
        ) from err


def configs_yaml(provenance: dict[str, Any], default_config: str | None = None) -> list[dict[str, Any]]:
    """The card's ``configs:`` list: one entry per config, its splits' parquet files."""
    names = sorted(provenance)
    default = default_config or ("test" if "test" in names else (names[0] if names else None))
    out = []
    for name in names:
        entry: dict[str, Any] = {
            "config_name": name,
            "data_files": [
                {"split": split, "path": f"{name}/{split}-*.parquet"}
                for split in sorted(provenance[name]["splits"])
            ],
        }
        if name == default:
            entry["default"] = True
        out.append(entry)
    return out


def _provenance_markdown(name: str, info: dict[str, Any]) -> str:
    s, st = info.get("settings", {}), info.get("stats", {})
    source = s.get("source", "?")
    vocab = s.get("vocabulary") or source
    lines = [
        f"### Config `{name}`",
        "",
        "| setting | value |",
        "| --- | --- |",
        f"| source | {source}, split `{s.get('split', '?')}` |",
        f"| word list | {WORD_LISTS.get(vocab, vocab)} |",
        f"| image method | `{s.get('inpainter', '?')}` {json.dumps(s.get('inpainter_options') or {})} |",
        f"| text method | `{s.get('text_method', '?')}`"
        + (f" (captioner `{s.get('captioner')}`)" if s.get("captioner") else "")
        + f", spaCy model `{s.get('spacy_model', '?')}` |",
        f"| noun phrases | {', '.join(st.get('text_backends') or []) or 'n/a'} |",
        f"| α1 / α2 / α3 | {s.get('alpha1')} / {s.get('alpha2')} / {s.get('alpha3')} (box-union pixel areas) |",
        f"| mask dilation | {s.get('dilation', 0)} px; segmentation masks: {s.get('use_segmentation', False)} |",
        f"| target policy | {s.get('target_policy', 'random')}"
        + (f", pairs {s.get('target_pairs')}" if s.get("target_pairs") else "")
        + " |",
        f"| captions per image | {s.get('captions_per_image', 1)} |",
        f"| seed | {s.get('seed')} |",
    ]
    if st:
        lines += [
            "",
            f"Source images: {st.get('images', '?')}; eligible (counterfactual written): {st.get('eligible', '?')}; "
            f"rows: {st.get('rows', '?')}.",
        ]
        skipped = st.get("skipped") or {}
        if skipped:
            lines += ["", "| skipped because | images |", "| --- | --- |"]
            lines += [f"| {reason} | {count} |" for reason, count in sorted(skipped.items())]
        notes = st.get("notes") or {}
        if notes.get("query_without_caption_edit"):
            lines += [
                "",
                f"Queries kept without a caption edit (no caption named the removed class; a query needs "
                f"none): {notes['query_without_caption_edit']}.",
            ]
        if notes.get("later_valid_class"):
            lines += ["", f"Images that used their next valid class: {notes['later_valid_class']}."]
        removed = st.get("removed_class_counts") or {}
        if removed:
            top = sorted(removed.items(), key=lambda kv: (-kv[1], kv[0]))[:15]
            lines += ["", "Most removed classes: " + ", ".join(f"{c} ({n})" for c, n in top) + "."]
    return "\n".join(lines)


_DEFAULT_BODY = """# {pretty_name}

Counterfactual image-caption pairs in the style of {paper}: in each image, every instance of one object
class (plus the classes its boxes almost cover, α2) is removed by inpainting, and the caption is edited so
it no longer names the removed objects. The `test` config is an ODmAP@k query set; `train` is the
fine-tuning set D'. Built with [hf_spurious](https://github.com/hf_spurious) (`hf-spurious counterfactuals`).

```python
from datasets import load_dataset
ds = load_dataset("{repo_id}", "test", split="test")
```

Columns: `image` (PNG), `source_image_id`, `source_split`, `source_caption`, `source_caption_index`,
`caption` (edited), `target_class`, `removed_classes`, `present_classes`, `removed_boxes` (xywh),
`mask` (PNG, 255 = inpainted), `width`, `height`, `image_method`, `text_method`.

## Provenance

<!-- PROVENANCE -->
"""


def render_card(
    provenance: dict[str, Any],
    *,
    template: str | Path | None = None,
    pretty_name: str | None = None,
    default_config: str | None = None,
) -> str:
    """A dataset card: YAML front matter with ``configs:`` and a provenance table per config."""
    sources = {info.get("settings", {}).get("source") for info in provenance.values()} - {None}
    source = next(iter(sources)) if len(sources) == 1 else "coco"
    repo_id = DATASET_REPOS.get(source, DATASET_REPOS["coco"])
    body = Path(template).read_text(encoding="utf-8") if template else _DEFAULT_BODY
    front = re.match(r"\A---\n(.*?\n)---\n", body, flags=re.S)
    meta = (yaml.safe_load(front.group(1)) or {}) if front else {}
    body = body[front.end() :] if front else body
    if default_config is None:  # the template's default config, when it was exported
        marked = [c.get("config_name") for c in meta.get("configs", []) if c.get("default")]
        default_config = next((c for c in marked if c in provenance), None)
    names = {"coco": "COCO", "flickr30k": "Flickr30k", "shapes": "SpuriousShapes"}
    pretty_name = pretty_name or meta.get("pretty_name") or f"{names.get(source, source)} decorrelated"
    header = {
        "pretty_name": pretty_name,
        "license": meta.get("license", "other"),
        "task_categories": meta.get("task_categories", ["image-to-text", "text-to-image"]),
        "tags": meta.get("tags", ["hf-spurious", "counterfactual", "spurious-correlations", "odmap"]),
        "configs": configs_yaml(provenance, default_config),
        "dataset_info": [
            provenance[n]["dataset_info"] for n in sorted(provenance) if "dataset_info" in provenance[n]
        ],
    }
    body = body.replace("{pretty_name}", pretty_name).replace("{paper}", PAPER).replace("{repo_id}", repo_id)
    prov = "\n\n".join(_provenance_markdown(name, provenance[name]) for name in sorted(provenance))
    body = body.replace("<!-- PROVENANCE -->", prov) if "<!-- PROVENANCE -->" in body else body + "\n" + prov
    return (
        "---\n"
        + yaml.safe_dump(header, sort_keys=False, allow_unicode=True)
        + "---\n\n"
        + body.strip()
        + "\n"
    )


def push_decorrelated_to_hub(
    out_dir: str | Path,
    repo_id: str | None = None,
    *,
    token: str | None = None,
    private: bool | None = None,
    source: str | None = None,
    commit_message: str = "Upload decorrelated split (hf_spurious)",
    api: Any = None,
) -> str:
    """Create the dataset repo (if needed) and upload an :func:`export_parquet` folder; returns the repo URL.

    ``repo_id`` defaults to ``DATASET_REPOS[source]`` (source read from the folder's provenance).
    """
    out = Path(out_dir)
    if not (out / "README.md").exists() or not (out / "provenance.json").exists():
        raise FileNotFoundError(
            f"{out} is not an export_parquet folder (README.md / provenance.json missing)"
        )
    if repo_id is None:
        if source is None:
            sources = {i.get("settings", {}).get("source") for i in _read_provenance(out).values()} - {None}
            source = next(iter(sources)) if len(sources) == 1 else None
        if source not in DATASET_REPOS:
            raise ValueError("pass repo_id (or source=coco|flickr30k|shapes) to push_decorrelated_to_hub")
        repo_id = DATASET_REPOS[source]
    if api is None:
        from huggingface_hub import HfApi  # lazy: heavy optional dependency

        api = HfApi(token=token)
    url = api.create_repo(repo_id=repo_id, repo_type="dataset", private=private, exist_ok=True, token=token)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(out),
        repo_type="dataset",
        commit_message=commit_message,
        token=token,
        allow_patterns=["README.md", "provenance.json", "*/*.parquet"],
    )
    return str(url)
