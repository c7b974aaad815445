"""``SpuriousTrainingArguments``: the configuration of :class:`SpuriousAwareTrainer` (TRL style)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from transformers import TrainingArguments

from hf_spurious.losses import SpuriousAwareLoss
from hf_spurious.text import TEMPLATE_SETS, TEMPLATES

from .checks import check_combinations, check_names, check_numbers, cpu_only_launch

TASKS = ("retrieval", "classification")
FREEZE_POLICIES = ("projection", "full", "lora")
WEIGHTS = (
    "clip_weight",
    "zero_shot_ce_weight",
    "image_class_weight",
    "text_class_weight",
    "image_spurious_weight",
    "text_spurious_weight",
    "itm_weight",
)
#: the allowed values of the fields with a fixed set of choices
CHOICES = {
    "contrastive_form": ("supcon", "linear"),
    "spurious_form": ("contrastive", "cross_entropy"),
    "spurious_grouping": ("attribute", "class_attribute"),
    "if_no_positives": ("skip", "raise"),
    "sampling": ("uniform", "group_balanced"),
    "objective": ("erm", "group_dro"),
    "retrieval_loss": ("auto", "clip", "sigmoid", "triplet"),
}


def default_templates() -> list[str]:
    """The 80 CLIP ImageNet prompt templates (spec §2.9), from :mod:`hf_spurious.text`."""
    return list(TEMPLATES)


@dataclass
class SpuriousTrainingArguments(TrainingArguments):
    r"""
    Configuration class for [`SpuriousAwareTrainer`]: the spurious-aware losses of Yang et al. (ICML 2023),
    the counterfactual fine-tuning of Kim et al. (CVPRW 2023), Group DRO (Sagawa et al., ICLR 2020).

    Only the parameters specific to this trainer are listed here; see [`~transformers.TrainingArguments`]
    for the rest. Every field has a help string, so [`~transformers.HfArgumentParser`] makes it a CLI.

    > Parameters that control the task and the losses

    task (`str`, *optional*, defaults to `"classification"`): `"retrieval"` (image–caption pairs, D ∪ D′)
        or `"classification"` (labelled images with spurious attributes, Waterbirds-style).
    clip_weight, zero_shot_ce_weight, image_class_weight, text_class_weight, image_spurious_weight,
    text_spurious_weight, itm_weight (`float`): weights of L_CLIP, the ERM cross-entropy on the zero-shot
        logits, L_vc, L_lc, L_vs, L_ls and BLIP's ITM loss. A term with weight 0 is not computed; at least
        one term of the task must be on (classification: any but ITM; retrieval: L_CLIP or ITM).
    contrastive_form (`str`, defaults to `"supcon"`): `"supcon"` (the paper's CS) or `"linear"` (the
        released code's cosine-mean form, reference-compat).
    spurious_form (`str`, defaults to `"contrastive"`): L_vs as `"contrastive"` or the code's `"cross_entropy"`.
    spurious_grouping (`str`, defaults to `"attribute"`): L_vs positives share the `"attribute"` or the
        `"class_attribute"` group.
    retrieval_loss (`str`, defaults to `"auto"`): the retrieval L_CLIP, `"clip"` | `"sigmoid"` | `"triplet"`;
        `"auto"` = the adapter's family (SigLIP: sigmoid, VSE++: triplet); triplet_margin,
        triplet_max_violation. gather_global_negatives (`bool`, defaults to `True`): under DDP every term
        sees the negatives of every process (the global batch).

    > Parameters that control the prompts, the model and what is trained

    templates (`list[str]`, defaults to the 80 CLIP ImageNet templates of `hf_spurious.text.TEMPLATES`),
    class_names, attribute_names (L_ls prompts), attribute_prompts (cross-entropy L_vs prompts).
    logit_scale_init (`float`, *optional*): re-initialise the log logit scale s (τ = 1/exp(s); BLIP: temp);
    learn_logit_scale (`bool`, defaults to `True`).
    freeze_policy (`str`, defaults to `"projection"`): `"projection"` | `"full"` | `"lora"` (with
        lora_target_modules, lora_r, lora_alpha); train_text_embeddings (the released code's extra text
        parameters). use_cached_features (`bool`, *optional*, on by default under `"projection"`),
        feature_cache_dir.

    > Parameters that control sampling, the objective, the schedule and model selection

    sampling (`"uniform"` | `"group_balanced"`), objective (`"erm"` | `"group_dro"`), dro_step_size (η,
    0.01), dro_generalization_adjustment (C), if_no_positives (`"skip"` | `"raise"`),
    lr_step_decay_every_epochs / lr_step_decay_factor (Kim et al.'s ×0.5 step decay). Group DRO needs
    `task="classification"` and a per-example term (clip_weight or zero_shot_ce_weight > 0).

    > Deprecated parameters

    class_weight (`float`, *optional*): renamed `zero_shot_ce_weight` (it weights the zero-shot
        cross-entropy, not a class); still accepted with a `FutureWarning` until hf_spurious 0.3.

    > [!NOTE]
    > Overridden [`~transformers.TrainingArguments`] defaults: `remove_unused_columns=False` (the collators
    > need the raw columns), `logging_steps=10`, `learning_rate=1e-5` (`report_to="none"` is already the
    > default); for `task="classification"`, `metric_for_best_model="worst_group_accuracy"` and
    > `greater_is_better=True` unless given (set `load_best_model_at_end=True` with matching eval/save
    > strategies to keep the best-val-worst-group checkpoint, as the paper does). Under the `"projection"`
    > policy `ddp_find_unused_parameters` defaults to `False`. Launched as several processes (`accelerate
    > launch` / `torchrun`, `WORLD_SIZE` > 1) on a machine without a GPU, `use_cpu` is turned on: without it
    > transformers runs N independent world-size-1 trainings into one output folder.
    """

    # --- task and losses ---
    task: str = field(
        default="classification",
        metadata={
            "help": "Task: 'retrieval' (image-caption pairs, D ∪ D′) or 'classification' (labels + attributes).",
            "choices": list(TASKS),
        },
    )
    clip_weight: float = field(
        default=1.0, metadata={"help": "Weight of the symmetric CLIP contrastive loss L_CLIP."}
    )
    zero_shot_ce_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the cross-entropy on the zero-shot class logits (the paper's ERM baseline)."
        },
    )
    image_class_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of L_vc: image-image contrastive loss over classes (Yang et al. 2023)."},
    )
    text_class_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of L_lc: prompt-prompt contrastive loss over classes (templates x classes)."
        },
    )
    image_spurious_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of L_vs: image contrastive loss over spurious-attribute groups."},
    )
    text_spurious_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of L_ls: mean |cos| between class prompts and attribute prompts (decorrelation)."
        },
    )
    itm_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of BLIP's image-text matching loss (retrieval, models with an ITM head only)."
        },
    )
    contrastive_form: str = field(
        default="supcon",
        metadata={
            "help": "Form of L_vc/L_lc/L_vs: 'supcon' (paper CS) or 'linear' (released code, reference-compat).",
            "choices": ["supcon", "linear"],
        },
    )
    spurious_form: str = field(
        default="contrastive",
        metadata={
            "help": "L_vs as 'contrastive' (paper) or 'cross_entropy' (released code: attribute classifier).",
            "choices": ["contrastive", "cross_entropy"],
        },
    )
    spurious_grouping: str = field(
        default="attribute",
        metadata={
            "help": "L_vs positives share the 'attribute' value or the '(class, attribute)' group.",
            "choices": ["attribute", "class_attribute"],
        },
    )
    mask_same_class_in_clip: bool = field(
        default=False,
        metadata={
            "help": "Classification: drop same-class off-diagonal pairs from the CLIP loss denominators."
        },
    )
    if_no_positives: str = field(
        default="skip",
        metadata={
            "help": "A contrastive term whose batch has no positive pair: 'skip' it for that step (counted "
            "in the logs as skipped_<term>) or 'raise'.",
            "choices": ["skip", "raise"],
        },
    )
    retrieval_loss: str = field(
        default="auto",
        metadata={
            "help": "Retrieval loss: 'clip' (symmetric InfoNCE), 'sigmoid' (SigLIP, with the model's logit "
            "bias), 'triplet' (VSE++ hinge loss) or 'auto' (the model family's own loss).",
            "choices": ["auto", "clip", "sigmoid", "triplet"],
        },
    )
    triplet_margin: float = field(
        default=0.2, metadata={"help": "Margin of the triplet retrieval loss (VSE++: 0.2)."}
    )
    triplet_max_violation: bool = field(
        default=True,
        metadata={"help": "Triplet loss: hardest negative only (VSE++) instead of the sum over negatives."},
    )
    gather_global_negatives: bool = field(
        default=True,
        metadata={
            "help": "Under DDP, gather the embeddings (and labels) of every process so every contrastive and "
            "cross-group term uses the global batch's negatives, with gradients equal to one process "
            "holding the global batch. False: each process uses its own batch only."
        },
    )
    class_weight: float | None = field(
        default=None,
        metadata={"help": "Deprecated (removed in hf_spurious 0.3): use zero_shot_ce_weight."},
    )
    # --- prompts ---
    templates: list[str] = field(
        default_factory=default_templates,
        metadata={
            "help": "Prompt templates with one '{}', or a set by name: 'default' (the 80 CLIP ImageNet templates, the default) or 'simple' ('a photo of a {}.')."
        },
    )
    class_names: list[str] | None = field(
        default=None,
        metadata={"help": "Class names filled into the templates (classification), e.g. landbird waterbird."},
    )
    attribute_names: list[str] | None = field(
        default=None,
        metadata={
            "help": "Spurious-attribute names for L_ls prompts, e.g. land water (or fewer than the attribute "
            "values, e.g. baby: L_ls pushes class prompts away from every one given)."
        },
    )
    attribute_prompts: list[str] | None = field(
        default=None,
        metadata={
            "help": "Generic attribute prompts for the cross-entropy L_vs, e.g. 'bird on land' 'bird on water'."
        },
    )
    # --- model ---
    logit_scale_init: float | None = field(
        default=None,
        metadata={
            "help": "Re-initialise the log logit scale s (tau = 1/exp(s)); Yang et al. use ln(1/0.07) = "
            f"{math.log(1 / 0.07):.4f}. None keeps the pretrained value."
        },
    )
    learn_logit_scale: bool = field(
        default=True, metadata={"help": "Train the logit scale (else keep it fixed)."}
    )
    freeze_policy: str = field(
        default="projection",
        metadata={
            "help": "What is trained: 'projection' (projections + logit scale), 'full', or 'lora' (peft).",
            "choices": list(FREEZE_POLICIES),
        },
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "LoRA target module names (with --freeze-policy lora; default: the adapter's usual modules)."
        },
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    train_text_embeddings: bool = field(
        default=False,
        metadata={
            "help": "Also train CLIP's text token/position embeddings and final layer norm, as the authors' "
            "released code does under its --freeze_language option. Turns cached features off."
        },
    )
    use_cached_features: bool | None = field(
        default=None,
        metadata={
            "help": "Train on pre-computed frozen-encoder features (default: on with --freeze-policy projection, else off)."
        },
    )
    feature_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where cached features are stored (default: <output_dir>/feature_cache)."},
    )
    # --- sampling, objective ---
    sampling: str = field(
        default="uniform",
        metadata={
            "help": "'uniform' shuffling or 'group_balanced' (weights 1/|group|, with replacement, as WILDS).",
            "choices": ["uniform", "group_balanced"],
        },
    )
    objective: str = field(
        default="erm",
        metadata={
            "help": "'erm' (mean loss) or 'group_dro' (Sagawa et al. 2020, online group weights).",
            "choices": ["erm", "group_dro"],
        },
    )
    dro_step_size: float = field(
        default=0.01, metadata={"help": "Group DRO step size eta for q <- q exp(eta loss_g)."}
    )
    dro_generalization_adjustment: float = field(
        default=0.0,
        metadata={"help": "Group DRO generalisation adjustment C (adds C / sqrt(n_g) to group losses)."},
    )
    lr_step_decay_every_epochs: float | None = field(
        default=None,
        metadata={
            "help": "Step decay: multiply the learning rate by lr_step_decay_factor every this many epochs "
            "(Kim et al.: 2 for CLIP, 0.5 for BLIP). Replaces lr_scheduler_type when set."
        },
    )
    lr_step_decay_factor: float = field(default=0.5, metadata={"help": "Factor of the step decay."})
    # --- overridden TrainingArguments defaults ---
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep all dataset columns (the collators need them)."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every X updates steps."})
    learning_rate: float = field(default=1e-5, metadata={"help": "The initial learning rate."})

    def __post_init__(self) -> None:
        self._map_deprecated()
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.freeze_policy not in FREEZE_POLICIES:
            raise ValueError(f"freeze_policy must be one of {FREEZE_POLICIES}, got {self.freeze_policy!r}")
        check_numbers(self, WEIGHTS)
        check_names(self)
        self.use_cpu = self.use_cpu or cpu_only_launch()
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if (
            len(self.templates) == 1 and self.templates[0] in TEMPLATE_SETS
        ):  # a set by name: "default", "simple"
            self.templates = list(TEMPLATE_SETS[self.templates[0]])
        bad = [t for t in self.templates if t.count("{}") != 1]
        if bad:
            raise ValueError(f"every template needs exactly one '{{}}'; fix {bad[0]!r}")
        if self.task == "classification" and self.metric_for_best_model is None:
            self.metric_for_best_model = "worst_group_accuracy"
            if self.greater_is_better is None:
                self.greater_is_better = True
        check_combinations(self, WEIGHTS)
        if self.use_cached_features and self.train_text_embeddings:
            raise ValueError(
                "--train-text-embeddings changes the text features: pass --use-cached-features false"
            )
        if self.use_cached_features and self.freeze_policy != "projection":
            raise ValueError("--use-cached-features needs frozen encoders: pass --freeze-policy projection")
        super().__post_init__()

    def _map_deprecated(self) -> None:
        """``class_weight`` -> ``zero_shot_ce_weight`` with a ``FutureWarning`` (TRL style)."""
        if self.class_weight is None:
            return
        warnings.warn(
            "class_weight is deprecated and will be removed in hf_spurious 0.3; use zero_shot_ce_weight "
            "(the weight of the zero-shot cross-entropy)",
            FutureWarning,
            stacklevel=4,  # the caller of SpuriousTrainingArguments(...)
        )
        if self.zero_shot_ce_weight not in (0.0, self.class_weight):
            raise ValueError("give zero_shot_ce_weight or its deprecated name class_weight, not both")
        self.zero_shot_ce_weight, self.class_weight = self.class_weight, None

    @property
    def cached(self) -> bool:
        """Whether training runs on cached features (the default under the 'projection' policy)."""
        if self.use_cached_features is None:
            return self.freeze_policy == "projection" and not self.train_text_embeddings
        return bool(self.use_cached_features)


def build_loss(
    args: SpuriousTrainingArguments, *, with_itm: bool = False, family_loss: str = "clip"
) -> SpuriousAwareLoss:
    """The :class:`~hf_spurious.losses.SpuriousAwareLoss` of ``args`` (weights and flags); ``with_itm``:
    the model has an ITM head and trains on raw images (else ``itm_weight`` is ignored); ``family_loss``:
    the adapter's retrieval loss, used when ``args.retrieval_loss`` is ``"auto"``."""
    retrieval_loss = family_loss if args.retrieval_loss == "auto" else args.retrieval_loss
    return SpuriousAwareLoss(
        args.task,  # type: ignore[arg-type]
        clip_weight=args.clip_weight,
        zero_shot_ce_weight=args.zero_shot_ce_weight,
        image_class_weight=args.image_class_weight,
        text_class_weight=args.text_class_weight,
        image_spurious_weight=args.image_spurious_weight,
        text_spurious_weight=args.text_spurious_weight,
        itm_weight=args.itm_weight if with_itm else 0.0,
        contrastive_form=args.contrastive_form,  # type: ignore[arg-type]
        spurious_form=args.spurious_form,  # type: ignore[arg-type]
        spurious_grouping=args.spurious_grouping,  # type: ignore[arg-type]
        mask_same_class_in_clip=args.mask_same_class_in_clip,
        if_no_positives=args.if_no_positives,  # type: ignore[arg-type]
        retrieval_loss=retrieval_loss,  # type: ignore[arg-type]
        triplet_margin=args.triplet_margin,
        triplet_max_violation=args.triplet_max_violation,
        gather_global_negatives=args.gather_global_negatives,
    )
