"""The options each inpainter takes, their types and allowed ranges: checked when the settings are read.

``check_inpainter_options("opencv", {"radius": "big"})`` raises a ValueError naming the option, what it
must be and an example, before any image is touched. :func:`options_for` keeps only the options an
inpainter takes (a build script that passes one options set to several inpainters uses it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]


def _number(low: float, high: float = math.inf, *, low_open: bool = False) -> Check:
    def ok(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        return (v > low if low_open else v >= low) and v <= high

    return ok


def _int(low: int) -> Check:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _optional(check: Check) -> Check:
    return lambda v: v is None or check(v)


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _odd_or_zero(v: Any) -> bool:
    return _int(0)(v) and (v == 0 or v % 2 == 1)


# option -> (check, what it must be, example)
_OPENCV = {
    "method": (lambda v: v in ("telea", "ns"), "'telea' or 'ns'", '"ns"'),
    "radius": (_number(0, 1000, low_open=True), "a number of pixels in (0, 1000]", "3"),
}
_BLUR = {
    "sigma": (_optional(_number(0, 1000, low_open=True)), "null or a number in (0, 1000]", "4.0"),
    "ksize": (_odd_or_zero, "0 (from sigma) or an odd integer", "9"),
}
_DIFFUSERS = {
    "prompt": (_text, "a string", '"background"'),
    "negative_prompt": (_optional(_text), "null or a string", '"object"'),
    "steps": (_int(1), "an integer >= 1", "25"),
    "strength": (_number(0, 1, low_open=True), "a number in (0, 1]", "1.0"),
    "guidance_scale": (_number(0, 100), "a number in [0, 100]", "7.5"),
    "batch_size": (_int(1), "an integer >= 1", "4"),
    "resolution": (_optional(_int(8)), "null or an integer >= 8", "512"),
    "context": (_number(0, 10), "a number in [0, 10] (share of the mask box added on each side)", "0.5"),
    "device": (_optional(_text), "null or a torch device string", '"cuda:0"'),
    "dtype": (_optional(lambda v: v in ("fp16", "bf16", "fp32")), "null, 'fp16', 'bf16' or 'fp32'", '"fp16"'),
    "safety_checker": (lambda v: isinstance(v, bool), "true or false", "true"),
}
OPTIONS: dict[str, dict[str, tuple[Check, str, str]]] = {
    "opencv": _OPENCV,
    "zero": {},
    "mean": {},
    "blur": _BLUR,
    "oracle": {"world_dir": (_optional(_text), "null or a world directory", '"world"')},
    "diffusers": _DIFFUSERS,
}


def _kind(spec: str) -> str:
    kind = str(spec).partition(":")[0].strip().lower()
    if kind not in OPTIONS:
        raise ValueError(
            f"unknown inpainter {spec!r}; use opencv[:telea|:ns], zero, mean, blur, oracle or diffusers:<id or dir>"
        )
    return kind


def check_inpainter_options(spec: str, options: Any) -> None:
    """Raise a ValueError naming the first option the inpainter ``spec`` does not take or that is out of range."""
    kind = _kind(spec)
    if not isinstance(options, dict):
        raise ValueError(f"inpainter_options must be a JSON object / dict, got {type(options).__name__}")
    table = OPTIONS[kind]
    for name, value in options.items():
        if name not in table:
            takes = ", ".join(sorted(table)) or "no options"
            raise ValueError(f"inpainter {spec!r} takes {takes}; unknown option {name!r} (remove it)")
        check, what, example = table[name]
        if not check(value):
            raise ValueError(
                f"inpainter option {name!r} of {spec!r} must be {what}, got {value!r}; e.g. "
                f"--inpainter-options '{{\"{name}\": {example}}}'"
            )


def options_for(spec: str, options: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``(the options inpainter spec takes, the names dropped)``: one options set for several inpainters."""
    table = OPTIONS[_kind(spec)]
    kept = {k: v for k, v in options.items() if k in table}
    return kept, sorted(set(options) - set(kept))
