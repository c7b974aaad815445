# Copyright 2026 The hf_spurious authors. Licensed under the Apache License, Version 2.0.
"""Retrieval recall@K: percent of queries with a relevant item among their top K."""

import evaluate

from hf_spurious.metrics import retrieval_recall
from hf_spurious.metrics.evaluate_support import CITATIONS, CheckedInputs, metric_info

_CITATION = CITATIONS["karpathy2015"]

_DESCRIPTION = """\
Recall@K for cross-modal retrieval, the standard 5K COCO / 1K Flickr30k protocol: a query is a hit when
any of its relevant items is among its top K retrieved items, and R@K is the percent of queries with a
hit. For image-to-text retrieval, pass the ranked caption ids per image and the ids of the image's
ground-truth captions; for text-to-image, the ranked image ids per caption and the caption's image id.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `int`): per query, retrieved item ids ranked best first (distinct,
        non-negative, at least max(k) of them).
    references (`list` of `list` of `int`): per query, the ids of its relevant items.
    k (`int` or `list` of `int`, defaults to `[1, 5, 10]`): cut-offs.
Returns:
    `recall@k` (`float`, percent) for each k.
Examples:
    >>> recall = evaluate.load("retrieval_recall")
    >>> results = recall.compute(predictions=[[4, 2, 0], [1, 3, 5]], references=[[0, 1], [7]], k=[1, 3])
    >>> print(results)
    {'recall@1': 0.0, 'recall@3': 50.0}
"""


_FEATURES = {"predictions": ["int64"], "references": ["int64"]}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RetrievalRecall(CheckedInputs, evaluate.Metric):
    """Recall@K (hit rate) over ranked id lists."""

    input_features = _FEATURES  # raw inputs checked before evaluate casts them

    def _info(self):
        return metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, _FEATURES)

    def _compute(self, predictions, references, k=(1, 5, 10)):
        return retrieval_recall(predictions, references, k=k)
