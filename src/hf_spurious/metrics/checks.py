"""Input checks shared by the metrics: each raises a ``ValueError`` that names the argument and the fix."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
        if np.isnan(out).any():
            raise ValueError(f"`{name}` contains NaN; it must hold integer ids.")
        if not np.all(np.equal(np.mod(out, 1), 0)):
            raise ValueError(f"`{name}` must hold integer ids; got fractional values.")
    out = out.astype(np.int64)
    if out.size and out.min() < 0:
        raise ValueError(f"`{name}` must hold non-negative ids; got {int(out.min())}.")
    return out
