# Copyright 2026 The hf_spurious authors. Licensed under the Apache License, Version 2.0.
"""ODmAP@k: object-decorrelation mean average precision for image-to-text retrieval."""

import evaluate

from hf_spurious.metrics import count_relevant, odmap_at_k, removed_mention_rate_at_k
from hf_spurious.metrics.evaluate_support import CITATIONS, CheckedInputs, metric_info
from hf_spurious.vocab import load_vocabulary

_CITATION = CITATIONS["kim2023"]

_DESCRIPTION = """\
ODmAP@k (Kim et al., 2023) measures how often an image-to-text retrieval model still "sees" objects that
were removed from the query image. Each query is a counterfactual image from which some classes were
removed (R) while others remain (P). A retrieved caption is relevant when it mentions no removed class
and at least one present class ("any" rule; "all" is an option). For the top-k captions,
AP@k = (1/k) * sum_i rel(i) * Precision@i, and ODmAP@k is the mean over queries, in percent.
The module also reports the removed-mention rate@k: the percent of queries whose top-k captions name a
removed class. Class mentions are found with the vocabulary named by the config ("coco", "flickr30k",
"shapes"; default "coco") by the lexical matcher, the same matching as `hf-spurious evaluate` by default
(for "flickr30k": the project's word list, not the Flickr30k Entities annotations). The COCO vocabulary uses the CHAIR synonym list as a documented substitute for
the authors' unpublished word list. Protocol: docs/protocol.md of the hf_spurious repository.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `str`): for each query image, the retrieved caption texts ranked best
        first; each list holds at least max(k) captions (extra ones are ignored).
    references (`list` of `dict`): for each query, {"removed_classes": [...], "present_classes": [...]},
        class names of the vocabulary.
    k (`int` or `list` of `int`, defaults to `[1, 5, 10]`): cut-offs.
    present_rule (`str`, defaults to `"any"`): "any" (at least one present class mentioned) or "all".
    normalizer (`str`, defaults to `"k"`): "k" (paper) or "min_k_r" (divide by min(k, R_q), R_q = relevant
        captions in the whole gallery; needs `gallery` or `relevant_counts`).
    vocabulary (`str` or object, optional): overrides the config: a vocabulary name or path, or any object
        with `.classes` and `.classes_in(text)`.
    gallery (`list` of `str`, optional): every gallery caption, to count R_q for "min_k_r".
    relevant_counts (`list` of `int`, optional): R_q per query, for "min_k_r".
    return_per_query (`bool`, defaults to `False`): also return per-query AP lists ("ap@k").
Returns:
    `odmap@k` (`float`, percent) and `removed_mention_rate@k` (`float`, percent) for each k.
Examples:
    >>> odmap = evaluate.load("odmap", config_name="coco")
    >>> results = odmap.compute(
    ...     predictions=[["A man walking on the beach.", "A dog on a beach.", "A man and his dog."]],
    ...     references=[{"removed_classes": ["dog"], "present_classes": ["person"]}],
    ...     k=[1, 3],
    ... )
    >>> print(round(results["odmap@3"], 2), results["removed_mention_rate@1"])
    33.33 0.0
"""

_DEFAULT_VOCABULARY = "coco"


_FEATURES = {
    "predictions": ["string"],
    "references": {"removed_classes": ["string"], "present_classes": ["string"]},
}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Odmap(CheckedInputs, evaluate.Metric):
    """ODmAP@k over ranked caption texts, with phrase matching by a class vocabulary."""

    input_features = _FEATURES  # raw inputs checked before evaluate casts them

    def _info(self):
        return metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, _FEATURES)

    def _vocabulary(self, vocabulary):
        if vocabulary is not None and hasattr(vocabulary, "classes_in"):
            return vocabulary
        name = vocabulary
        if name is None:
            name = _DEFAULT_VOCABULARY if self.config_name in (None, "default") else self.config_name
        return load_vocabulary(name)

    def _compute(
        self,
        predictions,
        references,
        k=(1, 5, 10),
        present_rule="any",
        normalizer="k",
        vocabulary=None,
        gallery=None,
        relevant_counts=None,
        return_per_query=False,
    ):
        vocab = self._vocabulary(vocabulary)
        ks = [k] if isinstance(k, int) else list(k)
        depth = max(ks) if ks else 0
        removed = [ref["removed_classes"] or [] for ref in references]
        present = [ref["present_classes"] or [] for ref in references]
        rows = _top_rows(predictions, depth)
        mentions = {}
        for captions in rows:
            for text in captions:
                if text not in mentions:
                    mentions[text] = vocab.classes_in(text)
        gallery_sets = [mentions[text] for captions in rows for text in captions]
        retrieved = [[i * depth + j for j in range(depth)] for i in range(len(rows))]
        class_names = list(vocab.classes)
        if normalizer == "min_k_r" and relevant_counts is None:
            if gallery is None:
                raise ValueError(
                    "normalizer='min_k_r' needs `gallery` (all gallery captions) or `relevant_counts`."
                )
            relevant_counts = count_relevant(
                [vocab.classes_in(text) for text in gallery],
                removed,
                present,
                present_rule=present_rule,
                class_names=class_names,
            )
        results = odmap_at_k(
            retrieved,
            gallery_sets,
            removed,
            present,
            k=ks,
            present_rule=present_rule,
            normalizer=normalizer,
            class_names=class_names,
            relevant_counts=relevant_counts,
            return_per_query=return_per_query,
        )
        mention = removed_mention_rate_at_k(retrieved, gallery_sets, removed, k=ks, class_names=class_names)
        out = {key: value for key, value in results.items() if key.startswith("odmap@")}
        out.update(mention)
        if return_per_query:
            out.update({key: results[key].tolist() for key in results if key.startswith("ap@")})
        return out


def _top_rows(predictions, depth):
    """The first ``depth`` ranked captions of each query (an error names a query with fewer)."""
    rows = []
    for i, captions in enumerate(predictions):
        if len(captions) < depth:
            raise ValueError(
                f"predictions[{i}] holds {len(captions)} captions but k={depth} was asked; "
                "pass at least max(k) ranked captions per query."
            )
        rows.append(list(captions[:depth]))
    return rows
