"""The video denoiser: an image ``UNet2DConditionModel`` inflated with temporal layers.

:class:`VideoUNet` runs the *unchanged* image UNet on all frames of a batch at once (``B*T`` frames,
ordered video by video) and adds two kinds of temporal layers with forward hooks, so the image
UNet keeps its module tree and its state-dict key names — an image UNet folder loads into it as is:

* after every ``ResnetBlock2D``: CoDi's latent shift (:class:`~codi_video.latent_shift.LatentShift`,
  zero-gated);
* after every spatial ``Transformer2DModel``: a :class:`TemporalAttention` — diffusers ``Attention``
  over the time axis at each pixel, with a frame position embedding and a zero-initialised output
  projection.

Every temporal layer starts as the identity, so before training the video UNet returns the image
UNet's output on every frame. The temporal layers live in :class:`TemporalLayers` (its own
``config.json`` + safetensors), saved in ``unet/temporal/`` next to the plain diffusers UNet folder.

The prompt ``context`` ``[B, K, D]`` and joint-attention ``env`` ``[B, Le, De]`` are per video; the
context is repeated for each frame here, ``env`` by the joint-attention processor.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import get_1d_sincos_pos_embed_from_grid
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from einops import rearrange
from torch import nn

from codi_sdk.errors import WeightsNotFoundError

from .latent_shift import NUM_CHUNKS, LatentShift

logger = logging.getLogger(__name__)

#: Sub-folder of ``unet/`` that holds the temporal layers.
TEMPORAL_FOLDER = "temporal"


class TemporalAttention(nn.Module):
    """Self-attention over the frames of each pixel, residual, starting as the identity.

    ``h`` ``[B*T, C, H, W]`` -> LayerNorm + frame position embedding -> diffusers ``Attention``
    over ``T`` -> added to ``h``. The attention's output projection (``attn.to_out[0]``) is
    initialised to zero. Being a diffusers ``Attention``, its processor can be replaced
    (``VideoUNet.set_attn_processor``).
    """

    def __init__(self, channels: int, heads: int = 4, max_frames: int = 8):
        super().__init__()
        if channels % heads:
            raise ValueError(f"temporal attention: {channels} channels not divisible by {heads} heads")
        self.norm = nn.LayerNorm(channels)
        pos = get_1d_sincos_pos_embed_from_grid(channels, torch.arange(max_frames), output_type="pt")
        self.pos_embed = nn.Parameter(pos.float()[None])  # [1, max_frames, C], learned from a sinusoid
        self.attn = Attention(query_dim=channels, heads=heads, dim_head=channels // heads, bias=True)
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)

    def forward(self, h: torch.Tensor, num_frames: int) -> torch.Tensor:
        if num_frames > self.pos_embed.shape[1]:
            raise ValueError(f"{num_frames} frames exceed the temporal layers' max_frames={self.pos_embed.shape[1]}")
        _, _, height, width = h.shape
        x = rearrange(h, "(b t) c h w -> (b h w) t c", t=num_frames)
        x = self.norm(x) + self.pos_embed[:, :num_frames].to(x.dtype)
        x = self.attn(x)
        return h + rearrange(x, "(b h w) t c -> (b t) c h w", h=height, w=width)


def _key(module_name: str) -> str:
    return module_name.replace(".", "__")


def _temporal_sites(unet: UNet2DConditionModel) -> tuple[dict[str, int], dict[str, int]]:
    """The UNet's residual blocks and spatial transformers (name -> channels), in module order."""
    shifts: dict[str, int] = {}
    attentions: dict[str, int] = {}
    for name, module in unet.named_modules():
        if not name.startswith(("down_blocks.", "mid_block.", "up_blocks.")):
            continue
        if isinstance(module, ResnetBlock2D):
            shifts[name] = module.out_channels
        elif isinstance(module, Transformer2DModel):
            attentions[name] = module.config.in_channels
    return shifts, attentions


class TemporalLayers(ModelMixin, ConfigMixin):
    """All temporal layers of a :class:`VideoUNet`, keyed by the image-UNet module they follow.

    Args:
        shift_channels: ``{resnet module name: channels}`` — one :class:`LatentShift` each.
        attention_channels: ``{transformer module name: channels}`` — one :class:`TemporalAttention` each.
        heads: heads of every temporal attention.
        max_frames: length of the frame position embedding (the most frames a video may have).
        num_chunks: chunks of the latent shift.
    """

    @register_to_config
    def __init__(
        self,
        shift_channels: dict[str, int] | None = None,
        attention_channels: dict[str, int] | None = None,
        heads: int = 4,
        max_frames: int = 8,
        num_chunks: int = NUM_CHUNKS,
    ):
        super().__init__()
        self.shifts = nn.ModuleDict({_key(n): LatentShift(c, num_chunks) for n, c in (shift_channels or {}).items()})
        self.attentions = nn.ModuleDict(
            {_key(n): TemporalAttention(c, heads, max_frames) for n, c in (attention_channels or {}).items()}
        )

    @classmethod
    def for_unet(cls, unet: UNet2DConditionModel, heads: int = 4, max_frames: int = 8, num_chunks: int = NUM_CHUNKS) -> "TemporalLayers":
        """New identity-initialised temporal layers for every residual block and transformer of ``unet``."""
        shifts, attentions = _temporal_sites(unet)
        return cls(shift_channels=shifts, attention_channels=attentions, heads=heads, max_frames=max_frames, num_chunks=num_chunks)


class VideoUNet(nn.Module, AttentionMixin):
    """ε(z_t, t, context, env) on video latents ``[B, T, C, h, w]``: an image UNet + temporal layers.

    Args:
        unet: the image denoiser; its weights are used unchanged (not copied).
        temporal: temporal layers matching ``unet`` (default: new ones, identity at start).
        heads, max_frames: for new temporal layers.

    Calling the inner ``self.unet`` directly (outside :meth:`forward`) skips the temporal layers,
    i.e. it is exactly the image denoiser.
    """

    def __init__(
        self,
        unet: UNet2DConditionModel,
        temporal: TemporalLayers | None = None,
        heads: int = 4,
        max_frames: int = 8,
    ):
        super().__init__()
        self.unet = unet
        self.temporal = temporal if temporal is not None else TemporalLayers.for_unet(unet, heads=heads, max_frames=max_frames)
        shifts, attentions = _temporal_sites(unet)
        expected = ({_key(n) for n in shifts}, {_key(n) for n in attentions})
        found = (set(self.temporal.shifts.keys()), set(self.temporal.attentions.keys()))
        if expected != found:
            raise ValueError(
                "temporal layers do not match this UNet's residual blocks/transformers "
                f"(missing {sorted((expected[0] - found[0]) | (expected[1] - found[1]))}, "
                f"extra {sorted((found[0] - expected[0]) | (found[1] - expected[1]))})"
            )
        self._num_frames: int | None = None
        modules = dict(unet.named_modules())
        for name in shifts:
            modules[name].register_forward_hook(_TemporalHook(self, "shifts", _key(name)))
        for name in attentions:
            modules[name].register_forward_hook(_TemporalHook(self, "attentions", _key(name)))

    @property
    def config(self):
        """The inner image UNet's config (``in_channels``, ``cross_attention_dim``, ...)."""
        return self.unet.config

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        cross_attention_kwargs: dict | None = None,
    ) -> torch.Tensor:
        """Predict the noise of video latents.

        Args:
            sample: ``[B, T, C, h, w]`` noisy latents.
            timestep: scalar or ``[B]`` (one timestep per video).
            encoder_hidden_states: prompt context ``[B, K, D]``, shared by the frames of a video.
            cross_attention_kwargs: passed to the image UNet's attention processors, e.g.
                ``{"env": [B, Le, De]}`` for joint attention.

        Returns:
            ``[B, T, C, h, w]``.
        """
        if sample.ndim != 5:
            raise ValueError(f"video UNet expects latents [B, T, C, h, w], got shape {tuple(sample.shape)}")
        b, t = sample.shape[:2]
        if encoder_hidden_states.shape[0] != b:
            raise ValueError(f"context batch {encoder_hidden_states.shape[0]} differs from the latent batch {b}")
        timestep = torch.as_tensor(timestep, device=sample.device)
        timestep = timestep.reshape(-1).expand(b) if timestep.numel() == 1 else timestep.reshape(b)
        frames = sample.flatten(0, 1)
        self._num_frames = t
        try:
            out = self.unet(
                frames,
                timestep.repeat_interleave(t),
                encoder_hidden_states=encoder_hidden_states.repeat_interleave(t, dim=0),
                cross_attention_kwargs=cross_attention_kwargs,
            ).sample
        finally:
            self._num_frames = None
        return out.unflatten(0, (b, t))

    # -- weights -------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the image UNet (base weights, no joint processors) as a diffusers UNet folder at
        ``path`` and the temporal layers at ``path/temporal``."""
        from codi_image.diffuser import save_unet_without_joint

        save_unet_without_joint(self.unet, path)
        self.temporal.save_pretrained(Path(path) / TEMPORAL_FOLDER, safe_serialization=True)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, torch_dtype: torch.dtype | None = None, **temporal_kwargs) -> "VideoUNet":
        """Load a folder written by :meth:`save_pretrained`, or inflate a plain diffusers image UNet
        folder (no ``temporal/``: new identity temporal layers, built with ``temporal_kwargs``)."""
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise WeightsNotFoundError(f"{folder} has no config.json; a video unet folder is a diffusers UNet2DConditionModel folder (+ temporal/)")
        kw = {"use_safetensors": True}
        if torch_dtype is not None:
            kw["torch_dtype"] = torch_dtype
        unet = UNet2DConditionModel.from_pretrained(folder, **kw)
        temporal = None
        if (folder / TEMPORAL_FOLDER / "config.json").is_file():
            temporal = TemporalLayers.from_pretrained(folder / TEMPORAL_FOLDER, **kw)
        else:
            logger.info("%s has no temporal/: inflating the image UNet with new identity temporal layers", folder)
        return cls(unet, temporal, **temporal_kwargs)


class _TemporalHook:
    """A forward hook that applies ``owner.temporal.<kind>[key]`` to a module's output while
    ``owner`` runs a video (``owner._num_frames`` set); otherwise it passes the output through.

    The layer is looked up at call time, so copies of the model (``copy.deepcopy``) stay consistent.
    """

    def __init__(self, owner: VideoUNet, kind: str, key: str):
        self.owner = owner
        self.kind = kind
        self.key = key

    def __call__(self, module, args, output):
        t = self.owner._num_frames
        if t is None:
            return output
        layer = getattr(self.owner.temporal, self.kind)[self.key]
        if isinstance(output, tuple):  # Transformer2DModel(..., return_dict=False) -> (sample,)
            return (layer(output[0], t), *output[1:])
        if hasattr(output, "sample"):
            output.sample = layer(output.sample, t)
            return output
        return layer(output, t)
