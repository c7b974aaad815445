"""VSE++ (Faghri et al., BMVC 2018; the third model of Kim et al.) as a Hugging Face model, in plain torch.

``VseppConfig`` (:mod:`.configuration`, ``model_type="vsepp"``) + ``VseppModel`` (:mod:`.modeling`): a VGG19
(:mod:`.vgg`, torchvision's layout, no torchvision) or any ``transformers`` vision backbone, a GRU text
encoder, a 1024-d joint space, CLIP-like ``forward``; the word-level tokenizer built from training
captions (:mod:`.tokenizer`); the adapter onto the common interface (:mod:`.adapter`); the Auto-class
registration that ``import hf_spurious`` installs (:mod:`.auto`). Names are imported on first use.
"""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".configuration": ["VGG19_LAYERS", "VseppConfig"],
        ".modeling": ["VseppModel", "VseppOutput"],
        ".vgg": ["VggFeatures", "load_torchvision_vgg", "read_state_dict"],
        ".tokenizer": ["build_vsepp_tokenizer", "build_vsepp_processor", "SPECIAL_TOKENS"],
        ".adapter": ["VseppAdapter"],
        ".auto": ["install_auto_registration", "register_model"],
    },
)
