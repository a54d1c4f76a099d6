"""The image prompt encoder C_image: transformers ``CLIPVisionModelWithProjection``.

An image batch ``[B, 3, H, W]`` in [-1, 1] is resized to the vision model's ``image_size`` (shorter
side, then a centre crop, bicubic with antialiasing, in torch), normalised with CLIP's mean and std,
and encoded; the projected embedding, L2-normalised, is both the pooled vector and the single
conditioning token (the shared-space contract: ``tokens = pooled[:, None]``).

ToyWorld uses a tiny vision transformer (:func:`toyworld_clip_config`); a real CLIP ViT-L/14 folder
(``openai/clip-vit-large-patch14`` layout: a full ``CLIPModel`` or a ``CLIPVisionModelWithProjection``)
loads with :meth:`ImageEncoder.from_pretrained`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPVisionConfig, CLIPVisionModelWithProjection
from transformers.utils import logging as hf_logging

from codi_sdk.encoder import Encoder, EncoderOutput
from codi_sdk.errors import WeightsNotFoundError

#: CLIP's image normalisation (OpenAI CLIP, also used by SD image variations and CoDi).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def toyworld_clip_config() -> CLIPVisionConfig:
    """The tiny ToyWorld vision tower: 32×32 input, 4×4 patches, 2 layers of width 64, 64-d projection."""
    return CLIPVisionConfig(
        image_size=32,
        patch_size=4,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=64,
    )


def clip_preprocess(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images ``[B, 3, H, W]`` in [-1, 1] -> CLIP pixel values ``[B, 3, size, size]``.

    Resizes the shorter side to ``size`` and centre-crops (as ``CLIPImageProcessor`` does), in torch.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W] in [-1, 1], got shape {tuple(images.shape)}")
    x = (images.float() + 1.0) / 2.0
    h, w = x.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp(0.0, 1.0)
        top, left = (nh - size) // 2, (nw - size) // 2
        x = x[..., top : top + size, left : left + size]
    mean = x.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class ImageEncoder(Encoder):
    """Prompt encoder of images: ``forward(images [B, 3, H, W] in [-1, 1])`` -> ``EncoderOutput``
    with ``pooled`` ``[B, projection_dim]`` (unit norm) and ``tokens = pooled[:, None]``."""

    modality = "image"

    def __init__(self, model: CLIPVisionModelWithProjection):
        super().__init__()
        self.model = model

    @classmethod
    def toyworld(cls) -> "ImageEncoder":
        """A new, untrained encoder in the ToyWorld configuration."""
        return cls(CLIPVisionModelWithProjection(toyworld_clip_config()))

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_size)

    @property
    def dim(self) -> int:
        """Width of the shared space this encoder maps into (``projection_dim``)."""
        return int(self.model.config.projection_dim)

    def forward(self, batch: torch.Tensor) -> EncoderOutput:
        pooled, _ = self.features(batch)
        return EncoderOutput(tokens=pooled[:, None, :], pooled=pooled)

    def features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[B, 3, H, W]`` in [-1, 1] -> ``(pooled [B, dim]`` unit norm, ``patches [B, P, hidden])``:
        the embedding and the vision tower's last hidden states of its ``P`` patches (row-major grid)."""
        pixels = clip_preprocess(batch, self.image_size).to(self.device, self.dtype)
        out = self.model(pixel_values=pixels)
        return F.normalize(out.image_embeds, dim=-1), out.last_hidden_state[:, 1:]

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``config.json`` + ``model.safetensors`` (a ``CLIPVisionModelWithProjection`` folder)."""
        self.model.save_pretrained(path, safe_serialization=True)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, torch_dtype: torch.dtype | None = None) -> "ImageEncoder":
        """Load a ``CLIPVisionModelWithProjection`` folder, or the vision half of a full ``CLIPModel``
        folder (e.g. CLIP ViT-L/14). Only safetensors weights are read."""
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise WeightsNotFoundError(
                f"{folder} has no config.json; an image encoder folder is a transformers CLIPVisionModelWithProjection "
                "or CLIPModel folder (config.json + model.safetensors)"
            )
        kw: dict = {"use_safetensors": True, "output_loading_info": True}
        if torch_dtype is not None:
            kw["dtype"] = torch_dtype
        config = json.loads((folder / "config.json").read_text())
        if config.get("model_type") == "clip":  # a full CLIPModel: its projection size lives at the top
            full = CLIPConfig.from_pretrained(folder)
            kw["config"] = full.vision_config
            kw["config"].projection_dim = full.projection_dim
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the text half of a CLIPModel folder is expected to go unused
        try:
            model, info = CLIPVisionModelWithProjection.from_pretrained(folder, **kw)
        finally:
            hf_logging.set_verbosity(verbosity)
        bad = list(info.get("missing_keys", ())) + [str(m) for m in info.get("mismatched_keys", ())]
        if bad:
            raise WeightsNotFoundError(
                f"{folder} is not a complete CLIP vision model: missing or mismatched weights {bad[:5]}"
                f"{' ...' if len(bad) > 5 else ''}"
            )
        return cls(model).eval()
