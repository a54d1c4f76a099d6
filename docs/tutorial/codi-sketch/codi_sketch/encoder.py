"""`SketchEncoder`: the sketch's prompt encoder, a tiny transformers ``CLIPVisionModelWithProjection``.

It maps a batch of sketches into the shared conditioning space: the projected embedding,
L2-normalised, is both ``pooled`` ``[B, 64]`` and the single conditioning token
(``tokens = pooled[:, None]``), the ToyWorld contract that lets ``compose`` average any inputs.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from codi_sdk.encoder import Encoder, EncoderOutput


def clip_config() -> CLIPVisionConfig:
    """One gray channel, 32×32 input, 4×4 patches, 2 layers of width 64, 64-d projection."""
    return CLIPVisionConfig(
        num_channels=1, image_size=32, patch_size=4, hidden_size=64, intermediate_size=256,
        num_hidden_layers=2, num_attention_heads=4, projection_dim=64,
    )


class SketchEncoder(Encoder):
    """``forward(sketches [B, 1, 32, 32] in [-1, 1])`` -> ``EncoderOutput`` in the shared space."""

    modality = "sketch"

    def __init__(self, model: CLIPVisionModelWithProjection):
        super().__init__()
        self.model = model

    @classmethod
    def toyworld(cls) -> "SketchEncoder":
        """A new, untrained encoder (stage 1 aligns it to the frozen text encoder)."""
        return cls(CLIPVisionModelWithProjection(clip_config()))

    def forward(self, batch: torch.Tensor) -> EncoderOutput:
        # sketches are already centred in [-1, 1]: they are the pixel values
        embeds = self.model(pixel_values=batch.to(self.device, self.dtype)).image_embeds
        pooled = F.normalize(embeds, dim=-1)
        return EncoderOutput(tokens=pooled[:, None, :], pooled=pooled)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``config.json`` + ``model.safetensors``."""
        self.model.save_pretrained(path, safe_serialization=True)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "SketchEncoder":
        return cls(CLIPVisionModelWithProjection.from_pretrained(path, use_safetensors=True)).eval()
