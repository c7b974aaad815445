"""``SpuriousAwareTrainer``: a ``transformers.Trainer`` for every supported model family (CLIP, BLIP, SigLIP, VSE++) with the spurious-aware losses."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import EvalPrediction, Trainer
from transformers.utils import logging

from hf_spurious.cache import atomic_write_text
from hf_spurious.losses import LOG_NAMES, SpuriousAwareLoss, zero_shot_logits

from .collators import MISSING, ClassificationCollator, RetrievalCollator
from .config import SpuriousTrainingArguments, build_loss
from .features import cached_datasets
from .group_dro import GroupDRO
from .hooks import TemperatureClamp, itm_term, step_decay_scheduler
from .metrics import group_metrics, retrieval_recall_metrics
from .model import SpuriousModel, TrainableAdapter, load_checkpoint_weights, prepare_adapter
from .prompts import prompt_inputs
from .rows import dataset_groups, infer_num_attributes, with_image_index
from .samplers import GroupBalancedSampler, global_draw_size

logger = logging.get_logger(__name__)
DRO_STATE = "group_dro.json"


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

    The loss is :class:`hf_spurious.losses.SpuriousAwareLoss` (``self.loss_fn``): its per-example part is
    averaged (ERM) or reweighted by Group DRO, then its weighted batch-level terms are added.

    Evaluation: group accuracies (classification) or Recall@{1,5,10} both ways by exact chunked top-k
    (retrieval, :func:`~hf_spurious.training.metrics.retrieval_recall_metrics`). ODmAP@k and the
    removed-mention rate need a class-annotated caption gallery and counterfactual queries: evaluate a saved
    checkpoint with ``hf-spurious evaluate``.

    Logged per logging step (mean over the steps; ``eval_`` prefix in evaluation): ``<term>_loss`` for
    every active term (``clip``, ``class_ce``, ``image_class``, ``text_class``, ``image_spurious``,
    ``text_spurious``, ``itm``), ``skipped_<term>`` for batches where a term was undefined (a contrastive
    term without a positive pair under ``if_no_positives="skip"``; ITM on a batch of one image's captions),
    ``dro_q_<g>`` (Group DRO weights). A non-finite loss raises ``FloatingPointError`` naming the terms.
    Under DDP the terms see every process's rows (``gather_global_negatives``); BLIP's temperature is
    clamped to [0.001, 0.5] after every optimizer step.
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
        args = self._check_args(args)
        self.adapter = prepare_adapter(model, args)
        processing_class = processing_class if processing_class is not None else self.adapter.processor
        self.task = args.task
        self.num_attributes = self._num_attributes(args, train_dataset)
        self.loss_fn = self._build_loss(args)
        train_dataset, eval_dataset = self._prepare_datasets(
            args, processing_class, train_dataset, eval_dataset
        )
        self._setup_groups(args, train_dataset, train_group_counts)
        self._metrics: dict[str, dict[str, list[torch.Tensor]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }
        self._prompt_inputs = prompt_inputs(self.adapter, args, processing_class)
        triplet = self.task == "retrieval" and self.loss_fn.retrieval_loss == "triplet"  # no logit scale
        if args.ddp_find_unused_parameters is None and args.freeze_policy == "projection" and not triplet:
            args.ddp_find_unused_parameters = False  # every projection and the scale take part in every step
        super().__init__(
            model=TrainableAdapter(self.adapter),
            args=args,
            data_collator=data_collator
            if data_collator is not None
            else self._default_collator(processing_class),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=compute_metrics if compute_metrics is not None else self._default_metrics(),
            callbacks=callbacks,
            optimizers=optimizers,
        )
        self.add_callback(TemperatureClamp(self.adapter))
        if hasattr(self.adapter.model, "add_model_tags"):
            self.adapter.model.add_model_tags(self._tag_names)

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _check_args(args: SpuriousTrainingArguments | None) -> SpuriousTrainingArguments:
        """The arguments (default ones when None); the checks that need no model are in ``__post_init__``."""
        if args is None:
            args = SpuriousTrainingArguments(output_dir="hf-spurious-output")
        if not isinstance(args, SpuriousTrainingArguments):
            raise TypeError("args must be a SpuriousTrainingArguments")
        if args.task == "classification" and not args.class_names:
            raise ValueError(
                "--task classification needs --class-names (e.g. --class-names landbird waterbird)"
            )
        return args

    @staticmethod
    def _num_attributes(args: SpuriousTrainingArguments, dataset: Any) -> int:
        if args.task != "classification":
            return 0
        # the data's attribute values, or more when more names are given; L_ls may use fewer prompts than
        # values (Yang et al.'s ImageNet study: the single prompt "baby" for images with and without one)
        return max(len(args.attribute_names or ()), infer_num_attributes(dataset))

    def _build_loss(self, args: SpuriousTrainingArguments) -> SpuriousAwareLoss:
        """The loss module of ``args``; BLIP's ITM term needs raw images, so not on cached features."""
        with_itm = args.task == "retrieval" and getattr(self.adapter, "has_itm", False)
        if with_itm and args.cached and args.itm_weight > 0:
            logger.warning(
                "BLIP's ITM loss needs raw images (cross-attention), so it is off with cached features; "
                "use --freeze-policy full or lora to train with ITM"
            )
        family = getattr(self.adapter, "retrieval_loss", "clip")
        return build_loss(args, with_itm=with_itm and not args.cached, family_loss=family)

    def _prepare_datasets(
        self, args: SpuriousTrainingArguments, processor: Any, train_dataset: Any, eval_dataset: Any
    ) -> tuple[Any, Any]:
        """Retrieval rows get a dense ``image_index``; cached training swaps rows for frozen features."""
        if self.task == "retrieval":
            train_dataset = with_image_index(train_dataset) if train_dataset is not None else None
            eval_dataset = with_image_index(eval_dataset) if eval_dataset is not None else None
        if args.cached:
            train_dataset, eval_dataset = cached_datasets(
                self.adapter, args, processor, train_dataset, eval_dataset
            )
        return train_dataset, eval_dataset

    def _setup_groups(
        self, args: SpuriousTrainingArguments, train_dataset: Any, train_group_counts: list[int] | None
    ) -> None:
        """Training group ids (balanced sampling, Group DRO), the Group DRO state and the training group
        counts that weight the adjusted average accuracy (spec §2.6)."""
        n_groups = len(args.class_names or []) * self.num_attributes
        self.train_groups: list[int] | None = None
        if args.sampling == "group_balanced" or args.objective == "group_dro":
            if train_dataset is None:
                raise ValueError("group-balanced sampling / Group DRO need a train_dataset")
            self.train_groups = dataset_groups(train_dataset, self.num_attributes)
        self.dro: GroupDRO | None = None
        if args.objective == "group_dro":
            counts = train_group_counts or np.bincount(self.train_groups, minlength=n_groups).tolist()
            self.dro = GroupDRO(counts, args.dro_step_size, args.dro_generalization_adjustment)
        if train_group_counts is None and self.task == "classification" and train_dataset is not None:
            try:
                groups = self.train_groups or dataset_groups(train_dataset, self.num_attributes)
                train_group_counts = np.bincount(groups, minlength=n_groups).tolist()
            except ValueError:
                train_group_counts = None
        self.train_group_counts = train_group_counts

    def _default_collator(self, processor: Any) -> Callable:
        if self.task == "retrieval":
            return RetrievalCollator(processor)
        return ClassificationCollator(processor, num_attributes=self.num_attributes)

    def _default_metrics(self) -> Callable[[EvalPrediction], dict[str, float]]:
        return self._group_metrics if self.task == "classification" else self._retrieval_metrics

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        if self.args.sampling == "group_balanced":
            ds = train_dataset if train_dataset is not None else self.train_dataset
            same = ds is self.train_dataset
            groups = self.train_groups if same else dataset_groups(ds, self.num_attributes)
            # one seeded global draw, identical on every process; accelerate gives each process its own
            # batches of it (disjoint shares, tests/test_ddp.py). Under DDP the draw is whole global batches
            # so no process is padded with repeats; one process keeps len(groups) draws (as before).
            n, world = len(groups), self.args.world_size
            draws = global_draw_size(n, self.args.train_batch_size * world) if world > 1 else n
            return GroupBalancedSampler(groups, num_samples=draws, seed=self.args.data_seed or self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        every = self.args.lr_step_decay_every_epochs
        if every is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        self.lr_scheduler = step_decay_scheduler(
            optimizer if optimizer is not None else self.optimizer,
            num_rows=len(self.train_dataset),
            batch_size=self.args.train_batch_size,
            world_size=self.args.world_size,
            accumulation=self.args.gradient_accumulation_steps,
            every_epochs=every,
            factor=self.args.lr_step_decay_factor,
        )
        self._created_lr_scheduler = True
        return self.lr_scheduler

    # ------------------------------------------------------------------ loss
    def _model_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        keys = ("pixel_values", "image_features", "input_ids", "attention_mask", "text_features")
        device = self.args.device
        prompts = {n: {k: v.to(device) for k, v in p.items()} for n, p in self._prompt_inputs.items()}
        return {**{k: inputs[k] for k in keys if k in inputs}, "prompts": prompts}

    def _loss_inputs(self, out: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
        """The keyword inputs of ``self.loss_fn`` beyond the image / text embeddings and the scale."""
        if self.task == "retrieval":
            return {"itm_loss": itm_term(self.adapter, inputs), "logit_bias": out.get("logit_bias")}
        labels, prompts = inputs["labels"], out["prompt_embeds"]
        t, c = len(self.args.templates), len(self.args.class_names)
        class_embeds = prompts["class"].reshape(t, c, -1)
        if int(labels.max()) >= c or int(labels.min()) < 0:
            raise ValueError(f"labels must lie in [0, {c}) for class_names {self.args.class_names}")
        return {
            "labels": labels,
            "groups": inputs.get("groups") if self.dro is not None else None,
            "attributes": inputs.get("attributes"),
            "class_embeds": class_embeds,
            "attribute_embeds": prompts.get("attribute"),  # (T * S, D): reshaped where L_ls uses it
            "attribute_prompt_embeds": prompts.get("attribute_generic"),
        }

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        mode = "train" if model.training else "eval"
        out = model(**self._model_inputs(inputs))
        terms = self.loss_fn(
            out["image_embeds"], out["text_embeds"], out["logit_scale"], **self._loss_inputs(out, inputs)
        )
        per_example, groups = terms.pop("per_example"), terms.pop("groups")
        if per_example is None:
            loss = out["logit_scale"].new_zeros(())
        elif self.dro is not None:
            # gathered rows: every process already holds the global batch; else sum the group statistics
            local = self.accelerator.num_processes > 1 and not self.loss_fn.gathers()
            reduce = (lambda t: self.accelerator.reduce(t, "sum")) if local else None
            loss = self.dro.loss(per_example, groups, update=mode == "train", all_reduce=reduce)
        else:
            loss = per_example.mean()
        loss = self.loss_fn.add_batch_terms(loss, terms)
        if not torch.isfinite(loss):
            bad = {LOG_NAMES[k]: float(v.detach()) for k, v in terms.items() if v is not None}
            raise FloatingPointError(
                f"non-finite loss at step {self.state.global_step} ({mode}); terms: {bad}. Lower the learning "
                "rate or check the inputs for NaN/inf"
            )
        self._record(mode, terms, loss.device)
        return (loss, out) if return_outputs else loss

    def _record(self, mode: str, terms: dict[str, torch.Tensor | None], device: torch.device) -> None:
        """Buffer this step's active terms (NaN = skipped), gathered over processes in one collective."""
        names = self.loss_fn.active
        nan = torch.tensor(float("nan"), device=device)
        row = torch.stack([(terms[n].detach().float() if terms.get(n) is not None else nan) for n in names])
        many = self.accelerator.num_processes > 1
        gathered = (self.accelerator.gather(row.unsqueeze(0)) if many else row.unsqueeze(0)).cpu()
        for j, name in enumerate(names):
            self._metrics[mode][LOG_NAMES[name]].append(gathered[:, j])

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = self._metrics[mode]
        if metrics:
            prefix = "eval_" if mode == "eval" else ""
            for name, chunks in metrics.items():
                col = torch.cat(chunks)
                ok = ~torch.isnan(col)
                if ok.any():
                    logs[f"{prefix}{name}_loss"] = float(col[ok].mean())
                if (~ok).any():
                    logs[f"{prefix}skipped_{name}"] = int((~ok).sum())
            if self.dro is not None and mode == "train":
                for g, q in enumerate(self.dro.q.tolist()):
                    logs[f"dro_q_{g}"] = q
            self._metrics[mode] = defaultdict(list)
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
            logits = zero_shot_logits(out["image_embeds"], text, out["logit_scale"])
            return loss, logits.detach(), torch.stack([inputs["labels"], inputs["groups"]], dim=1)
        if "image_index" not in inputs:
            return loss, None, None
        emb = torch.cat(
            [F.normalize(out["image_embeds"], dim=-1), F.normalize(out["text_embeds"], dim=-1)], dim=1
        )
        return loss, emb.detach(), inputs["image_index"]

    def _group_metrics(self, pred: EvalPrediction) -> dict[str, float]:
        return group_metrics(pred, self.train_group_counts)

    def _retrieval_metrics(self, pred: EvalPrediction) -> dict[str, float]:
        """Recall@{1,5,10} both ways from exact chunked top-k (ODmAP@k: ``hf-spurious evaluate``)."""
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
            atomic_write_text(Path(output_dir, DRO_STATE), json.dumps(self.dro.state_dict()))

    def _load_inner(self, checkpoint: str) -> None:
        load_checkpoint_weights(self.adapter.model, checkpoint)
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


__all__ = [
    "MISSING",
    "SpuriousAwareTrainer",
    "SpuriousModel",
    "TrainableAdapter",
    "dataset_groups",
    "retrieval_recall_metrics",
]
