"""`AudioDiffuser`: the audio latent diffusion model, AudioLDM-style.

Data path (as AudioLDM): waveform -> log-mel image ``[B, 1, T, 64]`` (:mod:`codi_audio.mel`) ->
diffusers ``AutoencoderKL`` -> latent ``[B, C, T/f, 64/f]`` -> ``UNet2DConditionModel`` denoiser.
Back: latent -> VAE decoder -> log-mel -> transformers ``SpeechT5HifiGan`` vocoder -> 16 kHz
waveform. Griffin-Lim (hand-written, :func:`codi_audio.mel.griffin_lim`) is the fallback: used
when ``decode(..., vocoder="griffinlim")`` asks for it or a weights folder has no ``vocoder/``.
It starts from a linear magnitude: a learned :class:`~codi_audio.mel.MelInverter`'s
(``mel_inverter/``, what the ToyWorld weights ship) or the mel filterbank's pseudo-inverse.

Sizes:

* ToyWorld (:meth:`AudioDiffuser.toyworld`): VAE blocks (16, 32, 64, 64) = 8x downsampling, so one
  second (100 mel frames, padded to 104) becomes a ``[4, 13, 8]`` latent (104 positions) — small
  enough to train on a CPU; UNet blocks (64, 64) with cross-attention to the ``[B, 1, 64]`` prompt
  context in the outer level; a ~0.85 M-parameter HiFi-GAN (upsampling 5*4*4*2 = 160 = hop),
  trained only with the recipe's ``vocoder`` flag, and a 0.87 M-parameter mel inverter.
* ``AudioDiffuser.toyworld(latent="log")``, an option: a semitone-spaced log-frequency front end,
  4 frames folded into the VAE's channels per row (:meth:`AudioDiffuser.fold`) and a 2x VAE, so the
  latent ``[4, 13, 32]`` keeps 32 frequency rows; see :data:`TOYWORLD_LOG_MEL`.
* ``frequency_position=True``, an option with either latent: the UNet takes one more input channel,
  each latent position's place on the frequency axis (CoordConv); its config says so
  (``in_channels`` = latent channels + 1).
* A real AudioLDM diffusers folder (``vae/``, ``unet/``, ``vocoder/``) loads through
  :meth:`AudioDiffuser.from_pretrained`. AudioLDM's UNet takes its (CLAP) condition as
  ``class_labels`` (``class_embed_type="simple_projection"``) and has no prompt cross-attention;
  its ``attn2`` layers attend to the hidden states themselves. We follow what the UNet's config
  says: ``simple_projection`` -> the context is passed as ``class_labels`` (its size must be the
  config's ``projection_class_embeddings_input_dim``, 512 for AudioLDM's CLAP), otherwise as
  ``encoder_hidden_states``. Joint attention attaches to every ``attn2`` layer; a UNet without any
  loads with joint attention unavailable (a warning, and ``denoise(env=...)`` raises).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterator

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from einops import rearrange
from torch import nn
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

from codi_sdk.diffuser import DEFAULT_SCHEDULER_CONFIG, Diffuser
from codi_sdk.env_encoder import EnvironmentEncoder
from codi_sdk.errors import WeightsNotFoundError
from codi_sdk.joint_attention import add_joint_attention, load_joint_attention, save_joint_attention

from .mel import MelInverter, MelSpectrogram, griffin_lim

logger = logging.getLogger(__name__)

NUM_SAMPLES = 16000
ENV_DIM = 64
CONTEXT_DIM = 64
VOCODERS = ("hifigan", "griffinlim")

#: ToyWorld mel normalisation: ToyWorld log-mels span about [-7.5, 1.5]; silence is log(1e-5) = -11.5.
TOYWORLD_MEL = dict(shift=-4.5, scale=3.0)
TOYWORLD_VAE = dict(
    in_channels=1,
    out_channels=1,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[16, 32, 64, 64],
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=64,
    scaling_factor=1.0,  # training sets it to 1 / std of the latents, as Stable Diffusion's 0.18215
)
TOYWORLD_UNET = dict(
    sample_size=[13, 8],
    in_channels=4,
    out_channels=4,
    block_out_channels=[64, 64],
    layers_per_block=1,
    down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
    cross_attention_dim=CONTEXT_DIM,
    attention_head_dim=8,
    norm_num_groups=32,
)
TOYWORLD_VOCODER = dict(
    model_in_dim=64,
    sampling_rate=16000,
    upsample_initial_channel=128,
    upsample_rates=[5, 4, 4, 2],
    upsample_kernel_sizes=[11, 8, 8, 4],  # kernel - rate even: exactly rate x frames out
    resblock_kernel_sizes=[3, 7, 11],
    resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    normalize_before=False,
)
#: ``AudioDiffuser.toyworld(latent="log")``: a log-frequency front end with 12 filters per octave
#: (centres 138.6 Hz-5.59 kHz, every semitone from C#3; the four ToyWorld pitches fall on filters
#: 11, 15, 18 and 23), so that a change of pitch shifts a harmonic pattern along the frequency axis
#: without changing it; the VAE reads 4 frames per row (``in_channels`` 4) and halves both axes,
#: so the latent keeps 32 frequency rows (``[4, 13, 32]``); the UNet (blocks 64, 64) attends only at its inner level.
TOYWORLD_LOG_MEL = dict(frequency_scale="log", f_min=130.8128, f_max=130.8128 * 2 ** (65 / 12), shift=-2.0, scale=3.0)
TOYWORLD_LOG_VAE = dict(
    TOYWORLD_VAE,
    in_channels=4,
    out_channels=4,
    down_block_types=["DownEncoderBlock2D"] * 2,
    up_block_types=["UpDecoderBlock2D"] * 2,
    block_out_channels=[32, 64],
)
TOYWORLD_LOG_UNET = dict(
    TOYWORLD_UNET,
    sample_size=[13, 32],
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
)
LATENTS = ("mel", "log")
#: The learned mel inverse in front of Griffin-Lim (0.87 M parameters).
TOYWORLD_MEL_INVERTER = dict(n_mels=64, n_freq=513, channels=256, kernel_size=5, layers=3, **TOYWORLD_MEL)
#: (n_fft, hop) of the multi-resolution STFT loss of the vocoder.
STFT_RESOLUTIONS = ((512, 128), (1024, 256), (256, 64))


class AudioDiffuser(Diffuser):
    """VAE + denoiser + environment encoder + joint attention + vocoder for 1 s of 16 kHz audio.

    Build the ToyWorld size with :meth:`toyworld`, load a folder with :meth:`from_pretrained`, or
    pass components yourself. ``env_encoder=None`` builds a new one sized to the latent;
    ``joint=None`` installs new zero-initialised joint attention on ``unet``; ``vocoder=None``
    means Griffin-Lim decoding, from the magnitude that ``mel_inverter`` (a learned
    :class:`~codi_audio.mel.MelInverter`) or, without one, the mel filterbank's pseudo-inverse
    gives. ``mel`` holds the front end and the VAE's input normalisation.
    """

    modality = "audio"

    def __init__(
        self,
        vae: AutoencoderKL,
        unet: UNet2DConditionModel,
        env_encoder: EnvironmentEncoder | None = None,
        joint: nn.ModuleDict | None = None,
        vocoder: SpeechT5HifiGan | None = None,
        mel: MelSpectrogram | None = None,
        env_dim: int = ENV_DIM,
        scheduler_config: dict[str, Any] | None = None,
        mel_inverter: MelInverter | None = None,
    ):
        super().__init__()
        self.mel = mel if mel is not None else MelSpectrogram()
        self.vae, self.unet, self.vocoder, self.mel_inverter = vae, unet, vocoder, mel_inverter
        self.env_dim = env_dim
        self._scheduler_config = dict(scheduler_config) if scheduler_config else None

        if vae.config.in_channels != vae.config.out_channels:
            raise ValueError(f"the audio VAE must give back the channels it takes (one per frame of a row), got in/out "
                             f"channels {vae.config.in_channels}/{vae.config.out_channels}")
        #: Consecutive mel frames the VAE reads as the channels of one row (1 for AudioLDM's VAE).
        self.time_fold = int(vae.config.in_channels)
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        n_mels = self.mel.config.n_mels
        if n_mels % factor:
            raise ValueError(f"{n_mels} mel bins are not divisible by the VAE's downsampling factor {factor}")
        latent_channels = vae.config.latent_channels
        if unet.config.in_channels not in (latent_channels, latent_channels + 1) or unet.config.out_channels != latent_channels:
            raise ValueError(
                f"UNet in/out channels {unet.config.in_channels}/{unet.config.out_channels} do not fit the VAE's "
                f"{latent_channels} latent channels: accepted in_channels {latent_channels}, or {latent_channels + 1} "
                f"(a frequency-position channel), and out_channels {latent_channels}"
            )
        if vocoder is not None and vocoder.config.model_in_dim != n_mels:
            raise ValueError(f"vocoder takes {vocoder.config.model_in_dim} mel bins, the front end makes {n_mels}")
        if vocoder is not None and vocoder.config.sampling_rate != self.mel.config.sampling_rate:
            raise ValueError(f"vocoder rate {vocoder.config.sampling_rate} Hz != front end rate {self.mel.config.sampling_rate} Hz")
        if mel_inverter is not None and (mel_inverter.config.n_mels, mel_inverter.config.n_freq) != (n_mels, self.mel.config.n_fft // 2 + 1):
            raise ValueError(f"mel_inverter maps {mel_inverter.config.n_mels} mel bins to {mel_inverter.config.n_freq} frequencies; "
                             f"the front end has {n_mels} mel bins and {self.mel.config.n_fft // 2 + 1} frequencies")

        #: Mel frames of one sample (100), and that count padded to a multiple of the VAE factor times the fold.
        self.sample_frames = self.mel.num_frames(NUM_SAMPLES)
        rows = factor * self.time_fold
        self.num_frames = math.ceil(self.sample_frames / rows) * rows
        self.latent_shape = (vae.config.latent_channels, self.num_frames // rows, n_mels // factor)
        num_positions = self.latent_shape[1] * self.latent_shape[2]

        self.env_encoder = env_encoder if env_encoder is not None else EnvironmentEncoder(
            in_channels=vae.config.latent_channels, max_tokens=num_positions, num_tokens=4, out_dim=env_dim
        )
        if self.env_encoder.config.max_tokens < num_positions:
            raise ValueError(f"env_encoder max_tokens {self.env_encoder.config.max_tokens} < {num_positions} latent positions")
        if joint is None:
            try:
                joint = add_joint_attention(unet, env_dim)
            except ValueError:
                logger.warning(
                    "this audio UNet has no cross-attention (attn2) layer, so joint attention cannot attach: "
                    "it can generate alone but not jointly with other modalities (denoise(env=...) will raise)"
                )
                joint = nn.ModuleDict()
        self.joint = joint

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def toyworld(cls, latent: str = "mel", frequency_position: bool = False) -> "AudioDiffuser":
        """A new, untrained diffuser in the ToyWorld configuration.

        ``latent="mel"``: AudioLDM's mel front end and an 8x-downsampling VAE (latent ``[4, 13, 8]``);
        ``"log"``: a semitone-spaced log-frequency front end and a VAE that keeps 32 frequency rows
        (latent ``[4, 13, 32]``; :data:`TOYWORLD_LOG_MEL`). ``frequency_position``: the UNet also
        reads, as one more input channel, each latent position's place on the frequency axis
        (-1 lowest to 1 highest; CoordConv, Liu et al. 2018), so that its convolutions know which
        pitch they are drawing.
        """
        if latent not in LATENTS:
            raise ValueError(f"unknown audio latent {latent!r}; accepted: {', '.join(LATENTS)} "
                             "(and 'harmonic' through AudioModality.init_diffuser)")
        log = latent == "log"
        mel = TOYWORLD_LOG_MEL if log else TOYWORLD_MEL
        unet = dict(TOYWORLD_LOG_UNET if log else TOYWORLD_UNET)
        if frequency_position:
            unet["in_channels"] = unet["out_channels"] + 1
        return cls(
            vae=AutoencoderKL(**(TOYWORLD_LOG_VAE if log else TOYWORLD_VAE)),
            unet=UNet2DConditionModel(**unet),
            vocoder=SpeechT5HifiGan(SpeechT5HifiGanConfig(**TOYWORLD_VOCODER)),
            mel=MelSpectrogram(**mel),
            mel_inverter=MelInverter(**dict(TOYWORLD_MEL_INVERTER, shift=mel["shift"], scale=mel["scale"])),
        )

    @property
    def joint_available(self) -> bool:
        """Whether joint attention is installed (False for a UNet without cross-attention layers)."""
        return len(self.joint) > 0

    @property
    def frequency_position(self) -> bool:
        """Whether the UNet also reads each latent row's place on the frequency axis (CoordConv): its
        ``in_channels`` is the latent's channels + 1."""
        return self.unet.config.in_channels == self.vae.config.latent_channels + 1

    @property
    def conditioning(self) -> str:
        """How the context reaches the UNet: ``"cross_attention"`` or ``"class_labels"`` (AudioLDM)."""
        return "class_labels" if self.unet.config.class_embed_type == "simple_projection" else "cross_attention"

    @property
    def context_dim(self) -> int:
        """Feature size the denoiser expects of the context tokens."""
        if self.conditioning == "class_labels":
            return int(self.unet.config.projection_class_embeddings_input_dim)
        dim = self.unet.config.cross_attention_dim
        return int(dim if isinstance(dim, int) else dim[0])

    @property
    def scheduler_config(self) -> dict[str, Any]:
        """The folder's ``scheduler/scheduler_config.json`` if it had one, else the CoDi default."""
        return dict(self._scheduler_config or DEFAULT_SCHEDULER_CONFIG)

    # -- latents --------------------------------------------------------------------------------
    def mel_image(self, batch: torch.Tensor) -> torch.Tensor:
        """Waveforms ``[B, 16000]`` -> the VAE's normalised input ``[B, time_fold, num_frames / time_fold, n_mels]``."""
        return self._vae_input(self.mel.log_mel(batch.to(self.device, torch.float32)))

    def _vae_input(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, T, n_mels]`` -> the VAE's input: padded to ``num_frames``, normalised, folded."""
        return self.fold(self.mel.log_mel_image(log_mel, self.num_frames)).to(self.dtype)

    def fold(self, image: torch.Tensor) -> torch.Tensor:
        """Mel image ``[B, 1, T, F]`` -> ``[B, k, T / k, F]``: channel j of row r is frame ``r * k + j``
        (``k`` = :attr:`time_fold`)."""
        return rearrange(image, "b c (t k) f -> b (c k) t f", k=self.time_fold)

    def unfold(self, image: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`fold`."""
        return rearrange(image, "b (c k) t f -> b c (t k) f", k=self.time_fold)

    def _scale(self, z: torch.Tensor) -> torch.Tensor:
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return (z - shift) * self.vae.config.scaling_factor

    def _unscale(self, z: torch.Tensor) -> torch.Tensor:
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return z / self.vae.config.scaling_factor + shift

    def encode(self, batch: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Waveforms ``[B, 16000]`` -> scaled latents ``[B, *latent_shape]``.

        ``sample=False`` takes the posterior mode (deterministic); ``True`` draws from it.
        """
        if batch.ndim != 2:
            raise ValueError(f"expected waveforms [B, N], got shape {tuple(batch.shape)}")
        dist = self.vae.encode(self.mel_image(batch)).latent_dist
        return self._scale(dist.sample(generator) if sample else dist.mode())

    def decode_mel(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> de-normalised log-mel ``[B, 100, n_mels]`` (padding frames dropped)."""
        image = self.unfold(self.vae.decode(self._unscale(latents.to(self.device, self.dtype))).sample)
        return self.mel.denormalize(image[:, 0, : self.sample_frames].float())

    def vocode(self, log_mel: torch.Tensor, vocoder: str | None = None) -> torch.Tensor:
        """Log-mel ``[B, T, n_mels]`` -> waveforms ``[B, T * hop]``.

        ``vocoder``: ``"hifigan"`` (needs a vocoder), ``"griffinlim"``, or ``None`` = HiFi-GAN when
        present, else Griffin-Lim. Griffin-Lim starts from :meth:`mel_to_magnitude`.
        """
        if vocoder is None:
            vocoder = "hifigan" if self.vocoder is not None else "griffinlim"
        if vocoder not in VOCODERS:
            raise ValueError(f"unknown vocoder {vocoder!r}; accepted: {', '.join(VOCODERS)}")
        length = log_mel.shape[1] * self.mel.config.hop_length
        if vocoder == "griffinlim":
            return griffin_lim(self.mel_to_magnitude(log_mel), self.mel, length)
        if self.vocoder is None:
            raise ValueError("this diffuser has no HiFi-GAN vocoder (no vocoder/ folder); use vocoder='griffinlim'")
        wave = self.vocoder(log_mel.to(self.vocoder.dtype)).float()
        return _fit_length(wave, length)

    def mel_to_magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, T, n_mels]`` -> linear magnitude ``[B, n_freq, T]``: the learned
        :attr:`mel_inverter` when there is one, else the filterbank's pseudo-inverse."""
        base = self.mel.mel_to_magnitude(log_mel.float())
        if self.mel_inverter is None:
            return base
        return torch.exp(self.mel_inverter(log_mel.float(), base))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, vocoder: str | None = None) -> list[torch.Tensor]:
        """Scaled latents -> list of float32 CPU waveforms ``[16000]`` in [-1, 1] (see :meth:`vocode`)."""
        wave = self.vocode(self.decode_mel(latents), vocoder)
        wave = _fit_length(wave, NUM_SAMPLES).clamp(-1.0, 1.0).cpu()
        return list(wave.unbind(0))

    def latent_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, H*W, C]``: one token per latent position."""
        return z.flatten(2).transpose(1, 2)

    # -- denoiser -------------------------------------------------------------------------------
    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor, env: torch.Tensor | None = None) -> torch.Tensor:
        """ε(z_t, t, context, env). ``context`` ``[B, K, D]``; ``env`` ``[B, Le, env_dim]`` or None."""
        if context.shape[-1] != self.context_dim:
            raise ValueError(
                f"context has {context.shape[-1]} features but this denoiser takes {self.context_dim} "
                f"(via {self.conditioning})"
            )
        if env is not None and not self.joint_available:
            raise ValueError("joint attention is unavailable: this UNet has no cross-attention layer to attach it to")
        kwargs = {"env": env.to(self.dtype)} if env is not None else None
        context = context.to(self.dtype)
        if self.frequency_position:
            z_t = torch.cat([z_t, self._frequency_grid(z_t)], dim=1)
        if self.conditioning == "class_labels":
            return self.unet(z_t, t, encoder_hidden_states=None, class_labels=context.mean(1), cross_attention_kwargs=kwargs).sample
        # a UNet with a "projection" class embedding also takes the pooled context in its time embedding
        labels = context.mean(1) if self.unet.config.class_embed_type == "projection" else None
        return self.unet(z_t, t, encoder_hidden_states=context, class_labels=labels, cross_attention_kwargs=kwargs).sample

    @staticmethod
    def _frequency_grid(z: torch.Tensor) -> torch.Tensor:
        """``[B, 1, H, W]``: each latent position's place on the frequency axis (the last), -1 to 1."""
        grid = torch.linspace(-1.0, 1.0, z.shape[-1], device=z.device, dtype=z.dtype)
        return grid.expand(z.shape[0], 1, z.shape[-2], z.shape[-1])

    # -- training -------------------------------------------------------------------------------
    def vae_loss(
        self,
        batch: torch.Tensor,
        kl_weight: float = 1e-6,
        vocoder_frames: int = 32,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """VAE and vocoder loss on waveforms ``[B, 16000]``: ``dict(loss, rec, kl, voc)``.

        ``rec``: L1 between the normalised mel image and its reconstruction; ``kl``: KL of the
        posterior to N(0, I) summed over a latent and divided by the mel image's size, so
        ``kl_weight`` means what it does in the LDM recipe (1e-6, as the image plugin); ``voc``: the vocoder, on a random
        crop of ``vocoder_frames`` frames of the *true* log-mel, scored by the L1 between log-mels of
        its output and of the true waveform plus a multi-resolution STFT loss. VAE and vocoder have
        disjoint parameters and the vocoder sees the true mel, so the sum trains both independently.
        """
        wave = batch.to(self.device, torch.float32)
        log_mel = self.mel.log_mel(wave)
        x = self._vae_input(log_mel)
        posterior = self.vae.encode(x).latent_dist
        recon = self.vae.decode(posterior.sample(generator)).sample
        rec = (recon.float() - x.float()).abs().mean()
        kl = posterior.kl().mean() / x[0].numel()
        loss = rec + kl_weight * kl
        voc = torch.zeros((), device=self.device)
        if self.vocoder is not None:
            voc = self.vocoder_loss(wave, log_mel, vocoder_frames, generator)
            loss = loss + voc
        return {"loss": loss, "rec": rec.detach(), "kl": kl.detach(), "voc": voc.detach()}

    def vocoder_loss(self, wave: torch.Tensor, log_mel: torch.Tensor, frames: int = 32, generator: torch.Generator | None = None) -> torch.Tensor:
        """HiFi-GAN loss without a discriminator: log-mel L1 + multi-resolution STFT, on a random crop."""
        hop = self.mel.config.hop_length
        frames = min(frames, log_mel.shape[1])
        start = int(torch.randint(0, log_mel.shape[1] - frames + 1, (1,), generator=generator).item())
        target = wave[:, start * hop : (start + frames) * hop]
        out = _fit_length(self.vocoder(log_mel[:, start : start + frames].detach().to(self.vocoder.dtype)).float(), target.shape[1])
        mel_l1 = (self.mel.log_mel(out) - self.mel.log_mel(target)).abs().mean()
        return mel_l1 + multi_resolution_stft_loss(out, target)

    def decoder_parts(self) -> dict[str, nn.Module]:
        """The learned mel inverter, when present: trained after the VAE, on its reconstructions."""
        return {"mel_inverter": self.mel_inverter} if self.mel_inverter is not None else {}

    @torch.no_grad()
    def decoder_features(self, latents: torch.Tensor) -> torch.Tensor:
        """What the mel inverter reads at decoding time: the VAE's log-mel ``[B, 100, n_mels]`` of ``latents``."""
        return self.decode_mel(latents)

    def decoder_loss(self, batch: torch.Tensor, features: torch.Tensor, p_true: float = 0.5) -> dict[str, torch.Tensor]:
        """Mel-inverter loss on waveforms ``[B, 16000]`` and their VAE log-mels ``features``: ``dict(loss, l1, sc)``.

        The input is the VAE's reconstruction or, with probability ``p_true`` per sample, the true
        log-mel (so the inverter also serves mels that did not come through this VAE); the target
        is the waveform's linear STFT magnitude. ``l1``: L1 of log magnitudes (floored at the front
        end's ``log_floor``); ``sc``: spectral convergence, ``|S - Ŝ| / |S|``, which weighs the loud
        bins (the harmonics) that L1 of logs treats like the silent ones.
        """
        if self.mel_inverter is None:
            raise ValueError("this diffuser has no mel_inverter to train")
        target = self.mel.magnitude(batch.to(self.device, torch.float32))
        true = self.mel.log_mel_of_magnitude(target)
        recon = features.to(self.device, torch.float32)[:, : true.shape[1]]
        use_true = (torch.rand(target.shape[0], device=self.device) < p_true)[:, None, None]
        log_mel = torch.where(use_true, true, recon)
        pred = self.mel_inverter(log_mel, self.mel.mel_to_magnitude(log_mel))
        l1 = (pred - torch.log(target.clamp(min=self.mel.config.log_floor))).abs().mean()
        sc = torch.linalg.norm(torch.exp(pred) - target) / torch.linalg.norm(target).clamp(min=1e-7)
        return {"loss": l1 + sc, "l1": l1.detach(), "sc": sc.detach()}

    # -- weights --------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``vae/`` (+ ``mel_config.json``), ``unet/`` (base weights only), ``env_encoder/``,
        ``joint/`` (when available), ``vocoder/`` and ``mel_inverter/`` (when present) and, for a
        non-default schedule, ``scheduler/``."""
        root = Path(path)
        self.vae.save_pretrained(root / "vae")
        self.mel.save_config(root / "vae")
        with _base_processors(self.unet):
            self.unet.save_pretrained(root / "unet")
        self.env_encoder.save_pretrained(root / "env_encoder")
        if self.joint_available:
            save_joint_attention(self.joint, root / "joint", self.env_dim)
        if self.vocoder is not None:
            self.vocoder.save_pretrained(root / "vocoder")
        if self.mel_inverter is not None:
            self.mel_inverter.save_pretrained(root / "mel_inverter")
        save_scheduler_config(root, self._scheduler_config)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, torch_dtype: torch.dtype | None = None, env_dim: int = ENV_DIM
    ) -> "AudioDiffuser":
        """Load a folder written by :meth:`save_pretrained` or a diffusers AudioLDM folder (in eval mode).

        ``vae/`` and ``unet/`` are required; only safetensors are read. Without
        ``vae/mel_config.json`` the front end is AudioLDM's (raw log-mel into the VAE). Without
        ``vocoder/``, decoding falls back to Griffin-Lim, from ``mel_inverter/`` when the folder
        has one, else from the filterbank's pseudo-inverse (warned: lower quality). Without ``env_encoder/`` or
        ``joint/`` (a real AudioLDM folder), new untrained ones are built with ``env_dim``
        features (warned): the joint attention starts at zero, so outputs are AudioLDM's.
        """
        root = Path(path)
        for part in ("vae", "unet"):
            if not (root / part / "config.json").is_file():
                raise WeightsNotFoundError(f"no {part}/config.json in {root}: an audio weights folder needs vae/ and unet/ "
                                           "(and vocoder/; env_encoder/ and joint/ are optional)")
        kw: dict[str, Any] = {"use_safetensors": True}
        if torch_dtype is not None:
            kw["torch_dtype"] = torch_dtype
        vae = AutoencoderKL.from_pretrained(root / "vae", **kw)
        mel_file = root / "vae" / MelSpectrogram.config_name
        mel = MelSpectrogram.from_config(MelSpectrogram.load_config(root / "vae")) if mel_file.is_file() else MelSpectrogram()
        unet = UNet2DConditionModel.from_pretrained(root / "unet", **kw)
        vocoder = None
        if (root / "vocoder" / "config.json").is_file():
            vocoder = SpeechT5HifiGan.from_pretrained(root / "vocoder", **kw)
        mel_inverter = None
        if (root / "mel_inverter" / "config.json").is_file():
            mel_inverter = MelInverter.from_pretrained(root / "mel_inverter", **kw)
        if vocoder is None and mel_inverter is None:
            logger.warning("no vocoder/ in %s: audio will be decoded with Griffin-Lim from the mel filterbank's "
                           "pseudo-inverse (lower quality)", root)
        elif vocoder is None:
            logger.info("no vocoder/ in %s: audio will be decoded with Griffin-Lim from its mel_inverter/", root)
        env_encoder = None
        if (root / "env_encoder" / "config.json").is_file():
            env_encoder = EnvironmentEncoder.from_pretrained(root / "env_encoder", **kw)
        else:
            logger.warning("no env_encoder/ in %s: the audio environment encoder is new and untrained", root)
        joint = None
        if (root / "joint" / "config.json").is_file():
            joint = load_joint_attention(unet, root / "joint")
            env_dim = json.loads((root / "joint" / "config.json").read_text())["env_dim"]
        scheduler_config = load_scheduler_config(root)
        model = cls(vae, unet, env_encoder, joint, vocoder, mel, env_dim=env_dim, scheduler_config=scheduler_config,
                    mel_inverter=mel_inverter)
        if torch_dtype is not None:
            model.to(torch_dtype)
        return model.eval()


def save_scheduler_config(root: Path, config: dict[str, Any] | None) -> None:
    """Write ``root/scheduler/scheduler_config.json`` when ``config`` is not the CoDi default."""
    if config and config != DEFAULT_SCHEDULER_CONFIG:
        from codi_sdk.io import atomic_write_text

        (root / "scheduler").mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / "scheduler" / "scheduler_config.json", json.dumps(config, indent=2))


def load_scheduler_config(root: Path) -> dict[str, Any] | None:
    """``root/scheduler/scheduler_config.json`` without diffusers' ``_`` keys, or None without one."""
    path = root / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        return None
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}


@contextlib.contextmanager
def _base_processors(unet: nn.Module) -> Iterator[None]:
    """Temporarily swap the joint processors for plain ones, so the UNet's weights save without them."""
    processors = unet.attn_processors
    unet.set_attn_processor(AttnProcessor2_0())
    try:
        yield
    finally:
        unet.set_attn_processor(processors)


def _fit_length(wave: torch.Tensor, length: int) -> torch.Tensor:
    """Crop or zero-pad waveforms ``[B, N]`` to ``[B, length]``."""
    if wave.shape[-1] >= length:
        return wave[..., :length]
    return torch.nn.functional.pad(wave, (0, length - wave.shape[-1]))


def multi_resolution_stft_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over :data:`STFT_RESOLUTIONS` of spectral convergence + L1 of log magnitudes."""
    total = pred.new_zeros(())
    for n_fft, hop in STFT_RESOLUTIONS:
        window = torch.hann_window(n_fft, device=pred.device)
        p = torch.stft(pred, n_fft, hop, window=window, return_complex=True).abs()
        t = torch.stft(target, n_fft, hop, window=window, return_complex=True).abs()
        convergence = torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp(min=1e-7)
        log_l1 = (torch.log(p.clamp(min=1e-7)) - torch.log(t.clamp(min=1e-7))).abs().mean()
        total = total + convergence + log_l1
    return total / len(STFT_RESOLUTIONS)
