"""hf_spurious.cache: content keys, atomic writes, ArrayStore and JsonlStore."""

from __future__ import annotations

import json
from collections.abc import MutableMapping

import numpy as np
import pytest

from hf_spurious import cache as cache_mod
from hf_spurious.cache import (
    ArrayStore,
    JsonlStore,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    digest,
    digest_texts,
)


# ----------------------------------------------------------------------------- digest
def test_digest_is_length_prefixed_and_stable():
    assert digest("ab", "c") != digest("a", "bc")
    assert digest("ab", "c") == digest("ab", "c")
    assert len(digest("x")) == 32 and len(digest("x", length=12)) == 12
    assert digest("x", length=12) == digest("x")[:12]
    assert digest(b"abc") == digest("abc")  # bytes as they are, text as UTF-8
    assert digest(["a", 1]) != digest("a", 1)  # a list is one part (canonical JSON)
    assert digest({"b": 1, "a": 2}) == digest({"a": 2, "b": 1})  # JSON with sorted keys
    assert digest() != digest("")


def test_digest_texts_order_count_and_boundaries():
    assert digest_texts(["ab", "c"]) != digest_texts(["a", "bc"])
    assert digest_texts(["a", "b"]) != digest_texts(["b", "a"])
    assert digest_texts([]) != digest_texts([""])
    assert digest_texts(iter(["a", "b"])) == digest_texts(["a", "b"])  # streamed from any iterable
    assert len(digest_texts(["a"])) == 64


# ----------------------------------------------------------------------------- atomic writes
def test_atomic_write_keeps_old_file_when_writer_raises(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError, match="writer died"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temporary left


def test_atomic_write_replaces_and_creates_parents(tmp_path):
    target = tmp_path / "a" / "b" / "out.bin"
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert not tmp.exists() and tmp.parent == target.parent and tmp.name.startswith(".")
        assert tmp.suffix == ".bin"  # writers that go by the extension keep working
        tmp.write_bytes(b"new")

    assert atomic_write(target, write) == target
    assert target.read_bytes() == b"new" and not seen[0].exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]
    atomic_write_bytes(target, b"newer")
    assert target.read_bytes() == b"newer"
    atomic_write_text(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"


def test_atomic_write_works_with_numpy_savez(tmp_path):
    target = tmp_path / "m.npz"
    atomic_write(target, lambda p: np.savez_compressed(p, x=np.arange(3)))
    with np.load(target) as z:
        assert z["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_atomic_write_json(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"b": [1, 2], "a": "z"})
    assert json.loads(target.read_text()) == {"b": [1, 2], "a": "z"}
    assert target.read_text().startswith('{\n "b"')  # indent=1 unless given
    atomic_write_json(target, {"b": 1, "a": 2}, indent=None, sort_keys=True)
    assert target.read_text() == '{"a": 2, "b": 1}'
    with pytest.raises(TypeError):
        atomic_write_json(target, {"x": object()})
    assert target.read_text() == '{"a": 2, "b": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


# ----------------------------------------------------------------------------- ArrayStore
def test_array_store_round_trip_and_meta(tmp_path):
    store = ArrayStore(tmp_path / "arrays")
    assert store.get("k") is None and store.meta("k") is None
    a = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]  # not contiguous
    store.put("k", a, class_names=["x", "y"], note=3)
    got = store.get("k")
    assert got.dtype == np.float32 and np.array_equal(got, a)
    assert store.meta("k") == {
        "key": "k",
        "shape": [3, 2],
        "dtype": "<f4",
        "class_names": ["x", "y"],
        "note": 3,
    }
    mm = store.get("k", mmap=True)
    assert isinstance(mm, np.memmap) and np.array_equal(mm, a)
    b = np.ones((2, 2), dtype=bool)
    store.put("b", b)
    assert store.get("b").dtype == bool and store.get("b").all()
    assert sorted(p.name for p in store.directory.iterdir()) == ["b.json", "b.npy", "k.json", "k.npy"]


@pytest.mark.parametrize("content", [b"", b"garbage bytes", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'"])
def test_array_store_corrupt_entry_is_a_miss(tmp_path, content):
    store = ArrayStore(tmp_path)
    store.put("k", np.arange(4.0))
    store.path("k").write_bytes(content)
    assert store.get("k") is None and store.get("k", mmap=True) is None
    store.path("k").with_suffix(".json").write_text("{not json")
    assert store.meta("k") is None


def test_array_store_get_or_compute(tmp_path):
    store = ArrayStore(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return np.arange(3)

    assert store.get_or_compute("k", compute, tag="t").tolist() == [0, 1, 2]
    assert store.get_or_compute("k", compute).tolist() == [0, 1, 2]
    assert calls == [1] and store.meta("k")["tag"] == "t"


# ----------------------------------------------------------------------------- JsonlStore
def test_jsonl_store_round_trip_across_instances(tmp_path):
    store = JsonlStore(tmp_path / "store")
    assert isinstance(store, MutableMapping) and len(store) == 0
    store["a"] = [[0, 5], [9, 16]]
    store["b"] = {"x": 1}
    assert store["a"] == [[0, 5], [9, 16]] and "b" in store and store.get("zz") is None
    assert not (tmp_path / "store").exists()  # nothing on disk before flush
    store.flush()
    store.flush()  # nothing pending: no-op
    files = list((tmp_path / "store").glob("*.jsonl"))
    assert len(files) == 1 and len(files[0].read_text().splitlines()) == 2
    again = JsonlStore(tmp_path / "store")
    assert dict(again) == {"a": [[0, 5], [9, 16]], "b": {"x": 1}}
    store["t"] = (1, 2)
    store.flush()
    assert JsonlStore(tmp_path / "store")["t"] == [1, 2]  # values come back as JSON gives them
    with pytest.raises(TypeError, match="append-only"):
        del store["a"]


def test_jsonl_store_skips_truncated_last_line(tmp_path):
    store = JsonlStore(tmp_path)
    store["a"] = 1
    store["b"] = 2
    store.flush()
    path = next(tmp_path.glob("*.jsonl"))
    with path.open("a") as fh:
        fh.write('{"k":"c","v":[1,')  # a killed writer
    (tmp_path / "junk.jsonl").write_text('42\n{"no_k": 1}\n[1, 2]\n')
    reread = JsonlStore(tmp_path)
    assert dict(reread) == {"a": 1, "b": 2}
    reread["d"] = 4  # same process file: the partial line is ended first, the new row survives
    reread.flush()
    assert dict(JsonlStore(tmp_path)) == {"a": 1, "b": 2, "d": 4}


def test_jsonl_store_two_processes_write_their_own_files(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod.os, "getpid", lambda: 1111)
    first = JsonlStore(tmp_path)
    second = JsonlStore(tmp_path)
    first["a"] = "from 1"
    first["shared"] = "same"
    first.flush()
    monkeypatch.setattr(cache_mod.os, "getpid", lambda: 2222)
    second["b"] = "from 2"
    second["shared"] = "same"
    second.flush()
    names = sorted(p.name for p in tmp_path.glob("*.jsonl"))
    assert len(names) == 2 and names[0].endswith("-1111.jsonl") and names[1].endswith("-2222.jsonl")
    assert dict(JsonlStore(tmp_path)) == {"a": "from 1", "shared": "same", "b": "from 2"}
    assert "b" not in first  # an open store does not see the other process's later writes
