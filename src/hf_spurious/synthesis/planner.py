"""Which objects to remove from an image: the α1/α2/α3 rules of Kim et al. (spec §1.2, §3.A.5).

Pure numpy (cv2 only to rasterise polygons and dilate masks). Areas are pixel counts of box unions.

Pixel convention: a box ``(x, y, w, h)`` covers the pixels with column in ``[floor(x), ceil(x + w))`` and
row in ``[floor(y), ceil(y + h))``, clipped to the image, i.e. every pixel the box touches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

Box = tuple[float, float, float, float]
Polygons = Sequence[Sequence[float]]

# Reason codes (a plan's ``reason`` and the skip counters of the generator).
OK = "ok"
FEWER_THAN_TWO_CLASSES = "fewer_than_two_classes"
TARGET_ABSENT = "target_absent"
ALPHA1_KEEP = "alpha1_keep_overlap"  # a kept class would lose >= alpha1 of its area
ALPHA3_SIZE = "alpha3_too_large"  # the removed region is >= alpha3 of the image
NOTHING_KEPT = "nothing_kept"  # every other class joined R through alpha2
NO_VALID_CLASS = "alpha_rules"  # no class passes the rules (per-class reasons in the explanation)
MASK_COVERS_IMAGE = "mask_covers_image"  # after dilation, nothing of the image would remain

REASONS = (
    OK,
    FEWER_THAN_TWO_CLASSES,
    TARGET_ABSENT,
    ALPHA1_KEEP,
    ALPHA3_SIZE,
    NOTHING_KEPT,
    NO_VALID_CLASS,
    MASK_COVERS_IMAGE,
)


@dataclass(frozen=True)
class RemovalPlan:
    """Classes to remove (``removed_classes[0]`` is the chosen c^r), classes kept, and the mask to fill."""

    removed_classes: tuple[str, ...]
    kept_classes: tuple[str, ...]
    mask: np.ndarray = field(repr=False)  # bool (H, W), True = inpaint
    removed_boxes: tuple[Box, ...]
    target_class: str
    reason: str = OK

    @property
    def mask_fraction(self) -> float:
        return float(self.mask.mean())


@dataclass(frozen=True)
class RemovalExplanation:
    """Why an image got (or did not get) a plan: the plan or None, a reason code, and per-class reasons."""

    plan: RemovalPlan | None
    reason: str
    per_class: dict[str, str]
    ratios: dict[str, dict[str, float]] = field(default_factory=dict)  # candidate -> other class -> ratio


def box_pixel_bounds(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """``(col0, row0, col1, row1)`` half-open pixel bounds of a box (see the module's convention)."""
    x, y, w, h = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
        raise ValueError(f"invalid box {[x, y, w, h]}: needs finite x, y and non-negative w, h")
    c0, r0 = max(math.floor(x), 0), max(math.floor(y), 0)
    c1, r1 = min(math.ceil(x + w), width), min(math.ceil(y + h), height)
    return c0, r0, max(c1, c0), max(r1, r0)


def rasterize_boxes(boxes: Sequence[Sequence[float]], width: int, height: int) -> np.ndarray:
    """Union of boxes as a bool (H, W) mask."""
    mask = np.zeros((height, width), dtype=bool)
    for box in boxes:
        c0, r0, c1, r1 = box_pixel_bounds(box, width, height)
        mask[r0:r1, c0:c1] = True
    return mask


def rasterize_polygons(polygons: Polygons, width: int, height: int) -> np.ndarray:
    """Union of COCO polygons (flat ``[x0, y0, x1, y1, ...]`` lists) as a bool (H, W) mask."""
    import cv2  # lazy: keep the core import light (cv2 only for polygons and dilation)

    canvas = np.zeros((height, width), dtype=np.uint8)
    pts = []
    for poly in polygons:
        arr = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if len(arr) >= 3:
            pts.append(np.round(arr).astype(np.int32))
    if pts:
        cv2.fillPoly(canvas, pts, 1)
    return canvas.astype(bool)


def dilate_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a bool mask by ``pixels`` in the max-norm (a (2p+1)² square structuring element)."""
    if pixels < 0:
        raise ValueError(f"dilation must be >= 0 pixels, got {pixels}")
    if pixels == 0 or not mask.any():
        return mask.copy()
    # a reach beyond the image changes nothing (every pixel is already within max(H, W) of any mask pixel);
    # the clamp keeps the kernel small whatever was asked (a 10^5 px dilation used to allocate 37 GiB)
    pixels = min(int(pixels), max(mask.shape))
    import cv2  # lazy: keep the core import light (cv2 only for polygons and dilation)

    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), dtype=np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(
        bool
    )


def _region_grid(
    boxes: Sequence[Sequence[float]], classes: Sequence[str], width: int, height: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-class box unions on the compressed grid of box edges, with each cell's pixel count."""
    bounds = [box_pixel_bounds(b, width, height) for b in boxes]
    xs = np.unique([v for c0, _, c1, _ in bounds for v in (c0, c1)])
    ys = np.unique([v for _, r0, _, r1 in bounds for v in (r0, r1)])
    weights = np.outer(np.diff(ys), np.diff(xs)).astype(np.int64)
    regions: dict[str, np.ndarray] = {}
    for (c0, r0, c1, r1), cls in zip(bounds, classes):
        grid = regions.setdefault(cls, np.zeros(weights.shape, dtype=bool))
        i0, i1 = np.searchsorted(ys, r0), np.searchsorted(ys, r1)
        j0, j1 = np.searchsorted(xs, c0), np.searchsorted(xs, c1)
        grid[i0:i1, j0:j1] = True
    return regions, weights


def _pixel_regions(
    boxes: Sequence[Sequence[float]],
    classes: Sequence[str],
    width: int,
    height: int,
    segmentations: Sequence[Polygons | None] | None,
) -> dict[str, np.ndarray]:
    regions: dict[str, np.ndarray] = {}
    for i, (box, cls) in enumerate(zip(boxes, classes)):
        seg = segmentations[i] if segmentations is not None else None
        region = rasterize_polygons(seg, width, height) if seg else rasterize_boxes([box], width, height)
        if not region.any():  # a degenerate polygon: fall back to its box
            region = rasterize_boxes([box], width, height)
        if cls in regions:
            regions[cls] |= region
        else:
            regions[cls] = region
    return regions


def _evaluate(
    target: str,
    regions: dict[str, np.ndarray],
    weights: np.ndarray | None,
    image_area: int,
    alpha1: float,
    alpha2: float,
    alpha3: float,
) -> tuple[str, tuple[str, ...], tuple[str, ...], dict[str, float]]:
    """Apply steps 3-5 for candidate ``target``: (reason, removed, kept, ratios to B^r)."""

    def area(m: np.ndarray) -> int:
        return int(m.sum()) if weights is None else int(weights[m].sum())

    b_r = regions[target]
    others = sorted(c for c in regions if c != target)
    ratios = {c: area(b_r & regions[c]) / area(regions[c]) for c in others}
    removed = (target, *(c for c in others if ratios[c] > alpha2))
    kept = tuple(c for c in others if ratios[c] <= alpha2)
    if not kept:
        return NOTHING_KEPT, removed, kept, ratios
    b_prime = np.zeros_like(b_r)
    for c in removed:
        b_prime |= regions[c]
    if any(area(b_prime & regions[c]) / area(regions[c]) >= alpha1 for c in kept):
        return ALPHA1_KEEP, removed, kept, ratios
    if area(b_prime) / image_area >= alpha3:
        return ALPHA3_SIZE, removed, kept, ratios
    return OK, removed, kept, ratios


def _check_inputs(
    boxes_xywh: Sequence[Sequence[float]],
    classes: Sequence[str],
    image_size: tuple[int, int],
    segmentations: Sequence[Polygons | None] | None,
) -> tuple[int, int]:
    """``(W, H)``, after checking that boxes, classes and polygons align and every box covers a pixel."""
    width, height = (int(v) for v in image_size)
    if width <= 0 or height <= 0:
        raise ValueError(f"image_size must be positive (W, H), got {image_size}")
    if len(boxes_xywh) != len(classes):
        raise ValueError(f"{len(boxes_xywh)} boxes but {len(classes)} classes; they must align")
    if segmentations is not None and len(segmentations) != len(boxes_xywh):
        raise ValueError(f"{len(segmentations)} segmentations for {len(boxes_xywh)} boxes; they must align")
    for i, box in enumerate(boxes_xywh):
        c0, r0, c1, r1 = box_pixel_bounds(box, width, height)
        if c1 <= c0 or r1 <= r0:
            raise ValueError(
                f"box {i} {list(box)} ({classes[i]!r}) covers no pixel of the {width}x{height} image; "
                "drop or fix the annotation"
            )
    return width, height


def _candidate_order(
    present: list[str], target_class: str | None, rng: np.random.Generator | int | None
) -> list[str]:
    """The forced target; else the present classes in sorted (``rng`` None) or seeded shuffled order."""
    if target_class is not None:
        return [target_class]
    if rng is None:
        return present
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return [present[i] for i in gen.permutation(len(present))]


def _removal_mask(
    removed: tuple[str, ...],
    removed_idx: list[int],
    regions: dict[str, np.ndarray],
    boxes_xywh: Sequence[Sequence[float]],
    use_pixels: bool,
    width: int,
    height: int,
) -> np.ndarray:
    """The undilated mask of the removed classes: their pixel regions, or their boxes."""
    if not use_pixels:
        return rasterize_boxes([boxes_xywh[i] for i in removed_idx], width, height)
    mask = np.zeros((height, width), dtype=bool)
    for c in removed:
        mask |= regions[c]
    return mask


def _walk_candidates(
    boxes_xywh: Sequence[Sequence[float]],
    classes: Sequence[str],
    image_size: tuple[int, int],
    target_class: str | None,
    options: dict,
    per_class: dict[str, str],
    all_ratios: dict[str, dict[str, float]],
) -> Iterator[RemovalPlan]:
    """Every valid plan, in the candidate order (lazily); fills ``per_class`` / ``all_ratios`` as it goes."""
    width, height = image_size
    segmentations = options["segmentations"]
    use_pixels = options["use_segmentation"] and segmentations is not None and any(segmentations)
    if use_pixels:
        regions = _pixel_regions(boxes_xywh, classes, width, height, segmentations)
        weights = None
    else:
        regions, weights = _region_grid(boxes_xywh, classes, width, height)
    alphas = (options["alpha1"], options["alpha2"], options["alpha3"])
    for cand in _candidate_order(sorted(set(classes)), target_class, options["rng"]):
        reason, removed, kept, ratios = _evaluate(cand, regions, weights, width * height, *alphas)
        per_class[cand], all_ratios[cand] = reason, ratios
        if reason != OK:
            continue
        removed_set = set(removed)
        removed_idx = [i for i, c in enumerate(classes) if c in removed_set]
        mask = _removal_mask(removed, removed_idx, regions, boxes_xywh, use_pixels, width, height)
        mask = dilate_mask(mask, options["dilation"])
        if mask.all():
            per_class[cand] = MASK_COVERS_IMAGE
            continue
        yield RemovalPlan(
            removed_classes=removed,
            kept_classes=kept,
            mask=mask,
            removed_boxes=tuple(tuple(float(v) for v in boxes_xywh[i]) for i in removed_idx),  # type: ignore[misc]
            target_class=cand,
        )


def check_alphas(alpha1: float, alpha2: float, alpha3: float) -> None:
    """Each α is a share of an area: a number in (0, 1] (1 switches its rule off, e.g. α2 = 1: no
    multi-class extension). A ValueError names the first one that is not (NaN, 0, 40, "0.4")."""
    for name, value in (("alpha1", alpha1), ("alpha2", alpha2), ("alpha3", alpha3)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
        if not 0.0 < float(value) <= 1.0:  # NaN fails this too
            raise ValueError(
                f"{name} must be in (0, 1] (a share of an area, e.g. 0.4), got {value!r}; "
                "1 switches the rule off"
            )


def explain_removal(
    boxes_xywh: Sequence[Sequence[float]],
    classes: Sequence[str],
    image_size: tuple[int, int],
    target_class: str | None = None,
    alpha1: float = 0.4,
    alpha2: float = 0.8,
    alpha3: float = 0.7,
    rng: np.random.Generator | int | None = None,
    dilation: int = 0,
    segmentations: Sequence[Polygons | None] | None = None,
    use_segmentation: bool = False,
) -> RemovalExplanation:
    """Like :func:`plan_removal` (same arguments), but also says why: a reason code and per-candidate reasons."""
    options = dict(alpha1=alpha1, alpha2=alpha2, alpha3=alpha3, rng=rng, dilation=dilation)
    options.update(segmentations=segmentations, use_segmentation=use_segmentation)
    return explain_removals(boxes_xywh, classes, image_size, target_class, **options)[0]


def explain_removals(
    boxes_xywh: Sequence[Sequence[float]],
    classes: Sequence[str],
    image_size: tuple[int, int],
    target_class: str | None = None,
    **options,
) -> tuple[RemovalExplanation, Iterator[RemovalPlan]]:
    """:func:`explain_removal` (same arguments) and the later valid plans, lazily, in candidate order: a
    caller that cannot use the first plan (e.g. no caption names its class) takes the next one."""
    options = {"alpha1": 0.4, "alpha2": 0.8, "alpha3": 0.7, "rng": None, "dilation": 0, **options}
    options.setdefault("segmentations", None)
    options.setdefault("use_segmentation", False)
    width, height = _check_inputs(boxes_xywh, classes, image_size, options["segmentations"])
    check_alphas(options["alpha1"], options["alpha2"], options["alpha3"])
    present = sorted(set(classes))
    if len(present) < 2:
        return RemovalExplanation(None, FEWER_THAN_TWO_CLASSES, {}), iter(())
    if target_class is not None and target_class not in present:
        return RemovalExplanation(None, TARGET_ABSENT, {target_class: TARGET_ABSENT}), iter(())
    per_class: dict[str, str] = {}
    all_ratios: dict[str, dict[str, float]] = {}
    walk = _walk_candidates(
        boxes_xywh, classes, (width, height), target_class, options, per_class, all_ratios
    )
    plan = next(walk, None)
    if plan is not None:
        return RemovalExplanation(plan, OK, per_class, all_ratios), walk
    if target_class is not None:
        return RemovalExplanation(None, per_class[target_class], per_class, all_ratios), walk
    reasons = set(per_class.values())
    overall = reasons.pop() if len(reasons) == 1 else NO_VALID_CLASS
    return RemovalExplanation(None, overall, per_class, all_ratios), walk


def plan_removal(
    boxes_xywh: Sequence[Sequence[float]],
    classes: Sequence[str],
    image_size: tuple[int, int],
    target_class: str | None = None,
    alpha1: float = 0.4,
    alpha2: float = 0.8,
    alpha3: float = 0.7,
    rng: np.random.Generator | int | None = None,
    dilation: int = 0,
    segmentations: Sequence[Polygons | None] | None = None,
    use_segmentation: bool = False,
) -> RemovalPlan | None:
    """Choose the classes to remove from one image (Kim et al. §3.1) and the mask to inpaint, or None.

    Args:
        boxes_xywh: object boxes ``(x, y, w, h)`` in pixels; ``classes`` their class names (aligned).
        image_size: ``(W, H)``.
        target_class: force c^r; None when it is absent or fails the rules.
        alpha1: a kept class must lose strictly less than this share of its box area to B'.
        alpha2: a class with strictly more than this share of its area inside B^r is removed too.
        alpha3: B' must cover strictly less than this share of the image.
        rng: candidates are tried in a shuffled order drawn from this generator (or int seed); None tries
            them in sorted order. The first valid candidate wins.
        dilation: grow the returned mask by this many pixels (the α rules use undilated regions).
        segmentations: per-object COCO polygons; with ``use_segmentation=True`` they replace the boxes for
            the α rules and the mask (objects without a polygon keep their box). The paper uses boxes.
    """
    options = dict(alpha1=alpha1, alpha2=alpha2, alpha3=alpha3, rng=rng, dilation=dilation)
    options.update(segmentations=segmentations, use_segmentation=use_segmentation)
    return explain_removal(boxes_xywh, classes, image_size, target_class, **options).plan
