# Copyright 2026 The hf_spurious authors. Licensed under the Apache License, Version 2.0.
"""AIoU: how much better the true class's explanation map covers the object than any other class's."""

import evaluate
import numpy as np

from hf_spurious.metrics import aiou_batch, aiou_summary
from hf_spurious.metrics.evaluate_support import CITATIONS, CheckedInputs, metric_info

_CITATION = CITATIONS["yang2023"]

_DESCRIPTION = """\
AIoU (Yang et al., 2023, Eqs. 8-9). For an image with true class y and object region B (values in [0, 1]),
and one explanation map M_c per class (e.g. GradCAM, min-max normalised to [0, 1], same size as B):
soft IoU(M, B) = sum(min(M, B)) / sum(max(M, B)), and
AIoU = IoU(M_y, B) / (IoU(M_y, B) + max_{c != y} IoU(M_c, B)).
0.5 means the true class's map covers the object no better than the best other class's map; when every
map misses the object AIoU is 0.5. The reported `aiou` is the mean over images (a fraction in [0, 1]).
With `groups`, the module also reports per-group AIoU and the worst-group AIoU (the mean inside
`worst_group`, e.g. the worst accuracy group, or else the group with the lowest mean AIoU).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of (C, H, W) nested lists of `float`): one map per class, values in [0, 1].
    references (`list` of `int`): the true class id of each image.
    regions (`list` of (H, W) nested lists of `float`): the true object's region, values in [0, 1].
    groups (`list` of `int`, optional): group id of each image, for per-group and worst-group AIoU.
    worst_group (`int`, optional): the group whose mean AIoU is reported as worst-group AIoU.
    return_per_image (`bool`, defaults to `False`): also return the per-image values ("aiou_per_image").
Returns:
    `aiou` (`float` in [0, 1]); with `groups` also `worst_group_aiou`, `worst_group`, `group_aiou`.
Examples:
    >>> aiou = evaluate.load("aiou")
    >>> maps = [[[[1.0, 0.0]], [[0.0, 1.0]]]]   # 1 image, 2 classes, 1 x 2 maps
    >>> results = aiou.compute(predictions=maps, references=[0], regions=[[[1.0, 0.0]]])
    >>> print(results["aiou"])
    1.0
"""


_FEATURES = {"predictions": [[["float32"]]], "references": "int64", "regions": [["float32"]]}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Aiou(CheckedInputs, evaluate.Metric):
    """AIoU of per-class explanation maps against the true object's region."""

    input_features = _FEATURES  # raw inputs checked before evaluate casts them

    def _info(self):
        return metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, _FEATURES)

    def _compute(
        self, predictions, references, regions, groups=None, worst_group=None, return_per_image=False
    ):
        values = aiou_batch(
            np.asarray(predictions, dtype=np.float32),
            np.asarray(regions, dtype=np.float32),
            np.asarray(references, dtype=np.int64),
        )
        out = {"aiou": float(values.mean()) if values.size else 0.0}
        if groups is not None:
            summary = aiou_summary(values, groups, worst_group=worst_group)
            out.update({key: summary[key] for key in ("worst_group_aiou", "worst_group", "group_aiou")})
        if return_per_image:
            out["aiou_per_image"] = values.tolist()
        return out
