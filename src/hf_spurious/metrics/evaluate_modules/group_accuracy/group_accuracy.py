# Copyright 2026 The hf_spurious authors. Licensed under the Apache License, Version 2.0.
"""Group accuracy: per-group, average, adjusted-average and worst-group accuracy."""

import evaluate

from hf_spurious.metrics import WATERBIRDS_GROUP_NAMES, WATERBIRDS_TRAIN_GROUP_COUNTS, group_accuracies
from hf_spurious.metrics.evaluate_support import CITATIONS, CheckedInputs, metric_info

_CITATION = CITATIONS["yang2023"] + CITATIONS["sagawa2020"]

_DESCRIPTION = """\
Accuracy inside each group of a spurious-correlation benchmark (e.g. Waterbirds, group = 2 * y + place),
the average accuracy over all examples, the worst-group accuracy (minimum over groups with at least one
example) and the adjusted average accuracy: group accuracies weighted by the training-set group sizes
(WILDS Waterbirds convention). All values are percent. With the "waterbirds" config the training counts
(3498, 184, 56, 1057) and group names are filled in.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): true class ids.
    groups (`list` of `int`): group id of each example, 0..G-1.
    train_group_counts (`list` of `int`, optional): training size of each group, weights of the adjusted
        average (default: the "waterbirds" config's counts, else an unweighted mean over groups).
    group_names (`list` of `str`, optional): names of groups 0..G-1 for the "group_accuracy" keys.
Returns:
    `average_accuracy`, `adjusted_average_accuracy`, `worst_group_accuracy` (`float`, percent),
    `worst_group` (name or id), `worst_group_id` (`int`), `group_accuracy` and `group_count` (`dict`).
Examples:
    >>> metric = evaluate.load("group_accuracy", config_name="waterbirds")
    >>> results = metric.compute(predictions=[0, 1, 1, 1], references=[0, 0, 1, 1], groups=[0, 1, 2, 3])
    >>> print(results["worst_group"], results["worst_group_accuracy"], round(results["adjusted_average_accuracy"], 2))
    landbird/water 0.0 96.16
"""


_FEATURES = {"predictions": "int64", "references": "int64", "groups": "int64"}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GroupAccuracy(CheckedInputs, evaluate.Metric):
    """Group accuracies for spurious-correlation benchmarks."""

    input_features = _FEATURES  # raw inputs checked before evaluate casts them

    def _info(self):
        return metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, _FEATURES)

    def _compute(self, predictions, references, groups, train_group_counts=None, group_names=None):
        if self.config_name == "waterbirds":
            train_group_counts = (
                WATERBIRDS_TRAIN_GROUP_COUNTS if train_group_counts is None else train_group_counts
            )
            group_names = WATERBIRDS_GROUP_NAMES if group_names is None else group_names
        return group_accuracies(
            predictions,
            references,
            groups,
            train_group_counts=train_group_counts,
            group_names=group_names,
        )
