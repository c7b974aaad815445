"""What the ``evaluate`` modules in the repository's ``metrics/`` folder share, defined once.

Each module (``metrics/odmap/odmap.py`` and its siblings) is an ``evaluate.Metric`` subclass whose ``_info``
returns :func:`metric_info` and whose ``_compute`` calls a core metric of :mod:`hf_spurious.metrics`.
Features are spelled compactly: a dtype string is a ``datasets.Value``, a one-item list a
``datasets.List`` of its item, a dict a struct::

    metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION,
                {"predictions": ["string"], "references": {"removed_classes": ["string"]}})

Inputs are checked before ``evaluate`` casts them (the cast would truncate a float 0.9 to class 0 and
turn a missing dict key into a bare ``KeyError``): a module lists :class:`CheckedInputs` first among its
bases and sets ``input_features`` to the same compact specs, so ``compute``, ``add_batch`` and ``add``
raise a ``ValueError`` naming the field and the item (:func:`hf_spurious.metrics.checks.check_feature`,
the check the core metrics use too)::

    class GroupAccuracy(CheckedInputs, evaluate.Metric):
        input_features = _FEATURES

``evaluate`` and ``datasets`` are imported only when a module asks for its info.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hf_spurious.metrics.checks import check_feature, check_inputs

__all__ = ["CITATIONS", "CheckedInputs", "feature", "metric_info"]

#: BibTeX of the papers the modules implement or follow, by key.
CITATIONS: dict[str, str] = {
    "kim2023": """\
@inproceedings{kim2023exposing,
  title     = {Exposing and Mitigating Spurious Correlations for Cross-Modal Retrieval},
  author    = {Kim, Jae Myung and Koepke, A. Sophia and Schmid, Cordelia and Akata, Zeynep},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR) Workshops},
  year      = {2023}
}
""",
    "yang2023": """\
@inproceedings{yang2023mitigating,
  title     = {Mitigating Spurious Correlations in Multi-modal Models during Fine-tuning},
  author    = {Yang, Yu and Nushi, Besmira and Palangi, Hamid and Mirzasoleiman, Baharan},
  booktitle = {Proceedings of the 40th International Conference on Machine Learning (ICML)},
  year      = {2023}
}
""",
    "sagawa2020": """\
@inproceedings{sagawa2020distributionally,
  title     = {Distributionally Robust Neural Networks for Group Shifts: On the Importance of Regularization for Worst-Case Generalization},
  author    = {Sagawa, Shiori and Koh, Pang Wei and Hashimoto, Tatsunori B. and Liang, Percy},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2020}
}
""",
    "karpathy2015": """\
@inproceedings{karpathy2015deep,
  title     = {Deep Visual-Semantic Alignments for Generating Image Descriptions},
  author    = {Karpathy, Andrej and Fei-Fei, Li},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2015}
}
""",
}

FeatureSpec = str | list[Any] | Mapping[str, Any]


def feature(spec: FeatureSpec) -> Any:
    """The ``datasets`` feature for a compact spec (``"int64"``, ``["string"]``, ``{"a": "float32"}``)."""
    import datasets  # lazy: heavy optional dependency (only the evaluate modules need it)

    if isinstance(spec, str):
        return datasets.Value(spec)
    if isinstance(spec, list):
        if len(spec) != 1:
            raise ValueError(f"a list feature spec holds exactly one item spec; got {spec!r}")
        return datasets.List(feature(spec[0]))
    if isinstance(spec, Mapping):
        return {name: feature(inner) for name, inner in spec.items()}
    raise TypeError(f"feature spec must be a dtype string, a one-item list or a dict; got {spec!r}")


def metric_info(
    description: str, citation: str, inputs_description: str, features: Mapping[str, FeatureSpec]
) -> Any:
    """``evaluate.MetricInfo`` of a module: its texts and its input ``features`` (compact specs)."""
    import datasets  # lazy: heavy optional dependency (only the evaluate modules need it)
    import evaluate  # lazy: heavy optional dependency (only the evaluate modules need it)

    return evaluate.MetricInfo(
        description=description,
        citation=citation,
        inputs_description=inputs_description,
        features=datasets.Features({name: feature(spec) for name, spec in features.items()}),
    )


class CheckedInputs:
    """Mixin (first base, before ``evaluate.Metric``): checks raw inputs against ``input_features``."""

    input_features: Mapping[str, FeatureSpec] = {}

    def add_batch(self, *, predictions: Any = None, references: Any = None, **kwargs: Any) -> Any:
        """Check a batch of inputs (one value per example) and add it; a wrong type names the field."""
        check_inputs({"predictions": predictions, "references": references, **kwargs}, self.input_features)
        return super().add_batch(predictions=predictions, references=references, **kwargs)  # type: ignore[misc]

    def add(self, *, prediction: Any = None, reference: Any = None, **kwargs: Any) -> Any:
        """Check one example's inputs and add it; a wrong type names the field."""
        example = {"predictions": prediction, "references": reference, **kwargs}
        for column, value in example.items():
            if value is not None and column in self.input_features:
                name = {"predictions": "prediction", "references": "reference"}.get(column, column)
                check_feature(value, self.input_features[column], name)
        return super().add(prediction=prediction, reference=reference, **kwargs)  # type: ignore[misc]
