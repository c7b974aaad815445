"""The Hub owner and every Hub id the project publishes under, defined once.

``HF_SPURIOUS_HUB_ORG`` (default ``hf_spurious``) sets the owner of the datasets and of the ``evaluate``
modules alike; ``dataset_scripts/*/build.sh`` and ``hf-spurious install-metrics`` read the ids from here.
"""

from __future__ import annotations

import os

#: Owner of the published datasets and metric modules (environment variable ``HF_SPURIOUS_HUB_ORG``).
HUB_ORG = os.environ.get("HF_SPURIOUS_HUB_ORG", "hf_spurious")
#: Hub namespace of the evaluate modules: ``evaluate.load(f"{METRIC_NAMESPACE}/odmap")`` once pushed.
METRIC_NAMESPACE = HUB_ORG
#: The evaluate modules shipped in the repository's top-level ``metrics/`` folder.
METRIC_MODULES: tuple[str, ...] = ("odmap", "aiou", "group_accuracy", "retrieval_recall")
#: The decorrelated datasets, by source.
DATASET_REPOS = {
    "coco": f"{HUB_ORG}/coco_decorrelated",
    "flickr30k": f"{HUB_ORG}/flickr30k_decorrelated",
    "shapes": f"{HUB_ORG}/shapes_decorrelated",
}


def dataset_repo_id(source: str) -> str:
    """The Hub dataset id of a source's decorrelated splits (``HF_SPURIOUS_HUB_ORG`` sets the owner)."""
    try:
        return DATASET_REPOS[source]
    except KeyError:
        raise ValueError(f"no dataset repo for source {source!r}; known: {sorted(DATASET_REPOS)}") from None


def metric_id(name: str) -> str:
    """The Hub id of an evaluate module, e.g. ``"hf_spurious/odmap"``."""
    return f"{METRIC_NAMESPACE}/{name}"
