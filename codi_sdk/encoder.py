"""`Encoder`: a prompt encoder C_m that maps samples of one modality into the shared space.

Every encoder returns the same two things (see :class:`EncoderOutput`): conditioning ``tokens`` that
the denoisers cross-attend to, and a ``pooled``, L2-normalised vector that bridging alignment
trains contrastively against the text (bridge) encoder. Because all encoders land in one space,
``compose`` can mix the encodings of any set of inputs by a weighted average.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
from torch import nn


@dataclass
class EncoderOutput:
    """``tokens``: ``[B, K, D]`` conditioning context; ``pooled``: ``[B, D]``, unit L2 norm."""

    tokens: torch.Tensor
    pooled: torch.Tensor


class Encoder(nn.Module):
    """Base class of prompt encoders.

    Subclasses set ``modality`` and implement :meth:`forward` on a *batch* (what :meth:`collate`
    makes of canonical samples: a stacked tensor, or a list of strings for text) and
    :meth:`save_pretrained` / :meth:`from_pretrained` on a folder (``config.json`` + safetensors).
    """

    modality: ClassVar[str]

    def collate(self, samples: Sequence[Any]) -> Any:
        """Batch canonical samples for :meth:`forward` (default: ``torch.stack``)."""
        return torch.stack([torch.as_tensor(s) for s in samples])

    def forward(self, batch: Any) -> EncoderOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, samples: Sequence[Any]) -> EncoderOutput:
        """Encode canonical samples (inference: no gradients), on this encoder's device."""
        batch = self.collate(samples)
        if isinstance(batch, torch.Tensor):
            batch = batch.to(self.device, self.dtype if batch.is_floating_point() else batch.dtype)
        return self(batch)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def warm_start(self, trained: "dict[str, Encoder]") -> set[str]:
        """Initialise parts of this (new) encoder in place from already trained encoders of other
        modalities, e.g. a video encoder's frame encoder from the image one. Returns the names of
        the parts it initialised (attributes of this encoder), default none."""
        return set()

    def save_pretrained(self, path) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, path) -> "Encoder":  # pragma: no cover - abstract
        raise NotImplementedError
