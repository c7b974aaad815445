"""Captions from any transformers image-captioning model (BLIP, GIT, ...), batched.

transformers 5 has no ``"image-to-text"`` pipeline task any more; captioning models run under
``"image-text-to-text"`` with an empty text prompt (or a conditioning prompt such as ``"a picture of"``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from hf_spurious.images import load_rgb

TASK = "image-text-to-text"


class Captioner:
    """``Captioner(model_id_or_dir)(images) -> list[str]`` (a single image gives a single string).

    Loads with ``transformers.pipeline`` (no remote code). ``prompt`` conditions the caption (BLIP
    keeps it as the caption's start); decoding is greedy by default, so captions are deterministic.
    """

    def __init__(
        self,
        model_id_or_dir: str | os.PathLike[str],
        device: str | int | None = None,
        *,
        prompt: str = "",
        batch_size: int = 8,
        max_new_tokens: int = 30,
        generate_kwargs: dict[str, Any] | None = None,
    ) -> None:
        from transformers import pipeline  # lazy: heavy optional dependency

        if device is None:
            import torch  # lazy: keep `import hf_spurious.text` light

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model_id = str(model_id_or_dir)
        self.prompt = prompt
        self.batch_size = int(batch_size)
        self.generate_kwargs = {
            "max_new_tokens": int(max_new_tokens),
            "do_sample": False,
            **(generate_kwargs or {}),
        }
        self.pipe = pipeline(TASK, model=self.model_id, device=device, trust_remote_code=False)

    def caption(self, images: Sequence[Any]) -> list[str]:
        """One caption per image, in order."""
        pil = [load_rgb(im, f"image {i}") for i, im in enumerate(images)]
        if not pil:
            return []
        out = self.pipe(
            images=pil,
            text=[self.prompt] * len(pil),
            batch_size=self.batch_size,
            generate_kwargs=self.generate_kwargs,
        )
        return [" ".join(str(_generated(o)).split()) for o in out]

    def __call__(self, images: Any) -> str | list[str]:
        if isinstance(images, (list, tuple)):
            return self.caption(images)
        return self.caption([images])[0]

    def __repr__(self) -> str:
        return f"Captioner({self.model_id!r})"


def _generated(output: Any) -> str:
    """The generated text of one pipeline output (a dict, or a one-element list of dicts)."""
    if isinstance(output, list):
        output = output[0]
    return output["generated_text"] if isinstance(output, dict) else output
