"""`Bridge`: the shared conditioning space, its bridge modality, mixing, and alignment losses.

CoDi aligns every prompt encoder to one space *through text*: the text encoder is frozen and each
other encoder is trained contrastively against it on (text, m) pairs only ("bridging alignment").
The environment encoders of joint generation are aligned the same way. Once aligned, any set of
conditions is combined by a weighted average of their encodings (:meth:`Bridge.mix`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InvalidInputError


@dataclass(frozen=True)
class Bridge:
    """The shared space: ``dim`` features in ``num_tokens`` tokens, bridged by ``bridge_modality``."""

    dim: int
    num_tokens: int = 1
    bridge_modality: str = "text"

    @staticmethod
    def normalize_weights(weights: Sequence[float]) -> list[float]:
        """Check weights (finite, ≥ 0, not all 0) and scale them to sum to 1."""
        ws = [float(w) for w in weights]
        for i, w in enumerate(ws):
            if not math.isfinite(w) or w < 0:
                raise InvalidInputError(f"weight #{i} is {w!r}; accepted: finite numbers ≥ 0")
        total = sum(ws)
        if total <= 0:
            raise InvalidInputError("weights sum to 0; accepted: at least one weight > 0")
        return [w / total for w in ws]

    @classmethod
    def mix(cls, contexts: Sequence[torch.Tensor], weights: Sequence[float] | None = None) -> torch.Tensor:
        """Weighted average of conditioning contexts of equal shape ``[B, K, D]``.

        This is CoDi's composable conditioning: encodings of different inputs (of any
        modalities, several of one modality allowed) are interpolated in the shared space.
        """
        if not contexts:
            raise InvalidInputError("nothing to mix; accepted: one or more conditioning tensors")
        shapes = {tuple(c.shape) for c in contexts}
        if len(shapes) != 1:
            raise InvalidInputError(f"contexts to mix differ in shape {sorted(shapes)}; accepted: one shape [B, K, D]")
        ws = cls.normalize_weights(weights if weights is not None else [1.0] * len(contexts))
        return sum(w * c for w, c in zip(ws, contexts))

    @staticmethod
    def info_nce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE (CLIP loss) between row-aligned embeddings ``a`` and ``b`` ``[B, D]``.

        ``logit_scale`` is the log of the inverse temperature (learnable, as in CLIP); it is
        clamped to ``log(100)``. Rows are L2-normalised here.
        """
        a = F.normalize(a, dim=-1)
        b = F.normalize(b, dim=-1)
        logits = a @ b.t() * logit_scale.clamp(max=math.log(100.0)).exp()
        target = torch.arange(a.shape[0], device=a.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


class LogitScale(nn.Module):
    """A learnable temperature for :meth:`Bridge.info_nce`, initialised as CLIP's (1/0.07)."""

    def __init__(self, init: float = 1 / 0.07):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(math.log(init)))

    def forward(self) -> torch.Tensor:
        return self.value
