"""``SpuriousAwareTrainer``: a ``transformers.Trainer`` for CLIP / BLIP with the spurious-aware losses."""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import EvalPrediction, Trainer
from transformers.utils import logging

from hf_spurious import losses as L
from hf_spurious.records import group_id

from .collators import MISSING, ClassificationCollator, RetrievalCollator
from .config import SpuriousTrainingArguments
from .group_dro import GroupDRO
from .samplers import GroupBalancedSampler

logger = logging.get_logger(__name__)
DRO_STATE = "group_dro.json"
TERMS = ("clip", "class_ce", "image_class", "text_class", "image_spurious", "text_spurious", "itm")


class SpuriousModel(nn.Module):
    """One ``forward`` over an adapter, so the Trainer (and DDP) see a single module.

    Parameters live in ``self.model`` (the Hugging Face model, or its peft wrapper). ``forward`` takes raw
    inputs (``pixel_values`` / ``input_ids``) or cached pooled features (``image_features`` /
    ``text_features``) and prompt groups, and returns projected (unnormalised) embeddings.
    """

    def __init__(self, adapter: Any) -> None:
        super().__init__()
        self.model = adapter.model
        object.__setattr__(self, "adapter", adapter)  # not a submodule: its parameters are self.model's

    @property
    def config(self) -> Any:
        return getattr(self.model, "config", None)

    @property
    def model_tags(self) -> list[str] | None:
        """The wrapped model's tags (``Trainer.push_to_hub`` copies them into the card)."""
        return getattr(self.model, "model_tags", None)

    def _images(
        self, pixel_values: torch.Tensor | None, image_features: torch.Tensor | None
    ) -> torch.Tensor | None:
        if image_features is None and pixel_values is None:
            return None
        feats = image_features if image_features is not None else self.adapter.image_features(pixel_values)
        return self.adapter.project_images(feats)

    def _texts(
        self, ids: torch.Tensor | None, mask: torch.Tensor | None, feats: torch.Tensor | None
    ) -> torch.Tensor | None:
        if feats is None and ids is None:
            return None
        feats = feats if feats is not None else self.adapter.text_features(ids, mask)
        return self.adapter.project_texts(feats)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
        prompts: dict[str, dict[str, torch.Tensor]] | None = None,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "image_embeds": self._images(pixel_values, image_features),
            "text_embeds": self._texts(input_ids, attention_mask, text_features),
            "prompt_embeds": {
                name: self._texts(p.get("input_ids"), p.get("attention_mask"), p.get("features"))
                for name, p in (prompts or {}).items()
            },
        }
        scale = self.adapter.logit_scale
        # a copy made inside forward: DDP must see the parameter used through this module's graph only once
        out["logit_scale"] = scale.clone() if isinstance(scale, torch.Tensor) else torch.tensor(float(scale))
        return out


def _column(dataset: Any, key: str) -> list[Any] | None:
    """A column of a ``datasets.Dataset`` or a list of dict rows (None when absent). Other dataset
    types are not introspected (their ``__getitem__`` may be random), so they have no columns here."""
    if hasattr(dataset, "column_names"):
        if key not in dataset.column_names:
            return None
        return [v.item() if hasattr(v, "item") else v for v in dataset[key]]
    if isinstance(dataset, (list, tuple)) and dataset and key in dataset[0]:
        return [r.get(key) for r in dataset]
    return None


def dataset_groups(dataset: Any, num_attributes: int) -> list[int]:
    """Group id of every example: the ``group`` column, else :func:`hf_spurious.records.group_id`."""
    groups = _column(dataset, "group")
    if groups is not None:
        return [int(g) for g in groups]
    labels, attrs = _column(dataset, "label"), _column(dataset, "attribute")
    if labels is None or attrs is None:
        raise ValueError(
            "group-balanced sampling / Group DRO need 'label' and 'attribute' (or 'group') columns"
        )
    out = []
    for i, (y, a) in enumerate(zip(labels, attrs)):
        if a is None or int(a) < 0:
            raise ValueError(
                f"example {i} has no attribute label; groups need one for every training example"
            )
        try:
            out.append(group_id(y, a, num_attributes))
        except ValueError as err:
            raise ValueError(f"example {i}: {err}") from None
    return out


class SpuriousAwareTrainer(Trainer):
    """Fine-tune a vision-language model with L_CLIP + the spurious-aware losses (Yang et al. 2023) on
    image–caption pairs D ∪ D′ (Kim et al. 2023) or labelled images with spurious attributes.

    ``model`` is a model id / directory (loaded with :func:`hf_spurious.models.load_adapter`), a Hugging
    Face model, or an adapter. Freezing follows ``args.freeze_policy``; with ``projection`` and
    ``use_cached_features`` (the default) the datasets are replaced by cached frozen features (the same
    losses on the same batches: the loss trajectory matches uncached training to float32 round-off,
    rtol 1e-5 in the tests; features are computed in eval mode, which only matters for encoders with
    dropout, off in CLIP / BLIP by default).

    Datasets: a ``datasets.Dataset`` or a list of dict rows. Classification rows: ``image``, ``label``,
    ``attribute`` (optional unless an attribute loss, group-balanced sampling or Group DRO needs it),
    optional ``group``. Retrieval rows: ``image``, ``caption``, optional ``is_counterfactual`` (D′) and
    ``image_id`` (eval Recall@K; captions of one image are not ITM negatives). Rows may instead carry
    pre-computed ``image_features`` (/ ``text_features``).

    Evaluation: group accuracies (classification) or Recall@{1,5,10} both ways by exact chunked top-k
    (retrieval, :func:`retrieval_recall_metrics`). ODmAP@k and the removed-mention rate need a class-annotated
    caption gallery and counterfactual queries: evaluate a saved checkpoint with ``hf-spurious evaluate``.

    Logged per logging step (mean over the steps; ``eval_`` prefix in evaluation): ``<term>_loss`` for
    every active term, ``skipped_<term>`` when a contrastive term had no positive pair in some batches
    (``if_no_positives="skip"``), and ``dro_q_<g>`` (Group DRO weights). A non-finite loss raises
    ``FloatingPointError`` naming the terms.
    """

    _tag_names = ["hf-spurious", "spurious-correlations", "vision-language"]
    _name = "SpuriousAware"
    _paper = {
        "title": "Mitigating Spurious Correlations in Multi-modal Models during Fine-tuning",
        "id": "2304.03916",
        "citation": "Yang, Nushi, Palangi, Mirzasoleiman. ICML 2023.",
    }

    def __init__(
        self,
        model: Any,
        args: SpuriousTrainingArguments | None = None,
        data_collator: Callable | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None = None,
        callbacks: list | None = None,
        optimizers: tuple = (None, None),
        train_group_counts: list[int] | None = None,
    ) -> None:
        if args is None:
            args = SpuriousTrainingArguments(output_dir="hf-spurious-output")
        if not isinstance(args, SpuriousTrainingArguments):
            raise TypeError("args must be a SpuriousTrainingArguments")
        self.adapter = self._prepare_adapter(model, args)
        processing_class = processing_class if processing_class is not None else self.adapter.processor
        self.task = args.task
        self.num_attributes = (
            self._num_attributes(args, train_dataset) if args.task == "classification" else 0
        )
        if self.task == "classification" and not args.class_names:
            raise ValueError(
                "task='classification' needs class_names (e.g. --class_names landbird waterbird)"
            )
        if args.objective == "group_dro" and args.clip_weight == 0 and args.class_weight == 0:
            raise ValueError(
                "objective='group_dro' reweights per-example losses: set clip_weight or class_weight > 0"
            )
        if args.objective == "group_dro" and self.task != "classification":
            raise ValueError("objective='group_dro' needs task='classification' (groups = class x attribute)")
        if self.task == "retrieval":
            train_dataset = _with_image_index(train_dataset) if train_dataset is not None else None
            eval_dataset = _with_image_index(eval_dataset) if eval_dataset is not None else None
        if (
            args.cached
            and args.task == "retrieval"
            and args.itm_weight > 0
            and getattr(self.adapter, "has_itm", False)
        ):
            logger.warning(
                "BLIP's ITM loss needs raw images (cross-attention), so it is off with cached features; "
                "use freeze_policy='full' or 'lora' to train with ITM"
            )
        if args.cached:
            cache_dir = args.feature_cache_dir or os.path.join(args.output_dir, "feature_cache")
            train_dataset, eval_dataset = self._cache(
                args, processing_class, cache_dir, train_dataset, eval_dataset
            )
        if data_collator is None:
            data_collator = (
                RetrievalCollator(processing_class)
                if self.task == "retrieval"
                else ClassificationCollator(processing_class, num_attributes=self.num_attributes)
            )
        self.train_groups: list[int] | None = None
        if args.sampling == "group_balanced" or args.objective == "group_dro":
            if train_dataset is None:
                raise ValueError("group-balanced sampling / Group DRO need a train_dataset")
            self.train_groups = dataset_groups(train_dataset, self.num_attributes)
        self.dro: GroupDRO | None = None
        if args.objective == "group_dro":
            n_groups = len(args.class_names) * self.num_attributes
            counts = train_group_counts or np.bincount(self.train_groups, minlength=n_groups).tolist()
            self.dro = GroupDRO(counts, args.dro_step_size, args.dro_generalization_adjustment)
        if compute_metrics is None:
            compute_metrics = (
                self._group_metrics if self.task == "classification" else self._retrieval_metrics
            )
        if train_group_counts is None and self.task == "classification" and train_dataset is not None:
            try:  # weights of the adjusted average accuracy (spec §2.6)
                groups = self.train_groups or dataset_groups(train_dataset, self.num_attributes)
                n_groups = len(args.class_names) * self.num_attributes
                train_group_counts = np.bincount(groups, minlength=n_groups).tolist()
            except ValueError:
                train_group_counts = None
        self.train_group_counts = train_group_counts
        self._metrics: dict[str, list[torch.Tensor]] = {"train": [], "eval": []}
        self._prompt_inputs = self._build_prompts(args, processing_class)
        if args.ddp_find_unused_parameters is None and args.freeze_policy == "projection":
            args.ddp_find_unused_parameters = False  # every projection and the scale take part in every step
        super().__init__(
            model=SpuriousModel(self.adapter),
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        if hasattr(self.adapter.model, "add_model_tags"):
            self.adapter.model.add_model_tags(self._tag_names)

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _prepare_adapter(model: Any, args: SpuriousTrainingArguments) -> Any:
        from hf_spurious.models import apply_freezing, load_adapter

        adapter = model if hasattr(model, "project_images") else load_adapter(model)
        if args.logit_scale_init is not None:
            with torch.no_grad():
                if isinstance(adapter.logit_scale, nn.Parameter):  # CLIP: log scale s
                    adapter.logit_scale.fill_(args.logit_scale_init)
                elif isinstance(getattr(adapter, "temp", None), nn.Parameter):  # BLIP: temp = exp(-s)
                    adapter.temp.fill_(math.exp(-args.logit_scale_init))
                else:
                    raise ValueError(
                        "logit_scale_init needs a learnable logit scale or temperature parameter"
                    )
        kwargs: dict[str, Any] = {
            "policy": args.freeze_policy,
            "lora_target_modules": args.lora_target_modules,
        }
        params = inspect.signature(apply_freezing).parameters
        for name in ("lora_r", "lora_alpha"):
            if name in params:
                kwargs[name] = getattr(args, name)
        result = apply_freezing(adapter, **kwargs)
        if hasattr(result, "project_images"):
            adapter = result
        else:
            logger.info(f"freezing: {result}")
        if args.train_text_embeddings:
            text = getattr(adapter.base_model, "text_model", None)
            if text is None or not hasattr(text, "embeddings") or not hasattr(text, "final_layer_norm"):
                raise ValueError(
                    "train_text_embeddings needs a CLIP-shaped text tower (text_model.embeddings)"
                )
            text.embeddings.requires_grad_(True)
            text.final_layer_norm.requires_grad_(True)
        if not args.learn_logit_scale:
            for p in (adapter.logit_scale, getattr(adapter, "temp", None)):
                if isinstance(p, nn.Parameter):
                    p.requires_grad_(False)
        return adapter

    @staticmethod
    def _num_attributes(args: SpuriousTrainingArguments, dataset: Any) -> int:
        if args.attribute_names:
            return len(args.attribute_names)
        attrs = _column(dataset, "attribute") if dataset is not None else None
        valid = [int(a) for a in attrs or [] if a is not None and int(a) >= 0]
        return max(valid) + 1 if valid else 2

    def _cache(
        self, args: SpuriousTrainingArguments, processor: Any, cache_dir: str, *datasets_: Any
    ) -> list[Any]:
        """Cached-feature versions of the datasets (in-memory rows, see :func:`~.features.feature_rows`)."""
        from .features import cache_features, feature_rows

        def cached(ds: Any) -> Any:
            if ds is None or (len(ds) and "image_features" in ds[0]):
                return ds
            return feature_rows(
                cache_features(self.adapter, ds, task=args.task, cache_dir=cache_dir, processor=processor)
            )

        with args.main_process_first(desc="feature cache"):
            return [
                {k: cached(v) for k, v in ds.items()} if isinstance(ds, dict) else cached(ds)
                for ds in datasets_
            ]

    def _prompt_texts(self, args: SpuriousTrainingArguments) -> dict[str, list[str]]:
        """Prompt groups: 'class' (templates x classes, template-major) and the attribute prompts."""
        texts: dict[str, list[str]] = {}
        if self.task != "classification":
            return texts
        texts["class"] = [t.format(c) for t in args.templates for c in args.class_names]
        if args.text_spurious_weight > 0:
            texts["attribute"] = [t.format(a) for t in args.templates for a in args.attribute_names]
        if args.image_spurious_weight > 0 and args.spurious_form == "cross_entropy":
            texts["attribute_generic"] = [t.format(a) for t in args.templates for a in args.attribute_prompts]
        return texts

    def _build_prompts(
        self, args: SpuriousTrainingArguments, processor: Any
    ) -> dict[str, dict[str, torch.Tensor]]:
        tokenizer = getattr(processor, "tokenizer", processor)
        out: dict[str, dict[str, torch.Tensor]] = {}
        for name, texts in self._prompt_texts(args).items():
            if args.cached:
                from .features import prompt_features

                out[name] = {"features": prompt_features(self.adapter, tokenizer, texts)}
            else:
                enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
                out[name] = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        return out

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        if self.args.sampling == "group_balanced":
            ds = train_dataset if train_dataset is not None else self.train_dataset
            groups = (
                self.train_groups if ds is self.train_dataset else dataset_groups(ds, self.num_attributes)
            )
            return GroupBalancedSampler(groups, seed=self.args.data_seed or self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        every = self.args.lr_step_decay_every_epochs
        if every is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        optimizer = optimizer if optimizer is not None else self.optimizer
        per_epoch = math.ceil(len(self.train_dataset) / (self.args.train_batch_size * self.args.world_size))
        per_epoch = max(1, per_epoch // self.args.gradient_accumulation_steps)
        interval, factor = max(1, round(every * per_epoch)), self.args.lr_step_decay_factor
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: factor ** (step // interval)
        )
        self._created_lr_scheduler = True
        return self.lr_scheduler

    # ------------------------------------------------------------------ loss
    def _model_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        keys = ("pixel_values", "image_features", "input_ids", "attention_mask", "text_features")
        device = self.args.device
        prompts = {n: {k: v.to(device) for k, v in p.items()} for n, p in self._prompt_inputs.items()}
        return {**{k: inputs[k] for k in keys if k in inputs}, "prompts": prompts}

    def _active_terms(self) -> list[str]:
        a = self.args
        weights = {
            "clip": a.clip_weight,
            "class_ce": a.class_weight,
            "image_class": a.image_class_weight,
            "text_class": a.text_class_weight,
            "image_spurious": a.image_spurious_weight,
            "text_spurious": a.text_spurious_weight,
            "itm": a.itm_weight
            if (a.task == "retrieval" and getattr(self.adapter, "has_itm", False) and not a.cached)
            else 0.0,
        }
        active = [t for t in TERMS if weights[t] > 0]
        if self.task == "retrieval":
            active = [t for t in active if t in ("clip", "itm")]
        if not active:
            raise ValueError("every loss weight is 0; set at least clip_weight or class_weight > 0")
        return active

    def _weight(self, term: str) -> float:
        return float(getattr(self.args, {"class_ce": "class_weight"}.get(term, f"{term}_weight")))

    def _loss_terms(
        self, out: dict[str, Any], inputs: dict[str, Any]
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor | None]]:
        """Per-example loss (clip + class_ce, the part Group DRO reweights) and the batch-level terms."""
        a, s, img = self.args, out["logit_scale"], out["image_embeds"]
        active, terms = self._active_terms(), {}
        per_example = None
        skip = a.if_no_positives
        if self.task == "retrieval":
            if "clip" in active:
                per_example = a.clip_weight * L.clip_contrastive_loss(
                    img, out["text_embeds"], s, reduction="none"
                )
                terms["clip"] = per_example.mean() / a.clip_weight
            if "itm" in active:
                terms["itm"] = self.adapter.itm_loss(
                    pixel_values=inputs["pixel_values"],
                    input_ids=inputs["input_ids"],
                    attention_mask=inputs["attention_mask"],
                    ids=inputs.get("image_index"),  # captions of one image are not ITM negatives
                ).itm
            return per_example, terms
        labels, attrs = inputs["labels"], inputs.get("attributes")
        t, c = len(a.templates), len(a.class_names)
        text = out["prompt_embeds"]["class"].reshape(t, c, -1)
        if int(labels.max()) >= c or int(labels.min()) < 0:
            raise ValueError(f"labels must lie in [0, {c}) for class_names {a.class_names}")
        parts = []
        if "clip" in active:
            protos = L.class_prototypes(text)[labels]
            mask = labels if a.mask_same_class_in_clip else None
            clip = L.clip_contrastive_loss(img, protos, s, labels=mask, reduction="none")
            terms["clip"] = clip.mean()
            parts.append(a.clip_weight * clip)
        if "class_ce" in active:
            ce = F.cross_entropy(L.zero_shot_logits(img, text, s), labels, reduction="none")
            terms["class_ce"] = ce.mean()
            parts.append(a.class_weight * ce)
        if parts:
            per_example = torch.stack(parts).sum(0)
        if "image_class" in active:
            terms["image_class"] = L.image_class_loss(
                img, labels, s, form=a.contrastive_form, if_no_positives=skip
            )
        if "text_class" in active:
            terms["text_class"] = L.text_class_loss(text, s, form=a.contrastive_form)
        if "image_spurious" in active:
            if a.spurious_form == "cross_entropy":
                generic = out["prompt_embeds"]["attribute_generic"].reshape(t, len(a.attribute_prompts), -1)
                protos = F.normalize(generic, dim=-1).mean(0)  # mean of normalised template embeddings
                terms["image_spurious"] = L.image_spurious_loss(
                    img, attrs, s, form="cross_entropy", attribute_prototypes=protos
                )
            else:
                terms["image_spurious"] = L.image_spurious_loss(
                    img,
                    attrs,
                    s,
                    labels=labels,
                    grouping=a.spurious_grouping,
                    form=a.contrastive_form,
                    if_no_positives=skip,
                )
        if "text_spurious" in active:
            attr_text = out["prompt_embeds"]["attribute"].reshape(t, len(a.attribute_names), -1)
            terms["text_spurious"] = L.text_spurious_loss(text, attr_text, labels)
        return per_example, terms

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        mode = "train" if model.training else "eval"
        out = model(**self._model_inputs(inputs))
        per_example, terms = self._loss_terms(out, inputs)
        if per_example is None:
            loss = out["logit_scale"].new_zeros(())
        elif self.dro is not None:
            reduce = (
                (lambda t: self.accelerator.reduce(t, "sum")) if self.accelerator.num_processes > 1 else None
            )
            loss = self.dro.loss(per_example, inputs["groups"], update=mode == "train", all_reduce=reduce)
        else:
            loss = per_example.mean()
        for name, value in terms.items():
            if value is not None and name not in ("clip", "class_ce"):
                loss = loss + self._weight(name) * value
        if not torch.isfinite(loss):
            bad = {k: float(v.detach()) for k, v in terms.items() if v is not None}
            raise FloatingPointError(
                f"non-finite loss at step {self.state.global_step} ({mode}); terms: {bad}. Lower the learning "
                "rate or check the inputs for NaN/inf"
            )
        self._record(mode, terms, loss)
        return (loss, out) if return_outputs else loss

    def _record(self, mode: str, terms: dict[str, torch.Tensor | None], loss: torch.Tensor) -> None:
        names = self._active_terms()
        nan = torch.tensor(float("nan"), device=loss.device)
        row = torch.stack([(terms[n].detach().float() if terms.get(n) is not None else nan) for n in names])
        gathered = (
            self.accelerator.gather(row.unsqueeze(0))
            if self.accelerator.num_processes > 1
            else row.unsqueeze(0)
        )
        self._metrics[mode].append(gathered.cpu())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        rows = self._metrics[mode]
        if rows:
            table = torch.cat(rows)
            prefix = "eval_" if mode == "eval" else ""
            for j, name in enumerate(self._active_terms()):
                col = table[:, j]
                ok = ~torch.isnan(col)
                if ok.any():
                    logs[f"{prefix}{name}_loss"] = float(col[ok].mean())
                if (~ok).any():
                    logs[f"{prefix}skipped_{name}"] = int((~ok).sum())
            if self.dro is not None and mode == "train":
                for g, q in enumerate(self.dro.q.tolist()):
                    logs[f"dro_q_{g}"] = q
            self._metrics[mode] = []
        super().log(logs, start_time)

    # ------------------------------------------------------------------ evaluation
    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, out = self.compute_loss(model, inputs, return_outputs=True)
        loss = loss.detach()
        if prediction_loss_only:
            return loss, None, None
        if self.task == "classification":
            text = out["prompt_embeds"]["class"].reshape(
                len(self.args.templates), len(self.args.class_names), -1
            )
            logits = L.zero_shot_logits(out["image_embeds"], text, out["logit_scale"])
            return loss, logits.detach(), torch.stack([inputs["labels"], inputs["groups"]], dim=1)
        if "image_index" not in inputs:
            return loss, None, None
        emb = torch.cat(
            [F.normalize(out["image_embeds"], dim=-1), F.normalize(out["text_embeds"], dim=-1)], dim=1
        )
        return loss, emb.detach(), inputs["image_index"]

    def _group_metrics(self, pred: EvalPrediction) -> dict[str, float]:
        from hf_spurious.metrics import group_accuracies

        logits, labels = np.asarray(pred.predictions), np.asarray(pred.label_ids)
        keep = labels[:, 1] >= 0
        if not keep.any():
            raise ValueError("no evaluation example has a group; eval rows need 'attribute' labels")
        res = group_accuracies(
            logits[keep].argmax(-1), labels[keep, 0], labels[keep, 1], self.train_group_counts
        )
        out = {
            k: float(v)
            for k, v in res.items()
            if k != "worst_group" and isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
        }
        out.update({f"group_{g}_accuracy": float(v) for g, v in res.get("group_accuracy", {}).items()})
        return out

    def _retrieval_metrics(self, pred: EvalPrediction) -> dict[str, float]:
        """Recall@{1,5,10} both ways from exact chunked top-k (no dense images x captions matrix).

        ODmAP@k and the removed-mention rate need a separate caption gallery with a class matrix and
        counterfactual queries with removed / present classes; they are evaluated with
        ``hf-spurious evaluate`` (``hf_spurious.evaluation``) on a saved checkpoint, not in ``evaluate()``.
        """
        return retrieval_recall_metrics(
            np.asarray(pred.predictions), np.asarray(pred.label_ids), device=self.args.device
        )

    # ------------------------------------------------------------------ saving / loading
    def create_model_card(self, tags: str | list[str] | None = None, **kwargs: Any) -> None:
        """The Trainer's card, always tagged with ``_tag_names``."""
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        tags += [t for t in self._tag_names if t not in tags]
        return super().create_model_card(tags=tags, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        if state_dict is not None:  # FSDP / DeepSpeed hand over the gathered state of the wrapper
            state_dict = {k.removeprefix("model."): v for k, v in state_dict.items()}
        self.adapter.model.save_pretrained(output_dir, state_dict=state_dict)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))
        if self.dro is not None:
            Path(output_dir, DRO_STATE).write_text(json.dumps(self.dro.state_dict()))

    def _load_inner(self, checkpoint: str) -> None:
        from safetensors.torch import load_file

        inner = self.adapter.model
        adapter_file = Path(checkpoint, "adapter_model.safetensors")
        if adapter_file.exists():
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(inner, load_file(str(adapter_file)))
        else:
            weights = Path(checkpoint, "model.safetensors")
            if not weights.exists():
                raise ValueError(
                    f"no model.safetensors or adapter_model.safetensors in checkpoint {checkpoint}"
                )
            result = inner.load_state_dict(load_file(str(weights)), strict=False)
            if result.unexpected_keys:
                raise ValueError(
                    f"checkpoint {checkpoint} has unexpected weights {result.unexpected_keys[:5]}"
                )
        dro_file = Path(checkpoint, DRO_STATE)
        if self.dro is not None and dro_file.exists():
            self.dro.load_state_dict(json.loads(dro_file.read_text()))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._load_inner(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return super()._load_best_model()
        self._load_inner(self.state.best_model_checkpoint)


def retrieval_recall_metrics(
    embeddings: np.ndarray,
    image_index: np.ndarray,
    ks: tuple[int, ...] = (1, 5, 10),
    device: str | torch.device | None = "cpu",
) -> dict[str, float]:
    """Recall@K (i2t and t2i, percent) of eval pairs from exact chunked top-k.

    ``embeddings`` (N, 2d): each pair's L2-normalised image embedding then caption embedding;
    ``image_index`` (N,): the image each caption belongs to (pairs of one image share it; its first
    pair's image embedding stands for the image). Ranks with
    :func:`hf_spurious.evaluation.engine.topk_similarities` (ties: lower index first), scores with
    :func:`hf_spurious.metrics.recall_at_k`; K larger than the number of images is left out.
    """
    from hf_spurious.evaluation.engine import topk_similarities
    from hf_spurious.metrics import recall_at_k

    owner = np.asarray(image_index).astype(np.int64).reshape(-1)
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[1] % 2 or emb.shape[0] != owner.shape[0]:
        raise ValueError(
            f"embeddings must be (N, 2d) image+caption rows for N={owner.shape[0]} pairs, got {emb.shape}"
        )
    d = emb.shape[1] // 2
    _, first, caption_to_image = np.unique(owner, return_index=True, return_inverse=True)
    images, texts = emb[first, :d], emb[:, d:]
    ks = tuple(k for k in ks if k <= len(first))
    if not ks:
        raise ValueError("Recall@K needs at least one image in the eval set")
    top = max(ks)
    _, i2t = topk_similarities(images, texts, top, device=device, progress=False)
    _, t2i = topk_similarities(texts, images, top, device=device, progress=False)
    out = recall_at_k(i2t, caption_to_image, ks, direction="i2t")
    out.update(recall_at_k(t2i, caption_to_image, ks, direction="t2i"))
    return out


def _with_image_index(dataset: Any) -> Any:
    """Add an ``image_index`` column (dense ids of ``image_id``) so eval can compute Recall@K."""
    ids = _column(dataset, "image_id")
    if ids is None:
        return dataset
    index = {v: i for i, v in enumerate(dict.fromkeys(str(x) for x in ids))}
    values = [index[str(x)] for x in ids]
    if hasattr(dataset, "add_column"):
        if "image_index" in dataset.column_names:
            dataset = dataset.remove_columns("image_index")
        return dataset.add_column("image_index", values)
    return [{**dict(r), "image_index": v} for r, v in zip(dataset, values)]


__all__ = ["MISSING", "SpuriousAwareTrainer", "SpuriousModel", "dataset_groups", "retrieval_recall_metrics"]
