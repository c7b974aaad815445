"""Bad cache files (issue 13 rules 1-2 at the storage layer): a corrupt entry is a miss, never a crash or a
stale or unpickled value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hf_spurious.cache import ArrayStore, JsonlStore

from ._cases import Case, cases, check


def array_store(damage):
    """Store [1, 2, 3] under "k", damage its files, then read "k" back through get_or_compute."""

    def run(tmp: Path):
        store = ArrayStore(tmp)
        store.put("k", np.arange(1, 4))
        damage(store.path("k"))
        return store.get("k"), ArrayStore(tmp).get_or_compute("k", lambda: np.array([7, 7, 7]))

    return run


def missed(result) -> None:
    got, recomputed = result
    assert got is None and recomputed.tolist() == [7, 7, 7], result


def corrupt_sidecar(tmp: Path):
    ArrayStore(tmp).put("k", np.zeros(2))
    (tmp / "k.json").write_text("{")
    return ArrayStore(tmp).meta("k"), ArrayStore(tmp).get("k")


def no_meta(result) -> None:
    meta, array = result
    assert meta is None and array.tolist() == [0.0, 0.0], result


def jsonl_store(lines: bytes):
    def run(tmp: Path):
        (tmp / "a.jsonl").write_bytes(b'{"k":"good","v":1}\n' + lines)
        return dict(JsonlStore(tmp))

    return run


def only_good(values) -> None:
    assert values == {"good": 1}, values


CASES = [
    Case(
        "array truncated",
        array_store(lambda p: p.write_bytes(p.read_bytes()[:20])),
        raises=None,
        expect=missed,
    ),
    Case("array empty file", array_store(lambda p: p.write_bytes(b"")), raises=None, expect=missed),
    Case("array not npy", array_store(lambda p: p.write_text("hello")), raises=None, expect=missed),
    Case(
        "array pickled object",
        array_store(lambda p: np.save(p, np.array([{"x": 1}], dtype=object), allow_pickle=True)),
        raises=None,
        expect=missed,
    ),
    Case(
        "array sidecar corrupt",
        corrupt_sidecar,
        raises=None,
        expect=no_meta,
    ),
    Case("jsonl truncated line", jsonl_store(b'{"k":"cut","v":'), raises=None, expect=only_good),
    Case(
        "jsonl non-utf8 line",
        jsonl_store('{"k":"bad","v":"\u00e9"}\n'.encode("latin-1")),
        raises=None,
        expect=only_good,
    ),
    Case(
        "jsonl line cut inside a character",
        jsonl_store('{"k":"x","v":"\u20ac"}'.encode()[:-4]),
        raises=None,
        expect=only_good,
    ),
    Case("jsonl line not an object", jsonl_store(b"[1, 2]\n"), raises=None, expect=only_good),
    Case(
        "jsonl line wrong keys",
        jsonl_store(json.dumps({"key": "x", "value": 2}).encode() + b"\n"),
        raises=None,
        expect=only_good,
    ),
]


@cases(CASES)
def test_cache_bad_input(case, tmp_path):
    check(case, tmp_path)
