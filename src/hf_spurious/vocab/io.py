"""Load vocabularies from the packaged data files or from a user's YAML/JSON file.

Accepted file shapes (YAML or JSON):

* plain: a mapping ``class -> [words...]``;
* full: ``{"name": ..., "classes": {class: [words...]}, "default_classes": [...],
  "rules": {"phrases": {phrase: class | null}, "modifiers": [{"words": [...], "classes": [...]}],
  "verbs": {"words": [...], "before": [...]}},
  "metadata": {...}}`` (every key but ``classes`` optional; other top-level keys such as ``description``
  or ``source`` are kept as metadata).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from hf_spurious.vocab.core import ClassVocabulary, ModifierRule, VerbRule, VocabularyError

BUILTIN = ("coco", "flickr30k", "shapes")
_STRUCT_KEYS = {"name", "classes", "default_classes", "rules", "metadata"}


def available_vocabularies() -> tuple[str, ...]:
    """Names accepted by :func:`load_vocabulary`."""
    return BUILTIN


def load_vocabulary(
    name_or_path: str | Path | ClassVocabulary, *, classes: Iterable[str] | None = None
) -> ClassVocabulary:
    """A vocabulary by built-in name ("coco", "flickr30k", "shapes") or from a YAML/JSON file.

    ``classes`` selects the active classes (default: the file's ``default_classes``, else all), e.g.
    ``load_vocabulary("flickr30k", classes=["people", "animals"])``. A :class:`ClassVocabulary` passes
    through (re-selected if ``classes`` is given).
    """
    if isinstance(name_or_path, ClassVocabulary):
        if classes is None:
            return name_or_path
        return vocabulary_from_dict(name_or_path.to_dict(), source=name_or_path.name, classes=classes)
    key = str(name_or_path)
    sel = None if classes is None else tuple(classes)
    if key in BUILTIN:
        return _builtin(key, sel)
    path = Path(key).expanduser()
    if not path.is_file():
        raise VocabularyError(
            f"vocabulary {key!r} is neither a built-in name {list(BUILTIN)} nor an existing YAML/JSON file"
        )
    return vocabulary_from_dict(_read(path), source=str(path), classes=sel, default_name=path.stem)


@lru_cache(maxsize=16)
def _builtin(name: str, classes: tuple[str, ...] | None) -> ClassVocabulary:
    text = resources.files("hf_spurious.vocab").joinpath("data", f"{name}.yaml").read_text(encoding="utf-8")
    return vocabulary_from_dict(
        yaml.safe_load(text), source=f"built-in {name}", classes=classes, default_name=name
    )


def _read(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise VocabularyError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {err}") from err


def _word_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list) or not value:
        raise VocabularyError(f"{where}: expected a non-empty list of words, got {value!r}")
    bad = [w for w in value if not isinstance(w, str) or not w.strip()]
    if bad:
        raise VocabularyError(f"{where}: every word must be a non-empty string, got {bad!r}")
    return value


def vocabulary_from_dict(
    data: Any,
    *,
    source: str = "<dict>",
    classes: Iterable[str] | None = None,
    default_name: str = "custom",
) -> ClassVocabulary:
    """Build a :class:`ClassVocabulary` from a parsed file (either shape described in the module doc)."""
    if not isinstance(data, Mapping) or not data:
        raise VocabularyError(
            f"{source}: a vocabulary file must be a mapping 'class: [words]' (or have a 'classes' mapping); "
            f"got {type(data).__name__}"
        )
    structured = isinstance(data.get("classes"), Mapping)
    if not structured:
        words = {str(c): _word_list(ws, f"{source}: class {c!r}") for c, ws in data.items()}
        try:
            return ClassVocabulary(default_name, words, classes=classes, metadata={"source": source})
        except VocabularyError as err:
            raise VocabularyError(f"{source}: {err}") from None
    words = {str(c): _word_list(ws, f"{source}: class {c!r}") for c, ws in data["classes"].items()}
    rules = data.get("rules") or {}
    if not isinstance(rules, Mapping):
        raise VocabularyError(f"{source}: 'rules' must be a mapping with 'phrases' and/or 'modifiers'")
    phrases = rules.get("phrases") or {}
    if not isinstance(phrases, Mapping) or any(
        not isinstance(k, str) or not (v is None or isinstance(v, str)) for k, v in phrases.items()
    ):
        raise VocabularyError(f"{source}: rules.phrases must map phrase strings to a class name or null")
    modifiers = []
    for i, rule in enumerate(rules.get("modifiers") or []):
        if not isinstance(rule, Mapping) or "words" not in rule or "classes" not in rule:
            raise VocabularyError(f"{source}: rules.modifiers[{i}] needs 'words' and 'classes' lists")
        modifiers.append(
            ModifierRule(
                tuple(_word_list(rule["words"], f"{source}: rules.modifiers[{i}].words")),
                tuple(_word_list(rule["classes"], f"{source}: rules.modifiers[{i}].classes")),
            )
        )
    verbs = _verb_rule(rules.get("verbs"), source)
    if classes is None and data.get("default_classes") is not None:
        classes = _word_list(data["default_classes"], f"{source}: default_classes")
    metadata = dict(data.get("metadata") or {})
    metadata.update({k: v for k, v in data.items() if k not in _STRUCT_KEYS})
    metadata.setdefault("source", source)
    try:
        return ClassVocabulary(
            str(data.get("name") or default_name),
            words,
            phrases=phrases,
            modifiers=modifiers,
            verbs=verbs,
            classes=classes,
            metadata=metadata,
        )
    except VocabularyError as err:
        raise VocabularyError(f"{source}: {err}") from None


def _verb_rule(value: Any, source: str) -> VerbRule | None:
    """``rules.verbs``: ``{"words": [...], "before": [...]}`` (``before`` optional) or a plain word list."""
    if value is None:
        return None
    if isinstance(value, list):
        return VerbRule(tuple(_word_list(value, f"{source}: rules.verbs")))
    if not isinstance(value, Mapping) or "words" not in value:
        raise VocabularyError(f"{source}: rules.verbs must be a word list or a mapping with a 'words' list")
    words = tuple(_word_list(value["words"], f"{source}: rules.verbs.words"))
    if value.get("before") is None:
        return VerbRule(words)
    return VerbRule(words, tuple(_word_list(value["before"], f"{source}: rules.verbs.before")))
