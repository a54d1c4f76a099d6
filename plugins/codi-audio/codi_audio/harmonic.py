"""A harmonic latent for held notes: pitch, timbre and loudness in separate channels (DDSP-style).

:class:`HarmonicCodec` analyses a one-second waveform that holds one harmonic note into a small
parameter image ``[C, 1, frames]`` and synthesises a waveform back from it, with no learned part:

* the pitch channels — the note's fundamental: with ``pitch_step=0``, one channel in semitones from
  ``f_ref`` divided by ``pitch_scale``; with ``pitch_step>0``, one channel per pitch bin (bins
  ``pitch_step`` semitones apart from ``f_min`` to ``f_max``) holding a Gaussian bump of width
  ``0.6 * pitch_step`` around the fundamental (0 far from it, 1 at it);
* then one channel of the log RMS loudness of each frame (``frames`` frames over the second);
* then ``harmonics - 1`` channels — the amplitude of harmonics 2 ... ``harmonics`` relative to the
  fundamental, as ``log10`` mapped from [-2, 0] to [-1, 1] (below 1 %: -1, i.e. absent).

Why pitch bins: a denoiser asked for a note whose pitch the prompt leaves open (``"a square"``)
predicts, early on, the mean of the pitches it might pick; on one scalar channel that mean is a
pitch between two notes, and sampling can end there (measured: 9 of 16 ``"a square"`` sounds in
between two ToyWorld notes). On bins the mean is two half-height bumps, and decoding takes the
stronger one (argmax, refined by a log-parabola through it and its neighbours: exact for a Gaussian).

Pitch and timbre are one value per clip, written to every frame (analysis reads the whole second,
synthesis reads their mean over frames); loudness is per frame. This is the additive-synthesis
half of DDSP (Engel et al., 2020, "DDSP: Differentiable Digital Signal Processing"), without its
noise branch: a sound is ``loudness(t) * sum_k a_k sin(2 pi k f0 t + phi_k)``.

Why a latent like this: in a spectrogram latent a sound's pitch and timbre share one frequency
axis, and a denoiser learns each seen (pitch, timbre) pair as one pattern; here each lives in its
own channels, as an image's colour and layout do, so a denoiser can put a seen pitch together with
a seen timbre it never heard at that pitch. It only fits monophonic harmonic sounds with one
steady pitch per clip (ToyWorld's); anything else (speech, chords, noise) needs the mel latent.

:class:`HarmonicAudioDiffuser` is the :class:`~codi_sdk.diffuser.Diffuser` on this latent: the
codec in the ``vae`` slot (no parameters, so the trainer has no VAE to fit and audio's stage 2 is
its denoiser alone), a ``UNet2DConditionModel`` over ``[C, 1, frames]``, an environment encoder
and joint attention. Build it with ``AudioModality.init_diffuser(latent="harmonic")``.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from codi_sdk.diffuser import DEFAULT_SCHEDULER_CONFIG, Diffuser
from codi_sdk.env_encoder import EnvironmentEncoder
from codi_sdk.errors import WeightsNotFoundError
from codi_sdk.joint_attention import add_joint_attention, load_joint_attention, save_joint_attention

from .diffuser import ENV_DIM, NUM_SAMPLES, TOYWORLD_UNET, _base_processors, load_scheduler_config, save_scheduler_config

#: The ToyWorld denoiser on the harmonic latent (``[12, 1, 32]``; its channels follow the codec): the mel one's, with cross-attention at both levels.
TOYWORLD_HARMONIC_UNET = dict(
    TOYWORLD_UNET,
    sample_size=[1, 32],
    in_channels=12,
    out_channels=12,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
)


class HarmonicCodec(nn.Module, ConfigMixin):
    """Waveforms ``[B, num_samples]`` <-> harmonic parameter images ``[B, pitch channels + harmonics, 1, frames]``.

    ``pitch_step``: 0 for one pitch channel (``pitch_scale`` semitones per unit), else the spacing in
    semitones of the pitch bins (see the module docstring).
    ``f_min``/``f_max`` bound the fundamentals it looks for; ``max_frequency`` is where synthesis
    stops adding harmonics; ``loudness_shift``/``loudness_scale`` normalise ``log(rms)``.
    ``scaling_factor`` is the latent scale training sets (as a VAE's). No parameters.
    """

    config_name = "harmonic_config.json"

    @register_to_config
    def __init__(
        self,
        sample_rate: int = 16000,
        num_samples: int = NUM_SAMPLES,
        frames: int = 32,
        harmonics: int = 11,
        f_min: float = 100.0,
        f_max: float = 1000.0,
        f_ref: float = 370.0,
        pitch_scale: float = 1.0,
        pitch_step: float = 0.0,
        max_frequency: float = 7500.0,
        loudness_shift: float = -2.75,
        loudness_scale: float = 1.0,
        scaling_factor: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        if num_samples % frames:
            raise ValueError(f"num_samples {num_samples} is not a multiple of frames {frames}")
        if harmonics < 1:
            raise ValueError(f"harmonics must be at least 1 (the fundamental), got {harmonics}")
        if pitch_step < 0:
            raise ValueError(f"pitch_step must be 0 (one pitch channel) or a positive number of semitones, got {pitch_step}")
        if pitch_step and pitch_scale != 1.0:
            raise ValueError("pitch_scale applies to the single pitch channel (pitch_step=0), not to pitch bins")
        if not 0 < f_min < f_ref < f_max:
            raise ValueError(f"expected 0 < f_min < f_ref < f_max, got {f_min}, {f_ref}, {f_max}")
        #: the pitch channels: 1, or one per bin
        self.pitch_channels = 1 if not pitch_step else int(math.floor(12 * math.log2(f_max / f_min) / pitch_step + 1e-9)) + 1
        #: pitch, loudness, and harmonics 2 ... ``harmonics``
        self.channels = self.pitch_channels + harmonics

    def _bin_semitones(self, like: torch.Tensor) -> torch.Tensor:
        """The pitch bins' centres, in semitones above ``f_min``."""
        return torch.arange(self.pitch_channels, dtype=like.dtype, device=like.device) * self.config.pitch_step

    def _pitch_code(self, f0: torch.Tensor) -> torch.Tensor:
        """``[B]`` Hz -> ``[B, pitch_channels]``: semitones from ``f_ref`` / ``pitch_scale``, or the bins' bump."""
        c = self.config
        if not c.pitch_step:
            return (12 * torch.log2(f0.clamp(min=1.0) / c.f_ref) / c.pitch_scale)[:, None]
        semis = 12 * torch.log2(f0.clamp(min=1.0) / c.f_min)
        return torch.exp(-0.5 * ((semis[:, None] - self._bin_semitones(f0)[None]) / (0.6 * c.pitch_step)) ** 2)

    def _pitch_decode(self, code: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_pitch_code` (``[B, pitch_channels]`` -> Hz). Bins: the strongest bin,
        refined by the parabola through the log-heights of it and its two neighbours."""
        c = self.config
        if not c.pitch_step:
            return c.f_ref * 2 ** (code[:, 0] * c.pitch_scale / 12)
        height = code.clamp(1e-4, 1.0)
        i = height.argmax(-1)
        log_h = nn.functional.pad(height.log(), (1, 1), value=math.log(1e-4))
        rows = torch.arange(code.shape[0], device=code.device)
        left, mid, right = log_h[rows, i], log_h[rows, i + 1], log_h[rows, i + 2]
        curve = left - 2 * mid + right
        offset = torch.where(curve < -1e-6, 0.5 * (left - right) / curve.clamp(max=-1e-6), torch.zeros_like(curve))
        semis = (i.to(code.dtype) + offset.clamp(-0.5, 0.5)) * c.pitch_step
        return c.f_min * 2 ** (semis / 12)

    # -- analysis -------------------------------------------------------------------------------
    def _spectrum(self, wave: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Magnitude of the whole clip's spectrum, zero-padded 4x; and the bin width in Hz."""
        n = wave.shape[-1]
        window = torch.hann_window(n, periodic=False, dtype=wave.dtype, device=wave.device)
        spec = torch.fft.rfft((wave - wave.mean(-1, keepdim=True)) * window, n=4 * n).abs()
        return spec, self.config.sample_rate / (4 * n)

    @staticmethod
    def _peak(spec: torch.Tensor, centre: torch.Tensor, half_width: torch.Tensor, df: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row: the largest bin within ``centre ± half_width`` Hz -> (magnitude, frequency)."""
        bins = torch.arange(spec.shape[-1], device=spec.device, dtype=spec.dtype) * df
        inside = (bins[None] - centre[:, None]).abs() <= half_width[:, None]
        masked = torch.where(inside, spec, torch.zeros((), dtype=spec.dtype, device=spec.device))
        value, index = masked.max(-1)
        return value, index.to(spec.dtype) * df

    def fundamental(self, wave: torch.Tensor) -> torch.Tensor:
        """``[B]`` fundamentals (Hz): weighted harmonic summation on a 1/16-semitone log-frequency
        grid (where harmonic k of every pitch sits the same number of steps above it), refined to
        the strongest bin near the winner."""
        return self._fundamental(*self._spectrum(wave))

    def _fundamental(self, spec: torch.Tensor, df: float) -> torch.Tensor:
        """:meth:`fundamental` from the clip's spectrum (:meth:`_spectrum`)."""
        c = self.config
        per_octave = 12 * 16
        freqs = torch.arange(spec.shape[-1], dtype=spec.dtype, device=spec.device) * df
        top = min(c.sample_rate / 2, c.f_max * 8)
        size = int(math.ceil(per_octave * math.log2(top / c.f_min))) + 1
        index = (per_octave * torch.log2(freqs.clamp(min=1e-3) / c.f_min)).round().long()
        keep = (index >= 0) & (index < size)
        log_spec = spec.new_zeros(spec.shape[0], size)
        log_spec.scatter_reduce_(1, index[keep].expand(spec.shape[0], -1), spec[:, keep], reduce="amax")
        log_spec = nn.functional.max_pool1d(log_spec[:, None], 3, stride=1, padding=1)[:, 0]
        count = int(math.ceil(per_octave * math.log2(c.f_max / c.f_min))) + 1
        score = log_spec.new_zeros(spec.shape[0], count)
        for k in range(1, 7):
            shift = round(per_octave * math.log2(k))
            part = log_spec[:, shift : shift + count]
            score[:, : part.shape[1]] += part * 0.8 ** (k - 1)
        coarse = c.f_min * 2 ** (score.argmax(-1).to(spec.dtype) / per_octave)
        _, f0 = self._peak(spec, coarse, 0.03 * coarse, df)
        return f0

    @torch.no_grad()
    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveforms ``[B, num_samples]`` -> normalised parameters ``[B, channels, 1, frames]``."""
        c = self.config
        if wave.ndim != 2 or wave.shape[-1] != c.num_samples:
            raise ValueError(f"expected waveforms [B, {c.num_samples}], got shape {tuple(wave.shape)}")
        wave = wave.float()
        spec, df = self._spectrum(wave)
        f0 = self._fundamental(spec, df)
        amps = []
        for k in range(1, c.harmonics + 1):
            centre = k * f0
            a, _ = self._peak(spec, centre, 0.005 * centre + 2.0, df)
            amps.append(torch.where(centre < c.max_frequency, a, torch.zeros_like(a)))
        amps = torch.stack(amps, -1)
        ratios = amps[:, 1:] / amps[:, :1].clamp(min=1e-12)
        timbre = torch.log10(ratios.clamp(min=1e-2)) + 1.0  # [-1, 1]
        pitch = self._pitch_code(f0)
        frame = wave.reshape(wave.shape[0], c.frames, -1)
        rms = frame.pow(2).mean(-1).sqrt()
        loud = (torch.log(rms.clamp(min=1e-5)) - c.loudness_shift) / c.loudness_scale
        p = self.pitch_channels
        per_clip = torch.cat([pitch, timbre], -1)[:, :, None].expand(-1, -1, c.frames)
        params = torch.cat([per_clip[:, :p], loud[:, None], per_clip[:, p:]], 1)
        return params[:, :, None]

    # -- synthesis ------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, params: torch.Tensor) -> torch.Tensor:
        """Normalised parameters ``[B, channels, 1, frames]`` -> waveforms ``[B, num_samples]`` in [-1, 1]."""
        c = self.config
        if params.ndim != 4 or params.shape[1] != self.channels:
            raise ValueError(f"expected parameters [B, {self.channels}, 1, frames], got shape {tuple(params.shape)}")
        params = params.float()[:, :, 0]
        p = self.pitch_channels
        f0 = self._pitch_decode(params[:, :p].mean(-1))
        timbre = params[:, p + 1 :].mean(-1)
        ratios = torch.where(timbre > -0.9, 10 ** (timbre - 1.0), torch.zeros_like(timbre))
        amps = torch.cat([torch.ones_like(f0)[:, None], ratios], -1)  # [B, harmonics]
        k = torch.arange(1, c.harmonics + 1, dtype=amps.dtype, device=amps.device)
        amps = amps * (k[None] * f0[:, None] < c.max_frequency)
        g = torch.Generator().manual_seed(c.seed)
        phase = (2 * math.pi * torch.rand(c.harmonics, generator=g)).to(amps.device)
        t = torch.arange(c.num_samples, dtype=amps.dtype, device=amps.device) / c.sample_rate
        tone = (amps[:, :, None] * torch.sin(2 * math.pi * k[None, :, None] * f0[:, None, None] * t + phase[None, :, None])).sum(1)
        rms = torch.exp(params[:, p] * c.loudness_scale + c.loudness_shift)
        gain = rms / (amps.pow(2).sum(-1, keepdim=True) / 2).sqrt().clamp(min=1e-6)
        # frame gains at frame centres, linearly interpolated to every sample
        env = nn.functional.interpolate(gain[:, None], size=c.num_samples, mode="linear", align_corners=False)[:, 0]
        return (env * tone).clamp(-1.0, 1.0)


class HarmonicAudioDiffuser(Diffuser):
    """Harmonic codec + denoiser + environment encoder + joint attention for 1 s of 16 kHz audio."""

    modality = "audio"

    def __init__(
        self,
        codec: HarmonicCodec,
        unet: UNet2DConditionModel,
        env_encoder: EnvironmentEncoder | None = None,
        joint: nn.ModuleDict | None = None,
        env_dim: int = ENV_DIM,
        scheduler_config: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.vae, self.unet, self.env_dim = codec, unet, env_dim
        self._scheduler_config = dict(scheduler_config) if scheduler_config else None
        if unet.config.in_channels != codec.channels or unet.config.out_channels != codec.channels:
            raise ValueError(f"UNet in/out channels {unet.config.in_channels}/{unet.config.out_channels} do not fit the "
                             f"harmonic codec's {codec.channels} channels ({codec.pitch_channels} pitch + harmonics {codec.config.harmonics})")
        self.latent_shape = (codec.channels, 1, codec.config.frames)
        self.env_encoder = env_encoder if env_encoder is not None else EnvironmentEncoder(
            in_channels=codec.channels, max_tokens=codec.config.frames, num_tokens=4, out_dim=env_dim
        )
        if self.env_encoder.config.max_tokens < codec.config.frames:
            raise ValueError(f"env_encoder max_tokens {self.env_encoder.config.max_tokens} < {codec.config.frames} latent positions")
        self.joint = joint if joint is not None else add_joint_attention(unet, env_dim)

    @classmethod
    def toyworld(cls, **codec_options: Any) -> "HarmonicAudioDiffuser":
        """A new, untrained diffuser in the ToyWorld configuration: latent ``[12, 1, 32]`` with the codec's
        defaults; the ToyWorld recipe passes ``pitch_step=2.0, f_min=200.0, f_max=700.0`` (11 pitch bins,
        ``[22, 1, 32]``). ``codec_options``: :class:`HarmonicCodec` settings, e.g. ``pitch_step``."""
        accepted = sorted(k for k in inspect.signature(HarmonicCodec.__init__).parameters if k not in ("self", "scaling_factor"))
        unknown = sorted(set(codec_options) - set(accepted))
        if unknown:
            raise ValueError(f"unknown harmonic codec option(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
        codec = HarmonicCodec(**codec_options)
        unet = dict(TOYWORLD_HARMONIC_UNET, in_channels=codec.channels, out_channels=codec.channels)
        return cls(codec, UNet2DConditionModel(**unet))

    @property
    def codec(self) -> HarmonicCodec:
        return self.vae

    @property
    def joint_available(self) -> bool:
        return len(self.joint) > 0

    @property
    def context_dim(self) -> int:
        dim = self.unet.config.cross_attention_dim
        return int(dim if isinstance(dim, int) else dim[0])

    @property
    def scheduler_config(self) -> dict[str, Any]:
        return dict(self._scheduler_config or DEFAULT_SCHEDULER_CONFIG)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    # -- latents --------------------------------------------------------------------------------
    def encode(self, batch: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Waveforms ``[B, 16000]`` -> scaled latents ``[B, *latent_shape]`` (deterministic: ``sample`` is ignored)."""
        if batch.ndim != 2:
            raise ValueError(f"expected waveforms [B, N], got shape {tuple(batch.shape)}")
        return (self.codec.encode(batch.to(self.device)) * self.latent_scale).to(self.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, vocoder: str | None = None) -> list[torch.Tensor]:
        """Scaled latents -> list of float32 CPU waveforms ``[16000]`` in [-1, 1] (additive synthesis;
        ``vocoder`` is accepted for the mel diffuser's signature and must be ``None``)."""
        if vocoder is not None:
            raise ValueError(f"the harmonic latent is synthesised directly; it has no vocoder choice (got {vocoder!r})")
        wave = self.codec.decode(latents.to(self.device).float() / self.latent_scale)
        return list(wave.cpu().unbind(0))

    def latent_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, C, 1, F]`` -> ``[B, F, C]``: one token per frame."""
        return z.flatten(2).transpose(1, 2)

    # -- denoiser -------------------------------------------------------------------------------
    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor, env: torch.Tensor | None = None) -> torch.Tensor:
        """ε(z_t, t, context, env). ``context`` ``[B, K, D]``; ``env`` ``[B, Le, env_dim]`` or None."""
        if context.shape[-1] != self.context_dim:
            raise ValueError(f"context has {context.shape[-1]} features but this denoiser takes {self.context_dim}")
        kwargs = {"env": env.to(self.dtype)} if env is not None else None
        return self.unet(z_t, t, encoder_hidden_states=context.to(self.dtype), cross_attention_kwargs=kwargs).sample

    # -- weights --------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``harmonic/`` (the codec's config), ``unet/`` (base weights only), ``env_encoder/``,
        ``joint/`` and, for a non-default schedule, ``scheduler/``."""
        root = Path(path)
        self.codec.save_config(root / "harmonic")
        with _base_processors(self.unet):
            self.unet.save_pretrained(root / "unet")
        self.env_encoder.save_pretrained(root / "env_encoder")
        save_joint_attention(self.joint, root / "joint", self.env_dim)
        save_scheduler_config(root, self._scheduler_config)

    @staticmethod
    def is_folder(path: str | os.PathLike) -> bool:
        """Whether ``path`` holds a harmonic diffuser (``harmonic/harmonic_config.json``)."""
        return (Path(path) / "harmonic" / HarmonicCodec.config_name).is_file()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, torch_dtype: torch.dtype | None = None) -> "HarmonicAudioDiffuser":
        """Load a folder written by :meth:`save_pretrained` (in eval mode); only safetensors are read."""
        root = Path(path)
        if not cls.is_folder(root) or not (root / "unet" / "config.json").is_file():
            raise WeightsNotFoundError(f"{root} is not a harmonic audio weights folder: it needs harmonic/"
                                       f"{HarmonicCodec.config_name} and unet/config.json")
        kw: dict[str, Any] = {"use_safetensors": True}
        if torch_dtype is not None:
            kw["torch_dtype"] = torch_dtype
        codec = HarmonicCodec.from_config(HarmonicCodec.load_config(root / "harmonic"))
        unet = UNet2DConditionModel.from_pretrained(root / "unet", **kw)
        env_encoder = None
        if (root / "env_encoder" / "config.json").is_file():
            env_encoder = EnvironmentEncoder.from_pretrained(root / "env_encoder", **kw)
        joint, env_dim = None, ENV_DIM
        if (root / "joint" / "config.json").is_file():
            joint = load_joint_attention(unet, root / "joint")
            env_dim = json.loads((root / "joint" / "config.json").read_text())["env_dim"]
        scheduler_config = load_scheduler_config(root)
        model = cls(codec, unet, env_encoder, joint, env_dim=env_dim, scheduler_config=scheduler_config)
        return model.eval()
