"""Input checks shared by the metrics: each raises a ``ValueError`` that names the argument and the fix."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def to_numpy(x: Any, name: str) -> np.ndarray:
    """Return ``x`` as a numpy array (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"`{name}` must be a rectangular array; got a ragged sequence ({err}).") from None


def check_ks(k: int | Iterable[int]) -> tuple[int, ...]:
    """Normalise ``k`` to a tuple of distinct positive ints, keeping the caller's order."""
    ks = (k,) if isinstance(k, (int, np.integer)) else tuple(k)
    if not ks:
        raise ValueError("`k` is empty; pass a positive int or a sequence of them, e.g. k=(1, 5, 10).")
    out: list[int] = []
    for value in ks:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"`k` must hold ints; got {value!r} ({type(value).__name__}).")
        if value <= 0:
            raise ValueError(f"`k` must be positive; got k={int(value)}. Use k >= 1.")
        if int(value) not in out:
            out.append(int(value))
    return tuple(out)


def check_ranked(ranked: Any, name: str, num_items: int | None, max_k: int) -> np.ndarray:
    """Validate a (Q, K) matrix of ranked item indices: ints, K >= max_k, in range, no repeats in a row."""
    arr = to_numpy(ranked, name)
    if arr.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D (queries, K) array of ranked indices; got shape {arr.shape}."
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
            raise ValueError(f"`{name}` contains NaN; it must hold integer item indices.")
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"`{name}` must hold integer item indices; got dtype {arr.dtype}.")
    arr = arr.astype(np.int64, copy=False)
    if arr.shape[1] < max_k:
        raise ValueError(
            f"`{name}` has only K={arr.shape[1]} ranked items per query but k={max_k} was asked; "
            f"retrieve at least {max_k} items per query or lower k."
        )
    arr = arr[:, :max_k]
    if arr.size:
        if arr.min() < 0 or (num_items is not None and arr.max() >= num_items):
            raise ValueError(
                f"`{name}` holds indices outside [0, {num_items}); got min {arr.min()}, max {arr.max()}."
            )
        srt = np.sort(arr, axis=1)
        dup_rows = np.nonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))[0]
        if dup_rows.size:
            raise ValueError(
                f"`{name}` row {int(dup_rows[0])} ranks the same item twice in its top {max_k}; "
                "each query's ranking must list distinct items."
            )
    return arr


def check_ndim(arr: np.ndarray, ndim: int, name: str, axes: str) -> None:
    """Raise if ``arr`` does not have ``ndim`` axes (``axes`` names them, e.g. ``"images, H, W"``)."""
    if arr.ndim != ndim:
        raise ValueError(f"`{name}` must be ({axes}); got shape {arr.shape}.")


def check_length(values: Sequence[Any] | np.ndarray, expected: int, name: str, other: str) -> None:
    """Raise if ``len(values) != expected``."""
    if len(values) != expected:
        raise ValueError(f"`{name}` has {len(values)} entries but `{other}` has {expected}; they must match.")


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise if a float array holds NaN or infinity."""
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"`{name}` contains NaN or infinity (first at index {tuple(int(i) for i in bad)}).")


def check_unit_interval(arr: np.ndarray, name: str, atol: float = 1e-6) -> None:
    """Raise if an array holds NaN or values outside [0, 1] (with a small tolerance for resizing noise)."""
    check_finite(arr, name)
    if arr.size and (arr.min() < -atol or arr.max() > 1 + atol):
        raise ValueError(
            f"`{name}` must lie in [0, 1]; got values in [{arr.min():.4g}, {arr.max():.4g}]. "
            "Min-max normalise maps and binarise or rescale masks first."
        )


def check_labels(arr: Any, name: str) -> np.ndarray:
    """Return a 1-D int64 array of class / group ids, rejecting NaN, floats with fractions and negatives."""
    out = to_numpy(arr, name)
    if out.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D; got shape {out.shape}.")
    if out.size and not (np.issubdtype(out.dtype, np.integer) or np.issubdtype(out.dtype, np.bool_)):
        if not np.issubdtype(out.dtype, np.floating):
            raise ValueError(f"`{name}` must hold integer ids; got dtype {out.dtype}.")
        _fast_numeric(out, "int64", 0, name)  # the evaluate modules' check: same message
    out = out.astype(np.int64)
    if out.size and out.min() < 0:
        raise ValueError(f"`{name}` must hold non-negative ids; got {int(out.min())}.")
    return out


# ------------------------------------------------------------------------ raw inputs of the evaluate modules

_INT_DTYPES = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})
_FLOAT_DTYPES = frozenset({"float16", "float32", "float64"})
_INT_HINT = "pass whole-number class / group ids (e.g. the argmax of the scores), not scores or probabilities"


def _leaf(spec: Any) -> tuple[Any, int]:
    """(leaf dtype of a nested list spec, list depth): ``[["float32"]]`` -> ("float32", 2)."""
    depth = 0
    while isinstance(spec, list):
        spec, depth = spec[0], depth + 1
    return spec, depth


def _check_number(value: Any, dtype: str, name: str) -> None:
    if not isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
        want = "an integer id" if dtype in _INT_DTYPES else "a number"
        raise ValueError(f"`{name}` must be {want}; got {value!r} ({type(value).__name__}).")
    if dtype in _INT_DTYPES and isinstance(value, (float, np.floating)) and not float(value).is_integer():
        shown = "NaN" if value != value else repr(value)
        raise ValueError(f"`{name}` is {shown}, not an integer id; {_INT_HINT}.")


def _fast_numeric(values: Any, dtype: str, depth: int, name: str) -> bool:
    """Check a rectangular numeric column with numpy; False when it is ragged (check item by item)."""
    try:
        arr = np.asarray(values)
    except ValueError:
        return False
    if arr.dtype == object or arr.ndim != depth + 1:
        return False
    if arr.dtype.kind not in "biuf":
        return False  # strings, None, ...: the item-by-item check names the first bad one
    if arr.dtype.kind == "f" and dtype in _INT_DTYPES:
        bad = ~np.isfinite(arr) | (np.mod(np.where(np.isfinite(arr), arr, 0), 1) != 0)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            index = "".join(f"[{i}]" for i in at)
            value = arr[at].item()
            shown = "NaN" if value != value else repr(value)
            raise ValueError(f"`{name}{index}` is {shown}, not an integer id; {_INT_HINT}.")
    return True


def check_feature(value: Any, spec: Any, name: str) -> None:
    """Raise a ``ValueError`` naming ``name`` (and the index) when ``value`` does not fit a compact feature spec.

    Specs are those of :func:`hf_spurious.metrics.evaluate_support.feature`: an int dtype string needs a whole
    number (a float with a fraction is refused, never truncated), a float dtype a number, ``"string"`` a
    ``str``, a one-item list a sequence of its item, a dict a mapping with exactly those keys (list values
    inside a dict may be ``None``).
    """
    if isinstance(spec, str):
        if spec == "string":
            if not isinstance(value, str):
                raise ValueError(f"`{name}` must be a string; got {value!r} ({type(value).__name__}).")
        else:
            _check_number(value, spec, name)
        return
    if isinstance(spec, list):
        if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__len__"):
            raise ValueError(f"`{name}` must be a list; got {type(value).__name__} {value!r:.60}.")
        leaf, depth = _leaf(spec)
        if leaf != "string" and not isinstance(leaf, Mapping) and _fast_numeric(value, leaf, depth - 1, name):
            return
        for i, item in enumerate(value):
            check_feature(item, spec[0], f"{name}[{i}]")
        return
    if not isinstance(value, Mapping):
        raise ValueError(
            f"`{name}` must be a dict with keys {sorted(spec)}; got {type(value).__name__} {value!r:.60}."
        )
    missing, unknown = sorted(set(spec) - set(value)), sorted(set(value) - set(spec))
    if missing or unknown:
        extra = f"; unknown keys {unknown}" if unknown else ""
        raise ValueError(f"`{name}` lacks keys {missing}{extra}: each item needs exactly {sorted(spec)}.")
    for key, inner in spec.items():
        if not (value[key] is None and isinstance(inner, list)):
            check_feature(value[key], inner, f"{name}[{key!r}]")


def check_inputs(columns: Mapping[str, Any], features: Mapping[str, Any]) -> None:
    """Check every given input column (a batch: one value per example) against its feature spec."""
    for column, values in columns.items():
        if values is None or column not in features:
            continue
        check_feature(values, [features[column]], column)
