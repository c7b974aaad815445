"""Data parallelism (issue 12, items 10-13): global negatives, Group DRO, the sampler and the launch configs.

The 2-process test runs real gloo processes on the CPU (torch.multiprocessing spawn) and compares each
process's loss and DDP-averaged gradients with one process holding the whole global batch.
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hf_spurious.losses import SpuriousAwareLoss
from hf_spurious.losses.distributed import gather_rows
from hf_spurious.training.group_dro import GroupDRO

ROOT = Path(__file__).resolve().parents[1]
B, D_IN, D = 8, 6, 4  # global batch, feature and embedding sizes
CLASSIFICATION = dict(
    clip_weight=1.0,
    image_class_weight=0.5,
    text_class_weight=0.3,
    image_spurious_weight=0.4,
    text_spurious_weight=0.2,
)
CASES = {  # name -> (task, loss weights and flags, Group DRO?, rows of rank 0 (rank 1 gets the rest))
    "cs_terms": ("classification", CLASSIFICATION, False, B // 2),
    "cs_terms_uneven": ("classification", CLASSIFICATION, False, 5),
    "group_dro": (
        "classification",
        dict(clip_weight=1.0, zero_shot_ce_weight=0.5, image_class_weight=0.5),
        True,
        4,
    ),
    "retrieval_clip": ("retrieval", dict(clip_weight=1.0), False, B // 2),
    "retrieval_triplet": ("retrieval", dict(clip_weight=1.0, retrieval_loss="triplet"), False, B // 2),
    "retrieval_sigmoid": ("retrieval", dict(clip_weight=1.0, retrieval_loss="sigmoid"), False, B // 2),
}


class _Towers(nn.Module):
    """Two projections and a log logit scale: the parameters a projection-policy run trains."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.image = nn.Linear(D_IN, D)
        self.text = nn.Linear(D_IN, D)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        self.logit_scale = nn.Parameter(torch.tensor(1.5))
        self.logit_bias = nn.Parameter(torch.tensor(-1.0))  # the sigmoid loss's b

    def forward(self, images, texts, prompts, attribute_prompts):
        return (
            self.image(images),
            self.text(texts),
            self.text(prompts),
            self.text(attribute_prompts),
            self.logit_scale * 1,
            self.logit_bias * 1,
        )


def _data(step: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    labels = torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])
    attributes = torch.tensor([0, 0, 1, 1, 0, 1, 0, 1])
    return {
        "images": torch.randn(B, D_IN, generator=gen),
        "texts": torch.randn(B, D_IN, generator=gen),
        "labels": labels,
        "attributes": attributes,
        "groups": labels * 2 + attributes,
        "prompts": torch.randn(3 * 2, D_IN, generator=gen),  # 3 templates x 2 classes
        "attribute_prompts": torch.randn(3 * 2, D_IN, generator=gen),
    }


def _run(case: str, rows: slice, module: nn.Module, gather: bool, steps: int = 2) -> dict[str, object]:
    """``steps`` SGD steps on ``rows`` of each global batch; the loss and gradients of every step, and q."""
    task, kw, dro_on, _ = CASES[case]
    loss_fn = SpuriousAwareLoss(task, gather_global_negatives=gather, **kw)
    dro = GroupDRO([3, 1, 2, 2], step_size=0.5, generalization_adjustment=0.1) if dro_on else None
    params = dict(
        module.module.named_parameters() if hasattr(module, "module") else module.named_parameters()
    )
    opt = torch.optim.SGD(params.values(), lr=0.1)
    out: dict[str, object] = {"loss": [], "grads": [], "q": []}
    for step in range(steps):
        x = {k: v[rows] if k not in ("prompts", "attribute_prompts") else v for k, v in _data(step).items()}
        img, txt, prompts, attr, scale, bias = module(
            x["images"], x["texts"], x["prompts"], x["attribute_prompts"]
        )
        if task == "retrieval":
            terms = loss_fn(img, txt, scale, logit_bias=bias)
        else:
            terms = loss_fn(
                img,
                None,
                scale,
                labels=x["labels"],
                attributes=x["attributes"],
                class_embeds=prompts.reshape(3, 2, D),
                attribute_embeds=attr,
                groups=x["groups"],
            )
        per_example, groups = terms.pop("per_example"), terms.pop("groups")
        loss = dro.loss(per_example, groups) if dro is not None else per_example.mean()
        loss = loss_fn.add_batch_terms(loss, terms)
        opt.zero_grad()
        loss.backward()
        out["loss"].append(float(loss.detach()))
        out["grads"].append({n: _grad(p) for n, p in params.items()})
        out["q"].append(dro.q.clone() if dro is not None else None)
        opt.step()
    return out


def _grad(p: nn.Parameter) -> torch.Tensor:
    return p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)  # triplet: no scale


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        results = {}
        for case, (_, _, _, first) in CASES.items():
            rows = slice(0, first) if rank == 0 else slice(first, B)
            for gather in (True, False):
                # the bias (and, for the triplet loss, the scale) is unused by some losses
                module = DistributedDataParallel(_Towers(), find_unused_parameters=True)
                results[(case, gather)] = _run(case, rows, module, gather)
        torch.save(results, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    import torch.multiprocessing as mp

    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(folder)), nprocs=2, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.allclose(a[n], b[n], rtol=1e-6, atol=1e-6) for n in a)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_equal_one_process_with_the_global_batch(two_process_results, case):
    """Per-device batch B/2 on 2 gloo processes == batch B on one process: the same loss on every rank and
    the same DDP-averaged gradients, to 1e-6, over 2 SGD steps; Group DRO's q identical on both ranks. Each
    process holding only its own rows (gather off) gives other gradients: the test fails without the gather."""
    reference = _run(case, slice(0, B), _Towers(), gather=True)  # no process group: one process, batch B
    for rank in range(2):
        got = two_process_results[rank][(case, True)]
        for step in range(2):
            assert got["loss"][step] == pytest.approx(reference["loss"][step], rel=1e-6, abs=1e-6)
            assert _close(got["grads"][step], reference["grads"][step]), (rank, step)
            if reference["q"][step] is not None:
                torch.testing.assert_close(got["q"][step], reference["q"][step], rtol=1e-6, atol=1e-9)
                assert torch.equal(got["q"][step], two_process_results[1 - rank][(case, True)]["q"][step])
    local = two_process_results[0][(case, False)]
    assert not _close(local["grads"][0], reference["grads"][0])


def test_gather_rows_is_the_identity_without_a_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    out, none = gather_rows(x, None)
    assert out is x and none is None
    assert not SpuriousAwareLoss(gather_global_negatives=True).gathers()


def test_group_balanced_sampler_gives_each_process_a_disjoint_share_of_one_draw():
    """The Trainer's group-balanced sampler draws one seeded global sequence; accelerate's data loader (as
    the Trainer prepares it) gives process r batches r, r + N, ...: together exactly the one-process
    batches of the global batch size, and a new draw each epoch."""
    from accelerate.data_loader import prepare_data_loader
    from torch.utils.data import DataLoader

    from hf_spurious.training.samplers import GroupBalancedSampler, global_draw_size

    groups = [0] * 20 + [1] * 4 + [2] * 8 + [3] * 4
    data = list(range(len(groups)))
    draws = global_draw_size(len(groups), 8)
    assert draws == 40 and global_draw_size(40, 8) == 40 and global_draw_size(41, 8) == 48

    def batches(process: int, n: int, size: int, epoch: int) -> list[list[int]]:
        sampler = GroupBalancedSampler(groups, num_samples=draws, seed=7)
        loader = DataLoader(data, batch_size=size, sampler=sampler)
        if n > 1:
            loader = prepare_data_loader(loader, num_processes=n, process_index=process, put_on_device=False)
        loader.set_epoch(epoch) if hasattr(loader, "set_epoch") else loader.sampler.set_epoch(epoch)
        return [b.tolist() for b in loader]

    for epoch in (0, 1):
        single = batches(0, 1, 8, epoch)
        r0, r1 = batches(0, 2, 4, epoch), batches(1, 2, 4, epoch)
        assert len(r0) == len(r1) == len(single) == 5  # whole batches: nobody padded with repeats
        assert [a + b for a, b in zip(r0, r1)] == single
    assert batches(0, 1, 8, 0) != batches(0, 1, 8, 1)


def test_loss_weights_must_be_finite():
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"clip_weight.*finite"):
            SpuriousAwareLoss(clip_weight=bad)


def test_sigmoid_retrieval_loss_needs_a_logit_bias():
    loss = SpuriousAwareLoss("retrieval", retrieval_loss="sigmoid")
    with pytest.raises(ValueError, match="logit_bias"):
        loss(torch.randn(4, 3), torch.randn(4, 3), 1.0)


def test_sigmoid_retrieval_loss_is_siglips_loss_with_the_bias():
    from hf_spurious.losses import sigmoid_pairwise_loss

    img, txt = torch.randn(5, 3), torch.randn(5, 3)
    bias = torch.tensor(-2.0)
    out = SpuriousAwareLoss("retrieval", retrieval_loss="sigmoid")(img, txt, 1.2, logit_bias=bias)
    expected = sigmoid_pairwise_loss(img, txt, torch.tensor(1.2).exp(), bias)
    torch.testing.assert_close(out["L_CLIP"], expected)
    # hand case: one pair, cos 1, t = e^0 = 1, b = 0: -log sigmoid(1)
    one = SpuriousAwareLoss("retrieval", retrieval_loss="sigmoid")(
        torch.ones(1, 2), torch.ones(1, 2), 0.0, logit_bias=0.0
    )
    assert one["L_CLIP"].item() == pytest.approx(math.log1p(math.exp(-1.0)))


def test_triplet_retrieval_loss_is_the_vsepp_loss_on_normalised_rows():
    from hf_spurious.losses.triplet import triplet_ranking_loss

    img, txt = torch.randn(5, 3), torch.randn(5, 3)
    out = SpuriousAwareLoss("retrieval", retrieval_loss="triplet", triplet_margin=0.3)(img, txt, 1.0)
    expected = triplet_ranking_loss(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), margin=0.3)
    torch.testing.assert_close(out["L_CLIP"], expected)
    # hand case: orthonormal matching pairs, margin 0.3: every hinge is 0.3 + 0 - 1 < 0
    eye = torch.eye(3)
    assert (
        SpuriousAwareLoss("retrieval", retrieval_loss="triplet", triplet_margin=0.3)(eye, eye, 1.0)["L_CLIP"]
        == 0
    )


def test_launch_configs_do_what_they_say():
    """ddp_cpu.yaml runs N gloo processes of one training (MULTI_GPU launcher: the MULTI_CPU one starts a
    single process); the GPU configs name no process count, so a GPU-less machine is never handed 8
    processes by surprise (accelerate asks for --num_processes)."""
    import yaml

    folder = ROOT / "examples" / "accelerate"
    cpu = yaml.safe_load((folder / "ddp_cpu.yaml").read_text())
    assert (
        cpu["distributed_type"] == "MULTI_GPU"
        and cpu["num_processes"] == 2
        and cpu["mixed_precision"] == "no"
    )
    for name in ("ddp.yaml", "fsdp.yaml"):
        text = (folder / name).read_text()
        assert yaml.safe_load(text)["num_processes"] == -1 and "--num_processes" in text


def test_multi_process_launch_without_a_gpu_turns_on_use_cpu(tmp_path, monkeypatch):
    """Under WORLD_SIZE > 1 without a GPU the arguments set use_cpu (else transformers would start N
    independent world-size-1 trainings); a one-process run keeps the default."""
    from hf_spurious.training.checks import cpu_only_launch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cpu_only_launch()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not cpu_only_launch()
    monkeypatch.delenv("WORLD_SIZE")
    assert not cpu_only_launch()


# ----------------------------------------------------------------------------- the real Trainer, 2 processes
def _trainer_run(model_dir: str, folder: str, world: int) -> dict[str, torch.Tensor]:
    """2 SGD steps of SpuriousAwareTrainer (Group DRO, group-balanced sampling, L_CLIP + L_vc + L_lc + L_vs)
    on cached-feature rows, global batch 8 over ``world`` processes; q and the trained weights."""
    from hf_spurious.models import load_adapter
    from hf_spurious.training import SpuriousAwareTrainer, SpuriousTrainingArguments

    adapter = load_adapter(model_dir)
    gen = torch.Generator().manual_seed(3)
    rows = [
        {"image_features": torch.randn(32, generator=gen).numpy(), "label": i % 2, "attribute": (i // 2) % 2}
        for i in range(16)
    ]
    args = SpuriousTrainingArguments(
        output_dir=os.path.join(folder, "out"),
        class_names=["landbird", "waterbird"],
        attribute_names=["land", "water"],
        templates=["a photo of a {}.", "a {} in the wild."],
        image_class_weight=0.5,
        text_class_weight=0.3,
        image_spurious_weight=0.4,
        sampling="group_balanced",
        objective="group_dro",
        dro_step_size=0.5,
        optim="sgd",
        learning_rate=0.5,
        per_device_train_batch_size=8 // world,
        max_steps=2,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    trainer = SpuriousAwareTrainer(adapter, args, train_dataset=rows)
    assert trainer.args.world_size == world  # use_cpu is turned on by the arguments under 2 processes
    trainer.train()
    weights = {n: p.detach().clone() for n, p in adapter.model.named_parameters() if p.requires_grad}
    return {"q": trainer.dro.q.clone(), **weights}


def _launched(rank: int, world: int, port: int, run, model_dir: str, folder: str) -> None:
    """One of ``world`` processes started the way ``accelerate launch`` starts them (environment variables),
    saving ``run(model_dir, folder, world)`` as ``<run name><rank>.pt``."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    torch.save(run(model_dir, folder, world), os.path.join(folder, f"{run.__name__}{rank}.pt"))


@pytest.mark.slow
def test_the_trainer_on_two_processes_equals_one_process(tiny_model_dir, tmp_path):
    """SpuriousAwareTrainer itself under 2 gloo processes (WORLD_SIZE=2, no --use_cpu): after 2 steps of
    Group DRO with group-balanced sampling and the CS terms, both ranks hold the same q and weights as one
    process with the global batch (sampler shares, gathered negatives, Group DRO and the gradient scale)."""
    import torch.multiprocessing as mp

    model_dir = str(tiny_model_dir("clip"))
    mp.spawn(_launched, args=(2, _free_port(), _trainer_run, model_dir, str(tmp_path)), nprocs=2, join=True)
    reference = _trainer_run(model_dir, str(tmp_path / "one"), 1)
    for rank in range(2):
        got = torch.load(tmp_path / f"_trainer_run{rank}.pt", weights_only=True)
        assert set(got) == set(reference)
        for name, value in reference.items():
            torch.testing.assert_close(got[name], value, rtol=1e-6, atol=1e-6, msg=f"rank {rank}: {name}")
    assert not torch.equal(reference["q"], torch.full((4,), 0.25, dtype=reference["q"].dtype))  # q moved


# ----------------------------------------------------------------------------- the feature cache, 2 processes
def _cache_run(model_dir: str, folder: str, world: int) -> dict[str, torch.Tensor]:
    """``cached_datasets`` on image rows (a train set and a dict of eval sets) under ``world`` processes: the
    features every process receives, and how many datasets this process hashed."""
    import numpy as np

    from hf_spurious.models import load_adapter
    from hf_spurious.training import SpuriousTrainingArguments, features

    hashed = []
    real_digest = features.content_digest
    features.content_digest = lambda dataset: hashed.append(len(dataset)) or real_digest(dataset)
    rng = np.random.default_rng(0)
    rows = [
        {
            "image": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
            "label": i % 2,
            "attribute": (i // 2) % 2,
        }
        for i in range(12)
    ]
    args = SpuriousTrainingArguments(
        output_dir=os.path.join(folder, "out"),
        class_names=["landbird", "waterbird"],
        attribute_names=["land", "water"],
        templates=["a photo of a {}."],
        feature_cache_dir=os.path.join(folder, "cache"),
        report_to="none",
    )
    assert args.world_size == world
    train, evals = features.cached_datasets(
        load_adapter(model_dir), args, None, rows[:8], {"shifted": rows[8:]}
    )
    return {
        "train": torch.tensor(np.stack([r["image_features"] for r in train])),
        "eval": torch.tensor(np.stack([r["image_features"] for r in evals["shifted"]])),
        "labels": torch.tensor([r["label"] for r in train]),
        "hashed": torch.tensor(len(hashed)),
    }


@pytest.mark.slow
def test_the_feature_cache_on_two_processes_equals_one_process(tiny_model_dir, tmp_path):
    """Under 2 gloo processes only rank 0 hashes the rows (every image) and computes the features; rank 1
    receives the cache keys and reads the same features, equal to one process's."""
    import torch.multiprocessing as mp

    model_dir = str(tiny_model_dir("clip"))
    mp.spawn(_launched, args=(2, _free_port(), _cache_run, model_dir, str(tmp_path)), nprocs=2, join=True)
    reference = _cache_run(model_dir, str(tmp_path / "one"), 1)
    assert reference["hashed"] == 2 and reference["train"].shape[0] == 8 and reference["eval"].shape[0] == 4
    ranks = [torch.load(tmp_path / f"_cache_run{rank}.pt", weights_only=True) for rank in range(2)]
    assert [int(r["hashed"]) for r in ranks] == [2, 0]
    for rank, got in enumerate(ranks):
        for name in ("train", "eval", "labels"):
            torch.testing.assert_close(
                got[name], reference[name], rtol=1e-6, atol=1e-6, msg=f"rank {rank}: {name}"
            )
    caches = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(caches) == 2  # one per dataset, written once
