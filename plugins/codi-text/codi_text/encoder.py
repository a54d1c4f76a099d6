"""`TextEncoder`: the text prompt encoder C_text, a CLIP text transformer. Text is the bridge.

In CoDi the text encoder is the frozen anchor of bridging alignment: every other modality's
encoder is trained contrastively against it on (text, m) pairs. It is a transformers
``CLIPTextModelWithProjection``: the hidden state at the ``[EOS]`` token, projected, and
L2-normalised is the pooled vector; the conditioning context is that vector as one token
(``tokens`` ``[B, 1, D]``), as every ToyWorld encoder returns.

ToyWorld size: width 64, 2 layers, 32 positions, projection 64, with the ToyWorld word-level
tokenizer. Real size: any CLIP text folder (``CLIPTextModelWithProjection`` + CLIP tokenizer, e.g.
openai/clip-vit-large-patch14 saved locally), for which ``D`` is its ``projection_dim``.

The empty string is encodable (``[BOS] [EOS]``): it is the unconditional context of
classifier-free guidance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch.nn.functional as F
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, PreTrainedTokenizerBase

from codi_sdk.encoder import Encoder, EncoderOutput
from codi_sdk.errors import InvalidInputError, WeightsNotFoundError

from .tokenizer import BOS, EOS, MAX_TOKENS, PAD, VOCABULARY, build_toyworld_tokenizer, has_tokenizer, load_tokenizer


def toyworld_clip_config() -> CLIPTextConfig:
    """The tiny CLIP text transformer of ToyWorld (pools at ``[EOS]``, id 3)."""
    return CLIPTextConfig(
        vocab_size=len(VOCABULARY), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=64,
        bos_token_id=VOCABULARY.index(BOS), eos_token_id=VOCABULARY.index(EOS), pad_token_id=VOCABULARY.index(PAD),
    )


def collate_texts(samples: Sequence[Any], who: str) -> list[str]:
    """Check that ``samples`` is a non-empty batch of ``str`` and return it as a list."""
    if isinstance(samples, (str, bytes)):
        raise InvalidInputError(f"{who} takes a batch (a list) of strings, got a single {type(samples).__name__}; wrap it in a list")
    texts = list(samples)
    if not texts:
        raise InvalidInputError(f"{who} needs at least one text in a batch")
    bad = sorted({type(s).__name__ for s in texts if not isinstance(s, str)})
    if bad:
        raise InvalidInputError(f"{who} takes a list of str, got items of type {', '.join(bad)}")
    return texts


class TextEncoder(Encoder):
    """Texts -> :class:`~codi_sdk.encoder.EncoderOutput` (``tokens`` ``[B, 1, D]``, ``pooled`` ``[B, D]``).

    Example:
        >>> enc = TextEncoder.toyworld()
        >>> out = enc.encode(["a red circle", ""])
        >>> out.tokens.shape, out.pooled.shape
        (torch.Size([2, 1, 64]), torch.Size([2, 64]))
    """

    modality = "text"

    def __init__(self, model: CLIPTextModelWithProjection, tokenizer: PreTrainedTokenizerBase):
        super().__init__()
        if len(tokenizer) > model.config.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the CLIP text model only {model.config.vocab_size}")
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def toyworld(cls) -> "TextEncoder":
        """A new, untrained encoder in the ToyWorld configuration."""
        return cls(CLIPTextModelWithProjection(toyworld_clip_config()), build_toyworld_tokenizer())

    @property
    def dim(self) -> int:
        """``D``, the size of the shared space this encoder maps into."""
        return self.model.config.projection_dim

    def collate(self, samples: Sequence[Any]) -> list[str]:
        """A batch of texts is a list of ``str``."""
        return collate_texts(samples, "TextEncoder")

    def forward(self, batch: Sequence[str]) -> EncoderOutput:
        texts = self.collate(batch)
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.model.config.max_position_embeddings, return_tensors="pt"
        ).to(self.device)
        embeds = self.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).text_embeds
        pooled = F.normalize(embeds, dim=-1)
        return EncoderOutput(tokens=pooled[:, None, :], pooled=pooled)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the CLIP text model (``config.json`` + ``model.safetensors``) and its tokenizer."""
        folder = Path(path)
        self.model.save_pretrained(str(folder))
        self.tokenizer.save_pretrained(str(folder))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, tokenizer_path: str | os.PathLike | None = None) -> "TextEncoder":
        """Load a local CLIP text folder: our own, or a real one.

        The tokenizer is taken from ``tokenizer_path`` if given, else from the folder itself, its
        ``tokenizer/`` sub-folder, or a sibling ``tokenizer/`` (the Stable Diffusion layout, where
        ``text_encoder/`` and ``tokenizer/`` sit side by side).
        """
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise WeightsNotFoundError(f"no CLIP text model in {folder}: expected config.json + model.safetensors")
        if tokenizer_path is None:
            candidates = [folder, folder / "tokenizer", folder.parent / "tokenizer"]
            found = [c for c in candidates if has_tokenizer(c)]
            if not found:
                raise WeightsNotFoundError(f"no tokenizer for {folder}: looked in {', '.join(map(str, candidates))}")
            tokenizer_path = found[0]
        model = CLIPTextModelWithProjection.from_pretrained(str(folder), local_files_only=True)
        return cls(model, load_tokenizer(tokenizer_path)).eval()
