"""Bad inputs of the metrics (issue 13 rule 7): the core functions and the evaluate modules' input check.

The modules' check (``CheckedInputs``) is exercised here on a stand-in base class, so no ``evaluate``
import is needed; tests/test_evaluate_modules.py runs the same kinds through the real modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hf_spurious.metrics import (
    accuracy_discrepancy,
    aiou_batch,
    aiou_summary,
    group_accuracies,
    recall_at_k,
    retrieval_recall,
)
from hf_spurious.metrics.evaluate_support import CheckedInputs

from ._cases import Case, cases, check

MAPS = np.zeros((1, 2, 2, 2), np.float32)
MAPS[0, 0, 0, 0] = 1.0
REGION = np.zeros((1, 2, 2), np.float32)
REGION[0, 0, 0] = 1.0


class _Stored:
    """Stands in for ``evaluate.Metric``: records what reached it (what evaluate would cast and store)."""

    def add_batch(self, *, predictions: Any = None, references: Any = None, **kwargs: Any) -> Any:
        return {"predictions": predictions, "references": references, **kwargs}

    def add(self, *, prediction: Any = None, reference: Any = None, **kwargs: Any) -> Any:
        return {"predictions": prediction, "references": reference, **kwargs}


class GroupModule(CheckedInputs, _Stored):
    input_features = {"predictions": "int64", "references": "int64", "groups": "int64"}


class AiouModule(CheckedInputs, _Stored):
    input_features = {"predictions": [[["float32"]]], "references": "int64", "regions": [["float32"]]}


class RecallModule(CheckedInputs, _Stored):
    input_features = {"predictions": ["int64"], "references": ["int64"]}


class OdmapModule(CheckedInputs, _Stored):
    input_features = {
        "predictions": ["string"],
        "references": {"removed_classes": ["string"], "present_classes": ["string"]},
    }


def ok(result: Any) -> None:
    assert result is not None


WHOLE = "whole-number"
CASES = [
    # --- the evaluate modules' input check (before evaluate's cast)
    Case(
        "module group predictions floats",
        lambda t: GroupModule().add_batch(predictions=[0.9, 0.2], references=[0, 1], groups=[0, 1]),
        says=("`predictions[0]`", "0.9", WHOLE),
    ),
    Case(
        "module group float groups",
        lambda t: GroupModule().add_batch(predictions=[0, 1], references=[0, 1], groups=[0.0, 2.5]),
        says=("`groups[1]`", "2.5"),
    ),
    Case(
        "module group NaN references",
        lambda t: GroupModule().add_batch(predictions=[0, 1], references=[0, float("nan")], groups=[0, 1]),
        says=("`references[1]`", "NaN"),
    ),
    Case(
        "module group string predictions",
        lambda t: GroupModule().add_batch(predictions=["cat"], references=[0], groups=[0]),
        says=("`predictions[0]`", "'cat'", "integer id"),
    ),
    Case(
        "module group numpy float predictions",
        lambda t: GroupModule().add_batch(predictions=np.array([0.5, 1.0]), references=[0, 1], groups=[0, 1]),
        says=("`predictions[0]`", "0.5"),
    ),
    Case(
        "module group single add float",
        lambda t: GroupModule().add(prediction=0.7, reference=1, groups=0),
        says=("`prediction`", "0.7"),
    ),
    Case(
        "module group integral floats accepted",
        lambda t: GroupModule().add_batch(predictions=[1.0, 0.0], references=[1, 0], groups=[0, 1]),
        raises=None,
        expect=ok,
    ),
    Case(
        "module aiou float references",
        lambda t: AiouModule().add_batch(
            predictions=MAPS.tolist(), references=[0.7], regions=REGION.tolist()
        ),
        says=("`references[0]`", "0.7"),
    ),
    Case(
        "module aiou text in a map",
        lambda t: AiouModule().add_batch(predictions=[[[["a"]]]], references=[0], regions=REGION.tolist()),
        says=("`predictions[0][0][0][0]`", "a number"),
    ),
    Case(
        "module aiou region not nested",
        lambda t: AiouModule().add_batch(predictions=MAPS.tolist(), references=[0], regions=[1.0]),
        says=("`regions[0]`", "must be a list"),
    ),
    Case(
        "module recall float ids",
        lambda t: RecallModule().add_batch(predictions=[[3, 1.5]], references=[[1]]),
        says=("`predictions[0][1]`", "1.5"),
    ),
    Case(
        "module recall reference int not list",
        lambda t: RecallModule().add_batch(predictions=[[3, 1]], references=[1]),
        says=("`references[0]`", "must be a list"),
    ),
    Case(
        "module odmap missing present_classes",
        lambda t: OdmapModule().add_batch(predictions=[["a dog"]], references=[{"removed_classes": ["dog"]}]),
        says=("`references[0]`", "present_classes", "each item needs"),
    ),
    Case(
        "module odmap misspelt key",
        lambda t: OdmapModule().add_batch(
            predictions=[["a dog"]], references=[{"removed_classes": [], "present_class": []}]
        ),
        says=("`references[0]`", "present_classes", "unknown keys ['present_class']"),
    ),
    Case(
        "module odmap reference is a string",
        lambda t: OdmapModule().add_batch(predictions=[["a dog"]], references=["dog"]),
        says=("`references[0]`", "must be a dict"),
    ),
    Case(
        "module odmap caption not a string",
        lambda t: OdmapModule().add_batch(
            predictions=[["a dog", 7]], references=[{"removed_classes": [], "present_classes": []}]
        ),
        says=("`predictions[0][1]`", "a string"),
    ),
    Case(
        "module odmap classes string not list",
        lambda t: OdmapModule().add_batch(
            predictions=[["a dog"]], references=[{"removed_classes": "dog", "present_classes": []}]
        ),
        says=("`references[0]['removed_classes']`", "must be a list"),
    ),
    # --- the core functions (what the modules call)
    Case(
        "group_accuracies float predictions",
        lambda t: group_accuracies([0.9, 0.2], [0, 1], [0, 1]),
        says=("`predictions[0]`", "0.9", WHOLE),
    ),
    Case(
        "group_accuracies float groups",
        lambda t: group_accuracies([0, 1], [0, 1], [0, 1.5]),
        says=("`groups[1]`", "1.5"),
    ),
    Case(
        "group_accuracies negative group",
        lambda t: group_accuracies([0, 1], [0, 1], [0, -1]),
        says=("`groups`", "non-negative"),
    ),
    Case(
        "group_accuracies length mismatch",
        lambda t: group_accuracies([0, 1], [0], [0, 1]),
        says=("`labels`", "`predictions`", "must match"),
    ),
    Case("group_accuracies empty", lambda t: group_accuracies([], [], []), says=("`predictions` is empty",)),
    Case(
        "group_accuracies counts missing a group",
        lambda t: group_accuracies([0, 1], [0, 1], [0, 1], train_group_counts={0: 5}),
        says=("`train_group_counts`", "group(s) [1]"),
    ),
    Case("aiou float targets", lambda t: aiou_batch(MAPS, REGION, [0.7]), says=("`targets[0]`", "0.7")),
    Case(
        "aiou target beyond classes",
        lambda t: aiou_batch(MAPS, REGION, [5]),
        says=("`targets`", "class 5", "2 classes"),
    ),
    Case(
        "aiou empty region",
        lambda t: aiou_batch(MAPS, np.zeros_like(REGION), [0]),
        says=("`regions`[0] is empty",),
    ),
    Case(
        "aiou NaN map", lambda t: aiou_batch(np.full_like(MAPS, np.nan), REGION, [0]), says=("`maps`", "NaN")
    ),
    Case(
        "aiou_summary float groups", lambda t: aiou_summary([0.5, 0.7], [0, 0.5]), says=("`groups[1]`", "0.5")
    ),
    Case(
        "retrieval_recall float relevant ids",
        lambda t: retrieval_recall([[3, 1]], [[1.5]], k=1),
        says=("`relevant[0][0]`", "1.5"),
    ),
    Case(
        "retrieval_recall text ids",
        lambda t: retrieval_recall([["a", "b"]], [[1]], k=1),
        says=("`ranked[0][0]`", "'a'"),
    ),
    Case("recall_at_k k zero", lambda t: recall_at_k(np.array([[0, 1]]), [0], k=0), says=("`k`", "positive")),
    Case(
        "accuracy_discrepancy non-boolean",
        lambda t: accuracy_discrepancy([0, 2], [0, 1]),
        says=("`correct`", "boolean"),
    ),
]


@cases(CASES)
def test_metric_bad_input(case, tmp_path):
    check(case, tmp_path)
