"""CoDi's latent shift: a parameter-free way to let frames see their past.

The feature channels are split into ``num_chunks`` (8) chunks; chunk ``i`` is shifted forward in
time by ``i`` frames with zero fill, so frame ``t`` of chunk ``i`` carries what frame ``t - i`` had,
and the first ``i`` frames of chunk ``i`` are zero. A 2-D convolution that follows then mixes
features of up to ``num_chunks`` consecutive frames at no extra cost.

:func:`latent_shift` is the pure operation; :class:`LatentShift` is the trainable block that the
video denoiser inserts after every residual block: ``h + gate * (latent_shift(h) - h)`` with a
per-channel ``gate`` that starts at 0 (identity, so image weights keep their meaning) and equals
CoDi's latent shift at ``gate = 1``.
"""

from __future__ import annotations

import torch
from torch import nn

#: Number of channel chunks of CoDi's latent shift.
NUM_CHUNKS = 8


def latent_shift(x: torch.Tensor, num_frames: int | None = None, num_chunks: int = NUM_CHUNKS) -> torch.Tensor:
    """Shift channel chunk ``i`` of ``x`` forward in time by ``i`` frames, filling with zeros.

    Args:
        x: ``[B, C, T, H, W]`` (time on axis 2), or frames ``[B*T, C, H, W]`` ordered video by
            video (``(b t)``), in which case ``num_frames`` = ``T`` is required.
        num_frames: frames per video for the ``[B*T, C, H, W]`` layout; must be ``None`` for 5-D input.
        num_chunks: how many channel chunks (chunk ``i`` moves ``i`` frames). Channels are split as
            :func:`torch.tensor_split` does, so ``C`` need not be divisible by ``num_chunks``.

    Returns:
        A new tensor of ``x``'s shape; ``x`` is not modified.

    Example:
        >>> x = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 8, 1, 1)   # frame t holds t everywhere
        >>> latent_shift(x, num_frames=8)[:, 2, 0, 0]                     # chunk 2: two frames later
        tensor([0., 0., 0., 1., 2., 3., 4., 5.])
    """
    if x.ndim == 5:
        if num_frames is not None and num_frames != x.shape[2]:
            raise ValueError(f"num_frames={num_frames} but x [B, C, T, H, W] has T={x.shape[2]}")
        return _shift_time_axis(x, num_chunks)
    if x.ndim == 4:
        if num_frames is None:
            raise ValueError("x of shape [B*T, C, H, W] needs num_frames")
        if num_frames < 1 or x.shape[0] % num_frames:
            raise ValueError(f"batch of {x.shape[0]} frames is not a whole number of {num_frames}-frame videos")
        b = x.shape[0] // num_frames
        video = x.reshape(b, num_frames, *x.shape[1:]).transpose(1, 2)  # [B, C, T, H, W]
        return _shift_time_axis(video, num_chunks).transpose(1, 2).reshape(x.shape)
    raise ValueError(f"latent_shift expects [B, C, T, H, W] or [B*T, C, H, W], got shape {tuple(x.shape)}")


def _shift_time_axis(x: torch.Tensor, num_chunks: int) -> torch.Tensor:
    if num_chunks < 1:
        raise ValueError(f"num_chunks must be >= 1, got {num_chunks}")
    t = x.shape[2]
    out = torch.zeros_like(x)
    bounds = torch.tensor_split(torch.arange(x.shape[1]), num_chunks)
    for i, idx in enumerate(bounds):
        if len(idx) == 0 or i >= t:
            continue  # an empty chunk, or shifted past the last frame: all zero
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        out[:, lo:hi, i:] = x[:, lo:hi, : t - i]
    return out


class LatentShift(nn.Module):
    """Gated latent shift on frames: ``h + gate * (latent_shift(h) - h)``, gate per channel.

    ``gate`` starts at zero, so a new block is the identity and an inflated image denoiser starts
    exactly where the image denoiser is; at ``gate = 1`` it is CoDi's latent shift.

    Args:
        channels: feature channels ``C`` of the frames it is applied to.
        num_chunks: chunks of :func:`latent_shift`.
    """

    def __init__(self, channels: int, num_chunks: int = NUM_CHUNKS):
        super().__init__()
        self.num_chunks = num_chunks
        self.gate = nn.Parameter(torch.zeros(channels))

    def forward(self, h: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``h``: frames ``[B*T, C, H, W]`` ordered ``(b t)``; returns the same shape."""
        shifted = latent_shift(h, num_frames, self.num_chunks)
        return torch.lerp(h, shifted, self.gate.to(h.dtype).view(1, -1, 1, 1))  # exact at gate 0 and 1
