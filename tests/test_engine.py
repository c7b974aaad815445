"""The chunked engine against a dense, stable-sort reference; the embedding cache; input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_spurious.evaluation.embedding_cache import (
    EmbeddingCache,
    embed_gallery,
    embed_queries,
    fingerprint_captions,
    fingerprint_images,
)
from hf_spurious.evaluation.rerank import rerank_with_itm
from hf_spurious.evaluation.topk import topk_similarities


def dense_reference(q: np.ndarray, g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Naive: full float64 similarity matrix, then per row a Python sort on (-score, index)."""
    sims = q.astype(np.float64) @ g.astype(np.float64).T
    idx = np.empty((len(q), min(k, len(g))), dtype=np.int64)
    for r in range(len(q)):
        order = sorted(range(len(g)), key=lambda j: (-sims[r, j], j))
        idx[r] = order[: idx.shape[1]]
    return np.take_along_axis(sims, idx, 1), idx


def _dyadic(rng: np.random.Generator, shape: tuple[int, ...], levels: int) -> np.ndarray:
    """Small-integer values: every product and sum is exact in float32, and ties are frequent."""
    return rng.integers(-levels, levels + 1, size=shape).astype(np.float32)


@pytest.mark.parametrize("seed", range(8))
def test_chunked_equals_dense_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_q, n_g, d = int(rng.integers(1, 30)), int(rng.integers(1, 80)), int(rng.integers(1, 6))
    q = _dyadic(rng, (n_q, d), int(rng.integers(1, 3)))
    g = _dyadic(rng, (n_g, d), int(rng.integers(1, 3)))
    for k in (1, 2, 5, 10, 100):
        ref_v, ref_i = dense_reference(q, g, k)
        for chunk in (1, 3, 16, 1000):
            for qchunk in (1, 64):
                v, i = topk_similarities(q, g, k, chunk_size=chunk, query_chunk_size=qchunk, device="cpu")
                np.testing.assert_array_equal(i, ref_i, err_msg=f"{seed=} {k=} {chunk=} {qchunk=}")
                np.testing.assert_array_equal(v, ref_v.astype(np.float32))


def test_all_equal_scores_rank_by_gallery_index() -> None:
    q = np.ones((3, 4), np.float32)
    g = np.ones((50, 4), np.float32)
    _, i = topk_similarities(q, g, 10, chunk_size=7)
    np.testing.assert_array_equal(i, np.tile(np.arange(10), (3, 1)))


@pytest.mark.parametrize("seed", range(5))
def test_float_inputs_match_dense(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    q = rng.normal(size=(17, 8)).astype(np.float32)
    g = rng.normal(size=(203, 8)).astype(np.float32)
    ref_v, ref_i = dense_reference(q, g, 10)
    v, i = topk_similarities(torch.from_numpy(q), torch.from_numpy(g), 10, chunk_size=13, query_chunk_size=5)
    np.testing.assert_allclose(v, ref_v, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(i, ref_i)  # random normals: no near-ties at this size


def test_memmapped_gallery(tmp_path) -> None:
    rng = np.random.default_rng(3)
    g = _dyadic(rng, (64, 4), 2)
    np.save(tmp_path / "g.npy", g)
    gm = np.load(tmp_path / "g.npy", mmap_mode="r")
    q = _dyadic(rng, (5, 4), 2)
    _, i = topk_similarities(q, gm, 5, chunk_size=10)
    np.testing.assert_array_equal(i, dense_reference(q, g, 5)[1])


def test_bad_inputs() -> None:
    q, g = np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32)
    for bad_k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            topk_similarities(q, g, bad_k)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dimension"):
        topk_similarities(q, np.zeros((4, 5), np.float32), 1)
    with pytest.raises(ValueError, match="2-D"):
        topk_similarities(q[0], g, 1)
    g_nan = g.copy()
    g_nan[2, 1] = np.nan
    with pytest.raises(ValueError, match="gallery row 2 contains NaN"):
        topk_similarities(q, g_nan, 1)
    q_inf = q.copy()
    q_inf[1, 0] = np.inf
    with pytest.raises(ValueError, match="queries row 1"):
        topk_similarities(q_inf, g, 1)
    with pytest.raises(ValueError, match="empty"):
        topk_similarities(q, np.zeros((0, 3), np.float32), 1)


# ----------------------------------------------------------------------------------------- cache


class CountingAdapter:
    """A stand-in adapter: deterministic embeddings from text length / pixel mean; counts calls."""

    def __init__(self, fingerprint: str = "model-a", nan_at: int | None = None) -> None:
        self.fingerprint = fingerprint
        self.text_calls = 0
        self.image_calls = 0
        self.nan_at = nan_at

    def embed_texts(self, texts, batch_size=32):
        self.text_calls += 1
        out = np.array([[len(t), t.count("a"), 1.0] for t in texts], np.float32)
        if self.nan_at is not None and self.nan_at < len(out):
            out[self.nan_at, 0] = np.nan
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def embed_images(self, images, batch_size=32):
        self.image_calls += 1
        return np.array([[np.asarray(im, np.float32).mean(), 1.0, 0.0] for im in images], np.float32)

    has_itm = True

    def preprocess_images(self, images):
        return torch.zeros(len(images), 3, 2, 2)

    def tokenize(self, texts):
        ids = torch.tensor([[t.count("a")] for t in texts])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def itm_scores(self, pixel_values, input_ids, attention_mask=None):
        assert pixel_values.shape[0] == input_ids.shape[0]
        return input_ids[:, 0].float()  # "match probability" = number of a's


def test_cache_hit_miss_and_keys(tmp_path) -> None:
    captions = ["a cat", "a dog on a mat", "two birds"]
    a = CountingAdapter()
    e1 = embed_gallery(a, captions, tmp_path, batch_size=2)
    assert a.text_calls == 2  # 3 captions in batches of 2
    e2 = embed_gallery(a, captions, tmp_path, batch_size=2)
    assert a.text_calls == 2  # hit
    np.testing.assert_array_equal(e1, e2)
    embed_gallery(a, [*captions[:2], "two bird"], tmp_path)  # data changed -> miss
    assert a.text_calls == 3
    b = CountingAdapter("model-b")
    embed_gallery(b, captions, tmp_path)  # model changed -> miss
    assert b.text_calls == 1
    assert len(list(tmp_path.glob("*.npy"))) == 3
    # keys differ by every part
    keys = {
        EmbeddingCache.key("m", "d", "text"),
        EmbeddingCache.key("m2", "d", "text"),
        EmbeddingCache.key("m", "d2", "text"),
        EmbeddingCache.key("m", "d", "image"),
    }
    assert len(keys) == 4
    # a corrupt entry is a miss, not a crash, and is recomputed
    key = EmbeddingCache.key("model-a", fingerprint_captions(captions), "text")
    EmbeddingCache(tmp_path).path(key).write_bytes(b"not an npy file")
    embed_gallery(a, captions, tmp_path)
    assert a.text_calls == 4


def test_fingerprints_distinguish_order_and_joins(tmp_path) -> None:
    assert fingerprint_captions(["ab", "c"]) != fingerprint_captions(["a", "bc"])
    assert fingerprint_captions(["a", "b"]) != fingerprint_captions(["b", "a"])
    img = np.zeros((4, 4, 3), np.uint8)
    img2 = img.copy()
    img2[0, 0, 0] = 1
    assert fingerprint_images([img]) != fingerprint_images([img2])
    assert fingerprint_images([img], ids=["x"]) != fingerprint_images([img], ids=["y"])
    p = tmp_path / "x.bin"
    p.write_bytes(b"123")
    f1 = fingerprint_images([p])
    p.write_bytes(b"124")
    assert fingerprint_images([p]) != f1


def test_query_cache_and_nan_error(tmp_path) -> None:
    a = CountingAdapter()
    imgs = [np.full((4, 4, 3), v, np.uint8) for v in (0, 10, 20)]
    e = embed_queries(a, imgs, tmp_path, ids=["0", "1", "2"])
    embed_queries(a, imgs, tmp_path, ids=["0", "1", "2"])
    assert a.image_calls == 1 and e.shape == (3, 3)
    with pytest.raises(ValueError, match="one id per image"):
        embed_queries(a, imgs, tmp_path, ids=["0"])
    with pytest.raises(ValueError, match="row 1 contains NaN"):
        embed_gallery(CountingAdapter(nan_at=1), ["a", "b", "c"], tmp_path)
    assert not any("nan" in p.name for p in tmp_path.iterdir())


def test_itm_rerank_reorders_top_n_only() -> None:
    captions = ["x", "aaa", "a", "aa", "aaaa"]
    indices = np.array([[0, 2, 3, 1, 4]])
    out = rerank_with_itm(CountingAdapter(), [np.zeros((2, 2, 3), np.uint8)], captions, indices, top_n=3)
    # top-3 candidates 0 ("x": 0), 2 ("a": 1), 3 ("aa": 2) re-ordered by ITM score; the rest untouched
    np.testing.assert_array_equal(out, [[3, 2, 0, 1, 4]])
    # text queries: rows are captions holding image indices
    imgs = [np.zeros((2, 2, 3), np.uint8)] * 3
    out_t = rerank_with_itm(CountingAdapter(), imgs, ["aa"], np.array([[2, 0, 1]]), top_n=2, query="text")
    np.testing.assert_array_equal(out_t, [[2, 0, 1]])  # equal ITM scores keep the similarity order
    with pytest.raises(ValueError, match="ITM head"):
        rerank_with_itm(object(), [None], captions, indices)
    with pytest.raises(ValueError, match="1 text queries for 2 rows"):
        rerank_with_itm(CountingAdapter(), imgs, ["a"], np.zeros((2, 3), np.int64), query="text")


# ----------------------------------------------------------------------------------------- Recall@K both ways


@pytest.mark.parametrize("seed", range(4))
def test_bidirectional_recall_matches_dense_reference(seed: int) -> None:
    from hf_spurious.evaluation import bidirectional_recall
    from hf_spurious.metrics import recall_at_k_from_similarity

    rng = np.random.default_rng(200 + seed)
    n_images = int(rng.integers(10, 25))
    owner = np.concatenate([np.arange(n_images), rng.integers(0, n_images, 2 * n_images)])
    rng.shuffle(owner)
    for make in (lambda s: rng.normal(size=s).astype(np.float32), lambda s: _dyadic(rng, s, 1)):  # ties too
        img, txt = make((n_images, 6)), make((len(owner), 6))
        want = recall_at_k_from_similarity(
            img.astype(np.float64) @ txt.astype(np.float64).T, owner, (1, 5, 10)
        )
        got = bidirectional_recall(img, txt, owner, (1, 5, 10), chunk_size=7, device="cpu")
        assert (
            list(got)
            == list(want)
            == [*(f"i2t_r@{k}" for k in (1, 5, 10)), *(f"t2i_r@{k}" for k in (1, 5, 10)), "rsum"]
        )
        assert got == want


def test_bidirectional_recall_all_ties_and_rerank_hook() -> None:
    from hf_spurious.evaluation import bidirectional_recall

    img, txt = np.ones((4, 3), np.float32), np.ones((8, 3), np.float32)
    owner = np.array([3, 3, 2, 2, 1, 1, 0, 0])
    # all scores equal: ranks follow the index, so image 3's captions (0, 1) are its top-2 and caption c's
    # top-1 image is image 0 (only captions 6 and 7 own it)
    got = bidirectional_recall(img, txt, owner, (1, 2), device="cpu")
    assert got["i2t_r@1"] == 25.0 and got["i2t_r@2"] == 25.0
    assert got["t2i_r@1"] == 25.0 and got["t2i_r@2"] == 50.0
    assert got["rsum"] == 125.0
    seen = []

    def reverse(ranked: np.ndarray, query: str) -> np.ndarray:
        seen.append((query, ranked.shape))
        return ranked[:, ::-1].copy()

    flipped = bidirectional_recall(img, txt, owner, (2,), device="cpu", rerank=reverse)
    assert seen == [("image", (4, 2)), ("text", (8, 2))]
    assert flipped["i2t_r@2"] == got["i2t_r@2"] and flipped["t2i_r@2"] == got["t2i_r@2"]  # same sets at k=2
    with pytest.raises(ValueError, match="exceeds the test set"):
        bidirectional_recall(img, txt, owner, (5,), device="cpu")


@pytest.mark.parametrize("precision", ["exact-fp32", "exact-bf16", "auto"])
def test_every_precision_matches_dense_with_ties(precision: str) -> None:
    rng = np.random.default_rng(7)
    q = _dyadic(rng, (70, 64), 2)  # small integers: exact in bf16 and fp32, many exact ties
    g = _dyadic(rng, (900, 64), 2)
    ref_v, ref_i = dense_reference(q, g, 10)
    v, i = topk_similarities(
        q, g, 10, chunk_size=256, query_chunk_size=32, precision=precision, progress=False
    )
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_array_equal(v, ref_v.astype(np.float32))


# ------------------------------------------------------------------------------- ITM re-rank depth and score


class PerfectItmAdapter:
    """Image i and caption "caption i" match; the dual encoder ranks each true pair LAST of three.

    ITC similarities M[i, j] (image i, caption j): 0.9 for j = i+1, 0.5 for j = i+2, 0.1 for j = i (mod 3),
    so without re-ranking R@1 = 0 both ways; the ITM head says 1 for the true pair and 0 otherwise.
    """

    fingerprint = "perfect-itm"

    def embed_images(self, images, batch_size=32):
        return np.stack([np.eye(3, dtype=np.float32)[int(np.asarray(im).mean())] for im in images])

    def embed_texts(self, texts, batch_size=32):
        m = np.zeros((3, 3), np.float32)
        for i in range(3):
            m[i, i], m[i, (i + 1) % 3], m[i, (i + 2) % 3] = 0.1, 0.9, 0.5
        return np.stack([m[:, int(t.split()[-1])] for t in texts])

    def preprocess_images(self, images):
        return torch.tensor([[float(np.asarray(im).mean())] for im in images])

    def tokenize(self, texts):
        ids = torch.tensor([[int(t.split()[-1])] for t in texts])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def itm_scores(self, pixel_values, input_ids, attention_mask=None):
        return (pixel_values[:, 0].round().long() == input_ids[:, 0]).float()


def test_recall_rerank_depth_reaches_past_kmax() -> None:
    from hf_spurious.evaluation import evaluate_recall
    from hf_spurious.evaluation.retrieval import RecallSet

    images = [np.full((4, 4, 3), i, np.uint8) for i in range(3)]
    rs = RecallSet(images=images, captions=[f"caption {i}" for i in range(3)], caption_to_image=[0, 1, 2])
    plain = evaluate_recall(PerfectItmAdapter(), rs, k=(1,))
    assert plain["i2t_r@1"] == 0.0 and plain["t2i_r@1"] == 0.0  # the stub's ITC puts every true pair last
    for score in ("itm", "itm+itc"):
        got = evaluate_recall(PerfectItmAdapter(), rs, k=(1,), rerank_top_n=3, rerank_score=score)
        # re-ranking 3 candidates at k=1 must see all 3 (it saw only the top 1 before the fix)
        assert got["i2t_r@1"] == 100.0 and got["t2i_r@1"] == 100.0, score
    shallow = evaluate_recall(PerfectItmAdapter(), rs, k=(1,), rerank_top_n=2)
    assert shallow["i2t_r@1"] == 0.0  # the true caption sits at rank 3, out of a depth-2 re-rank


def test_itm_plus_itc_score_hand_case_and_naive() -> None:
    captions = ["x", "aaa", "a", "aa", "aaaa"]
    indices = np.array([[0, 2, 3, 1, 4]])
    itc = np.array([[2.5, 1.0, 0.1, 0.0, 0.0]])
    img = [np.zeros((2, 2, 3), np.uint8)]
    # ITM (= number of a's) alone: 3 (2) > 2 (1) > 0 (0); plus ITC: 0 -> 2.5, 2 -> 2.0, 3 -> 2.1
    np.testing.assert_array_equal(
        rerank_with_itm(CountingAdapter(), img, captions, indices, 3), [[3, 2, 0, 1, 4]]
    )
    out = rerank_with_itm(CountingAdapter(), img, captions, indices, 3, score="itm+itc", itc_scores=itc)
    np.testing.assert_array_equal(out, [[0, 3, 2, 1, 4]])
    rng = np.random.default_rng(3)
    words = ["a" * int(n) + "b" for n in rng.integers(0, 4, 12)]
    for _ in range(5):
        idx = np.stack([rng.permutation(12)[:7] for _ in range(2)])
        sims = rng.integers(-3, 4, idx.shape).astype(np.float64) / 2  # ties on purpose
        got = rerank_with_itm(CountingAdapter(), img * 2, words, idx, 5, score="itm+itc", itc_scores=sims)
        for q in range(2):  # naive: stable sort of the first 5 on -(a-count + sim), the rest untouched
            key = [-(words[idx[q, j]].count("a") + sims[q, j]) for j in range(5)]
            want = [idx[q, j] for j in sorted(range(5), key=lambda j: (key[j], j))] + list(idx[q, 5:])
            assert list(got[q]) == want
    with pytest.raises(ValueError, match="itc_scores"):
        rerank_with_itm(CountingAdapter(), img, captions, indices, 3, score="itm+itc")
    with pytest.raises(ValueError, match="score must be one of"):
        rerank_with_itm(CountingAdapter(), img, captions, indices, 3, score="itc")


def test_progress_bars_say_what_they_embed(capsys) -> None:
    """Issue 15 item 4: each bar names its job (not "embed queries" for everything)."""
    from hf_spurious.evaluation.classification import classify_images

    imgs = [np.full((4, 4, 3), v, np.uint8) for v in (0, 10)]
    embed_queries(CountingAdapter(), imgs)
    assert "embed query images" in capsys.readouterr().err
    embed_gallery(CountingAdapter(), ["a cat", "a dog"])
    assert "embed gallery captions" in capsys.readouterr().err
    classify_images(CountingAdapter(), imgs, ["cat", "dog"], ["a {}"])
    err = capsys.readouterr().err
    assert "embed images to classify" in err and "embed query images" not in err


def test_odmap_runner_rerank_score_setting_is_used_and_recorded() -> None:
    from hf_spurious.evaluation.retrieval import Gallery, RetrievalQueries, evaluate_retrieval

    images = [np.full((4, 4, 3), i, np.uint8) for i in range(3)]
    captions = [f"caption {i}" for i in range(3)]
    gallery = Gallery(captions, np.eye(3, dtype=bool), ["c0", "c1", "c2"])
    queries = RetrievalQueries(images, [{"c1"}, {"c2"}, {"c0"}], [{"c0"}, {"c1"}, {"c2"}])
    plain = evaluate_retrieval(PerfectItmAdapter(), queries, gallery, k=(1,), top_captions=1)
    assert plain["odmap"]["odmap@1"] == 0.0 and plain["settings"]["rerank_score"] is None
    for score in ("itm", "itm+itc"):
        res = evaluate_retrieval(
            PerfectItmAdapter(), queries, gallery, k=(1,), rerank_top_n=3, rerank_score=score, top_captions=1
        )
        # the perfect ITM lifts each image's own caption (naming its present class) to rank 1
        assert [row["top"][0]["gallery_index"] for row in res["per_query"]] == [0, 1, 2]
        assert res["odmap"]["odmap@1"] == 100.0 and res["settings"]["rerank_score"] == score
