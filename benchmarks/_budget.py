"""The paper experiments as item counts, turned into FLOPs and GPU-hour estimates (used by flops.py)."""

from __future__ import annotations

# Karpathy splits; D' sizes from Kim et al. §4.1; Waterbirds (WILDS) split sizes.
COCO = {
    "train_images": 113_287,
    "train_captions": 566_747,
    "test_images": 5_000,
    "gallery": 616_767,
    "d_prime": 45_467,
    "queries": 5_000,
}
FLICKR = {
    "train_images": 29_000,
    "train_captions": 145_000,
    "test_images": 1_000,
    "gallery": 155_070,
    "d_prime": 4_650,
    "queries": 1_000,
}
WATERBIRDS = {"train": 4_795, "val": 1_199, "test": 5_794, "arms": 6}
EPOCHS = {"clip-vit-base-patch32": 10, "blip-itm-base-coco": 2}  # presets retrieval-clip / retrieval-blip
RERANK = 128


def _row(name: str, parts: list[tuple[str, float, float]], tflops: float, memory: str) -> str:
    total = sum(n * f for _, n, f in parts)
    what = "; ".join(f"{label}: {n:,.0f} x {f / 1e9:,.1f} GFLOP" for label, n, f in parts)
    hours = total / (tflops * 1e12) / 3600
    return f"| {name} | {what} | {total:.2e} | {memory} | {hours:,.1f} |"


def _mem(params: float, full: bool) -> str:
    if full:
        return f"{params * 16 / 2**30:.1f} GiB + activations (fp32 weights, grads, AdamW m and v)"
    return f"{params * 2 / 2**30:.2f} GiB (bf16 weights) + activations"


def kim_rows(items: dict, tflops: float) -> list[str]:
    sd = items["sd-1.5-inpainting"]["inpaint-image"]
    rows = []
    for ds_name, ds in (("COCO", COCO), ("Flickr30k", FLICKR)):
        cf = [
            (
                "SD inpainting, D' + test queries (upper bound: one image per pair)",
                ds["d_prime"] + ds["queries"],
                sd,
            )
        ]
        rows.append(
            _row(
                f"Kim T1-2, {ds_name}: counterfactual sets (shared)",
                cf,
                tflops,
                f"{items['sd-1.5-inpainting']['params'] * 2 / 2**30:.1f} GiB (fp16 pipeline) + activations",
            )
        )
        for model in ("clip-vit-base-patch32", "blip-itm-base-coco"):
            it, ep = items[model], EPOCHS[model]
            pairs = ds["train_captions"]
            train = [
                ("fine-tune D", ep * pairs, it["train-full"]),
                ("fine-tune D + D'", ep * (pairs + ds["d_prime"]), it["train-full"]),
            ]
            evals = [
                ("3 evaluations x gallery captions", 3 * ds["gallery"], it["text"]),
                ("3 x (test images + queries)", 3 * (ds["test_images"] + ds["queries"]), it["image"]),
            ]
            rows.append(
                _row(f"Kim T1-2, {ds_name}, {model}", train + evals, tflops, _mem(it["params"], True))
            )
            if model.startswith("blip"):
                n = 3 * RERANK * (ds["queries"] + ds["test_images"])
                rows.append(
                    _row(
                        f"  + ITM re-rank top-{RERANK}, {ds_name} (as implemented: image re-encoded per pair)",
                        [("image-query pairs", n, it["itm-pair"])],
                        tflops,
                        _mem(it["params"], False),
                    )
                )
                rows.append(
                    _row(
                        f"  + ITM re-rank top-{RERANK}, {ds_name} (image states computed once, BLIP's own code)",
                        [
                            ("pairs, fused encoder only", n, it["itm-cross"]),
                            ("images", 3 * (ds["queries"] + ds["test_images"]), it["image"]),
                        ],
                        tflops,
                        _mem(it["params"], False),
                    )
                )
    return rows


def kim_table3_rows(items: dict, tflops: float) -> list[str]:
    sd = items["sd-1.5-inpainting"]["inpaint-image"]
    it = items["clip-vit-base-patch32"]
    pairs = COCO["train_captions"] + COCO["d_prime"]
    parts = [
        ("SD inpainting for the captioner and prompt variants", 2 * COCO["d_prime"], sd),
        ("5 fine-tunes on D + D'", 5 * EPOCHS["clip-vit-base-patch32"] * pairs, it["train-full"]),
        ("5 evaluations x gallery captions", 5 * COCO["gallery"], it["text"]),
        ("5 x (test images + queries)", 5 * (COCO["test_images"] + COCO["queries"]), it["image"]),
    ]
    return [
        _row(
            "Kim T3 (COCO, CLIP B/32; the NP removal + inpainting row is T1's)",
            parts,
            tflops,
            _mem(it["params"], True),
        )
    ]


def yang_rows(items: dict, tflops: float) -> list[str]:
    rows = []
    for model, label in (("clip-vit-large-patch14-336", "ViT-L/14@336"), ("clip-rn50", "RN50")):
        it = items[model]
        n_img = WATERBIRDS["train"] + WATERBIRDS["val"] + WATERBIRDS["test"]
        parts = [
            ("cached image features, all splits", n_img, it["image"]),
            ("GradCAM for AIoU, test x arms", WATERBIRDS["arms"] * WATERBIRDS["test"], it["gradcam"]),
        ]
        rows.append(
            _row(
                f"Yang T4, {label} (6 arms; training on cached features ~0)",
                parts,
                tflops,
                _mem(it["params"], False),
            )
        )
    return rows


def budget_tables(items: dict, tflops: float) -> str:
    head = ["| model | item | GFLOP per item |", "| --- | --- | ---: |"]
    for model, d in items.items():
        for key, value in d.items():
            if key != "params":
                head.append(f"| {model} ({d['params'] / 1e6:,.1f} M params) | {key} | {value / 1e9:,.1f} |")
    rows = [
        "| experiment | items x FLOPs per item | total FLOPs | memory per device | GPU-hours (ESTIMATE) |",
        "| --- | --- | ---: | --- | ---: |",
    ]
    rows += kim_rows(items, tflops) + kim_table3_rows(items, tflops) + yang_rows(items, tflops)
    return "\n".join(head) + "\n\n" + "\n".join(rows)
