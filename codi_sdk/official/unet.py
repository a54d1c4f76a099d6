"""Run a diffusers ``UNet2DConditionModel`` the way the official CoDi image/video and audio UNets run.

Without its connectors and video layers, the official image UNet *is* a Stable-Diffusion-1.x-shaped
``UNet2DConditionModel`` (and the audio UNet one with 8 channels and width 192), so we store it as
one. What diffusers' own ``forward`` cannot do is interleave the official extras, so this walker
visits the same blocks in the same order and calls, where the official model does:

* ``temporal`` — video layers with ``apply_down(level, j, h, T)``, ``apply_mid(i, h, T)``, ``apply_up(u, j, h, T)``
  (applied right after each resnet, before the block's cross-attention);
* ``joint`` — :class:`~codi_sdk.official.connectors.OfficialJointAttention` with ``env`` tokens
  (applied after each whole block; after the upsampler for the last block of an up level).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from .connectors import OfficialJointAttention


class TemporalLayers(Protocol):  # pragma: no cover - a structural type
    def apply_down(self, level: int, index: int, hidden: torch.Tensor, num_frames: int) -> torch.Tensor: ...
    def apply_mid(self, index: int, hidden: torch.Tensor, num_frames: int) -> torch.Tensor: ...
    def apply_up(self, block: int, index: int, hidden: torch.Tensor, num_frames: int) -> torch.Tensor: ...


def time_embedding(unet, timestep: torch.Tensor | float | int, batch: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The UNet's time embedding ``[batch, 4 * model_channels]`` (also what the environment encoder takes)."""
    t = torch.as_tensor(timestep, device=device)
    if t.ndim == 0:
        t = t[None]
    t = t.expand(batch) if t.numel() == 1 else t.reshape(batch)
    return unet.time_embedding(unet.time_proj(t).to(dtype))


def unet2d_forward(
    unet,
    sample: torch.Tensor,
    timestep: torch.Tensor | float | int,
    context: torch.Tensor,
    *,
    env: torch.Tensor | None = None,
    joint: OfficialJointAttention | None = None,
    temporal: TemporalLayers | None = None,
    num_frames: int | None = None,
) -> torch.Tensor:
    """ε-prediction of an official 2-D CoDi UNet stored as a diffusers ``UNet2DConditionModel``.

    ``sample``: ``[B, C, H, W]``, or a video ``[B, C, T, H, W]`` (``temporal`` layers then run across
    frames); ``context``: ``[B, K, 768]``; ``env``: ``[B, Le, 1280]`` or ``None`` (no joint
    attention). Returns a tensor shaped like ``sample``.
    """
    video = sample.ndim == 5
    b = sample.shape[0]
    if video:
        num_frames = sample.shape[2]
        sample = sample.permute(0, 2, 1, 3, 4).reshape(b * num_frames, *sample.shape[1:2], *sample.shape[3:])
    frames = num_frames if video else 1
    emb = time_embedding(unet, timestep, b, sample.dtype, sample.device)
    if frames > 1:
        emb = emb.repeat_interleave(frames, dim=0)
        context = context.repeat_interleave(frames, dim=0)
    context = context.to(sample.dtype)
    use_temporal = video and temporal is not None

    h = unet.conv_in(sample)
    skips = [h]
    for level, block in enumerate(unet.down_blocks):
        attentions = getattr(block, "attentions", None)
        for j, resnet in enumerate(block.resnets):
            h = resnet(h, emb)
            if use_temporal:
                h = temporal.apply_down(level, j, h, frames)
            if attentions is not None:
                h = attentions[j](h, encoder_hidden_states=context).sample
            if joint is not None:
                h = joint.apply("down", level, j, h, env)
            skips.append(h)
        if block.downsamplers is not None:
            h = block.downsamplers[0](h)
            skips.append(h)

    mid = unet.mid_block
    h = mid.resnets[0](h, emb)
    if use_temporal:
        h = temporal.apply_mid(0, h, frames)
    h = mid.attentions[0](h, encoder_hidden_states=context).sample
    h = mid.resnets[1](h, emb)
    if use_temporal:
        h = temporal.apply_mid(1, h, frames)

    for u, block in enumerate(unet.up_blocks):
        attentions = getattr(block, "attentions", None)
        last = len(block.resnets) - 1
        for j, resnet in enumerate(block.resnets):
            h = resnet(torch.cat([h, skips.pop()], dim=1), emb)
            if use_temporal:
                h = temporal.apply_up(u, j, h, frames)
            if attentions is not None:
                h = attentions[j](h, encoder_hidden_states=context).sample
            if j == last and block.upsamplers is not None:
                h = block.upsamplers[0](h)
            if joint is not None:
                h = joint.apply("up", u, j, h, env)

    h = unet.conv_out(F.silu(unet.conv_norm_out(h)))
    if video:
        h = h.reshape(b, frames, *h.shape[1:]).permute(0, 2, 1, 3, 4)
    return h
