"""The ``codi-official`` profile of the audio modality: real-size official CoDi modules.

Reused as is: the audio UNet is a diffusers ``UNet2DConditionModel`` (8 channels, width 192; run
with its joint connectors by :func:`codi_sdk.official.unet.unet2d_forward`), the AudioLDM VAE is
diffusers' ``AutoencoderKL`` and its HiFi-GAN vocoder transformers' ``SpeechT5HifiGan``; the
environment encoder and joint layers are core's (:mod:`codi_sdk.official.connectors`).
Written here:

* :class:`AudioLDMMel` — AudioLDM's STFT/mel front end (its three fixed bases are part of the
  official state dict), waveform -> log-mel image for the VAE;
* :class:`CoDiCLAPAudioEncoder` — the CLAP HTSAT-large audio encoder: transformers'
  ``ClapAudioModelWithProjection`` (which is HTSAT) with CLAP's 48 kHz log-mel front end, and the
  official extra heads (``tscam_conv``, ``head``, ``audio_transform``) carried so a conversion
  round-trips, although the prompt embedding does not use them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from transformers import ClapAudioConfig, ClapAudioModelWithProjection
from transformers.audio_utils import mel_filter_bank


def _default_device_is_meta() -> bool:
    return torch.empty(0).device.type == "meta"


class AudioLDMMel(ModelMixin, ConfigMixin):
    """AudioLDM's ``TacotronSTFT``: 16 kHz waveform -> log-mel ``[B, 1, frames, 64]`` for the VAE.

    Buffers (persistent, as in the official state dict): ``forward_basis`` / ``inverse_basis``
    ``[n_fft + 2, 1, n_fft]`` (Hann-windowed Fourier basis and its pseudo-inverse) and
    ``mel_basis`` ``[64, n_fft // 2 + 1]`` (Slaney mel filters). They are computed at construction,
    and a converted checkpoint overwrites them with the official values.
    """

    @register_to_config
    def __init__(
        self,
        sampling_rate: int = 16000,
        filter_length: int = 1024,
        hop_length: int = 160,
        win_length: int = 1024,
        n_mel_channels: int = 64,
        mel_fmin: float = 0.0,
        mel_fmax: float = 8000.0,
    ):
        super().__init__()
        n, cut = filter_length, filter_length // 2 + 1
        if _default_device_is_meta():
            forward = torch.empty(2 * cut, 1, n)
            inverse = torch.empty(2 * cut, 1, n)
            mel = torch.empty(n_mel_channels, cut)
        else:
            fourier = torch.fft.fft(torch.eye(n, dtype=torch.float64))
            basis = torch.cat([fourier.real[:cut], fourier.imag[:cut]])  # [2*cut, n]
            window = torch.zeros(n, dtype=torch.float64)
            left = (n - win_length) // 2
            window[left : left + win_length] = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
            forward = (basis * window)[:, None, :].float()
            inverse = (torch.linalg.pinv((n / hop_length) * basis).T * window)[:, None, :].float()
            mel = torch.from_numpy(
                mel_filter_bank(
                    num_frequency_bins=cut, num_mel_filters=n_mel_channels, min_frequency=mel_fmin,
                    max_frequency=mel_fmax, sampling_rate=sampling_rate, norm="slaney", mel_scale="slaney",
                )
            ).T.float().contiguous()
        self.register_buffer("forward_basis", forward)
        self.register_buffer("inverse_basis", inverse)
        self.register_buffer("mel_basis", mel)

    def forward(self, waveform: torch.Tensor, num_frames: int = 1024) -> torch.Tensor:
        """``waveform`` ``[B, N]`` in [-1, 1] -> log-mel ``[B, 1, num_frames, 64]``.

        As upstream's ``wav_to_fbank``: remove the mean, scale the peak to 0.5, pad/trim to
        ``num_frames * hop`` samples, reflect-pad by half a window, magnitude STFT, mel filters,
        ``log(clamp(mel, 1e-5))``.
        """
        hop, n = self.config.hop_length, self.config.filter_length
        x = waveform.float()
        x = x - x.mean(dim=1, keepdim=True)
        x = 0.5 * x / (x.abs().amax(dim=1, keepdim=True) + 1e-8)
        length = num_frames * hop
        x = x[:, :length] if x.shape[1] >= length else F.pad(x, (0, length - x.shape[1]))
        x = F.pad(x[:, None, :], (n // 2, n // 2), mode="reflect")
        spec = F.conv1d(x, self.forward_basis.float(), stride=hop)
        cut = n // 2 + 1
        magnitude = torch.sqrt(spec[:, :cut] ** 2 + spec[:, cut:] ** 2)
        mel = torch.log(torch.clamp(self.mel_basis.float() @ magnitude, min=1e-5))
        return mel[:, :, :num_frames].transpose(1, 2)[:, None]


class _MLPLayers(nn.Module):
    """CLAP's ``audio_transform`` (training-time projection head; kept for the round trip)."""

    def __init__(self, width: int = 768, dropout: float = 0.1):
        super().__init__()
        self.sequential = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequential(x)


def _resample_up(x: torch.Tensor, factor: int, width: int = 6, rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited integer upsampling of ``[B, N]`` by ``factor`` (Hann-windowed sinc)."""
    if factor == 1:
        return x
    cutoff = rolloff  # relative to the input Nyquist
    half = width * factor
    t = torch.arange(-half, half + 1, dtype=torch.float64, device=x.device) / factor
    window = torch.cos(t * math.pi / (2 * width)) ** 2
    kernel = (cutoff * torch.special.sinc(cutoff * t) * window).to(x.dtype)
    up = torch.zeros(x.shape[0], 1, x.shape[1] * factor, dtype=x.dtype, device=x.device)
    up[:, 0, ::factor] = x
    y = F.conv1d(F.pad(up, (half, half)), kernel.flip(0)[None, None])
    return y[:, 0]


class CoDiCLAPAudioEncoder(ClapAudioModelWithProjection):
    """CLAP HTSAT-large audio encoder as CoDi uses it: 16 kHz waveform -> ``[B, 768]`` unit vectors.

    :meth:`embed` resamples to 48 kHz, repeat-pads to 10 s, computes CLAP's log-mel (power STFT,
    Slaney mel 50–14 000 Hz, dB) and runs HTSAT + the projection, then L2-normalises.
    """

    def __init__(self, config: ClapAudioConfig):
        super().__init__(config)
        final = int(config.patch_embeds_hidden_size * 2 ** (len(config.depths) - 1))
        freq = config.spec_size // (2 ** (len(config.depths) - 1)) // config.patch_stride[0]
        ratio = config.spec_size // config.num_mel_bins
        self.tscam_conv = nn.Conv2d(final, config.num_classes, kernel_size=(freq // ratio, 3), padding=(0, 1))
        self.head = nn.Linear(config.num_classes, config.num_classes)
        self.audio_transform = _MLPLayers(config.projection_dim)
        fe = getattr(config, "front_end", None) or {}
        self._front = {
            "sample_rate": fe.get("sample_rate", 48000), "window_size": fe.get("window_size", 1024),
            "hop_size": fe.get("hop_size", 480), "fmin": fe.get("fmin", 50), "fmax": fe.get("fmax", 14000),
            "clip_samples": fe.get("clip_samples", 480000),
        }
        self.post_init()

    def _mel_filters(self, device, dtype) -> torch.Tensor:
        f = self._front
        fb = mel_filter_bank(
            num_frequency_bins=f["window_size"] // 2 + 1, num_mel_filters=self.config.num_mel_bins,
            min_frequency=f["fmin"], max_frequency=f["fmax"], sampling_rate=f["sample_rate"], norm="slaney", mel_scale="slaney",
        )
        return torch.as_tensor(fb, device=device, dtype=dtype)  # [freq, mels]

    def log_mel(self, waveform_48k: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` 48 kHz audio -> CLAP input features ``[B, 1, frames, 64]`` (dB power mel)."""
        f = self._front
        x = waveform_48k.float()
        window = torch.hann_window(f["window_size"], periodic=True, device=x.device)
        spec = torch.stft(x, f["window_size"], f["hop_size"], window=window, center=True, pad_mode="reflect", return_complex=True)
        power = spec.abs() ** 2  # [B, freq, frames]
        mel = power.transpose(1, 2) @ self._mel_filters(x.device, power.dtype)
        db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        return db[:, None]

    def prepare(self, waveform: torch.Tensor, sample_rate: int = 16000) -> torch.Tensor:
        """16 kHz ``[B, N]`` -> 48 kHz, repeated then zero-padded (or cut) to ``clip_samples``."""
        f = self._front
        if f["sample_rate"] % sample_rate:
            raise ValueError(f"CLAP resampling needs an integer ratio; got {sample_rate} -> {f['sample_rate']} Hz")
        x = _resample_up(waveform.float(), f["sample_rate"] // sample_rate)
        n, target = x.shape[1], f["clip_samples"]
        if n < target:
            x = x.repeat(1, target // n)
            x = F.pad(x, (0, target - x.shape[1]))
        return x[:, :target]

    def embed(self, waveform: torch.Tensor, sample_rate: int = 16000) -> torch.Tensor:
        features = self.log_mel(self.prepare(waveform, sample_rate)).to(self.dtype)
        return F.normalize(self(input_features=features).audio_embeds, dim=-1)


def build_official_component(target: str) -> nn.Module:
    """A new (untrained) module for one of the audio folders of the official profile.

    Build it under ``torch.device("meta")`` to get the structure without allocating memory.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    from codi_sdk.official.connectors import OfficialEnvironmentEncoder2D, OfficialJointAttention
    from codi_sdk.official.profile import COMPONENTS

    spec = COMPONENTS[target]
    cls_name = spec.class_name.split(":")[1]
    cfg = dict(spec.config)
    builders = {
        "UNet2DConditionModel": lambda: UNet2DConditionModel(**cfg),
        "AutoencoderKL": lambda: AutoencoderKL(**cfg),
        "SpeechT5HifiGan": lambda: SpeechT5HifiGan(SpeechT5HifiGanConfig(**cfg)),
        "AudioLDMMel": lambda: AudioLDMMel(**cfg),
        "OfficialEnvironmentEncoder2D": lambda: OfficialEnvironmentEncoder2D(**cfg),
        "OfficialJointAttention": lambda: OfficialJointAttention(**cfg),
        "CoDiCLAPAudioEncoder": lambda: CoDiCLAPAudioEncoder(ClapAudioConfig(**cfg)),
    }
    return builders[cls_name]()


def load_official_component(root, target: str, *, dtype: torch.dtype | None = None) -> nn.Module:
    """Load folder ``target`` (e.g. ``"audio/unet"``, ``"audio/vocoder"``) of a converted weights root."""
    from pathlib import Path

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import SpeechT5HifiGan

    from codi_sdk.errors import WeightsNotFoundError
    from codi_sdk.official.connectors import OfficialEnvironmentEncoder2D, OfficialJointAttention
    from codi_sdk.official.profile import COMPONENTS

    folder = Path(root) / target
    if not (folder / "config.json").is_file():
        raise WeightsNotFoundError(f"no converted component {target!r} in {root} (run `codi convert-official`)")
    cls = {
        "UNet2DConditionModel": UNet2DConditionModel, "AutoencoderKL": AutoencoderKL, "SpeechT5HifiGan": SpeechT5HifiGan,
        "AudioLDMMel": AudioLDMMel, "OfficialEnvironmentEncoder2D": OfficialEnvironmentEncoder2D,
        "OfficialJointAttention": OfficialJointAttention, "CoDiCLAPAudioEncoder": CoDiCLAPAudioEncoder,
    }[COMPONENTS[target].class_name.split(":")[1]]
    if COMPONENTS[target].library == "transformers":
        return cls.from_pretrained(folder, dtype=dtype) if dtype else cls.from_pretrained(folder)
    return cls.from_pretrained(folder, torch_dtype=dtype) if dtype else cls.from_pretrained(folder)


OFFICIAL_TARGETS: tuple[str, ...] = (
    "audio/unet", "audio/vae", "audio/vocoder", "audio/mel", "audio/env_encoder", "audio/joint", "audio/encoder",
)

__all__ = ["AudioLDMMel", "CoDiCLAPAudioEncoder", "build_official_component", "load_official_component", "OFFICIAL_TARGETS"]
