"""The mel front end: waveform -> log-mel spectrogram image, with AudioLDM's settings.

AudioLDM (and its HiFi-GAN vocoder) works on a *magnitude* STFT of 16 kHz audio (n_fft 1024, Hann
window 1024, hop 160; the signal reflect-padded by (n_fft - hop) / 2 on both sides and framed
without centring, so N samples give N / 160 frames), projected on 64 Slaney mel filters between 0
and 8 kHz (librosa's defaults, area-normalised), then ``log(clamp(mel, 1e-5))``. One second
(16 000 samples) gives exactly 100 frames.

The VAE sees that log-mel as a one-channel image ``[B, 1, T, 64]`` (time down, mel bins across),
padded with silence to a frame count its downsampling divides, and mapped by a fixed affine
``(log_mel - shift) / scale`` to roughly unit range. ``shift`` and ``scale`` live in the config
(``mel_config.json``): the ToyWorld models use ``shift=-4.5, scale=3.0``; a real AudioLDM VAE
was trained on the raw log-mel, i.e. ``shift=0, scale=1``.

Back to sound without a HiFi-GAN: :class:`MelInverter` (learned) or the filterbank's
pseudo-inverse gives a linear magnitude, and :func:`griffin_lim` finds phases for it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from transformers.audio_utils import mel_filter_bank


class MelSpectrogram(nn.Module, ConfigMixin):
    """Waveforms ``[B, N]`` -> log-mel ``[B, N // hop, n_mels]`` and back to a linear magnitude.

    The filterbank and window are non-persistent buffers: nothing here is learned, the config
    is the whole state. Save it next to the component it feeds with :meth:`save_config`.

    ``frequency_scale="log"`` replaces the Slaney mel filters by ``n_mels`` triangles evenly spaced
    in log-frequency between ``f_min`` (> 0) and ``f_max`` (:func:`log_filter_bank`), where a change
    of pitch shifts a harmonic pattern without changing it. ``harmonics`` (log scale only) adds
    :meth:`harmonic_log_spec`, the same bank read at those multiples of each bin's frequency.
    """

    config_name = "mel_config.json"

    @register_to_config
    def __init__(
        self,
        sampling_rate: int = 16000,
        n_fft: int = 1024,
        win_length: int = 1024,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float = 8000.0,
        log_floor: float = 1e-5,
        shift: float = 0.0,
        scale: float = 1.0,
        frequency_scale: str = "mel",
        harmonics: list[float] | None = None,
    ):
        super().__init__()
        if win_length > n_fft:
            raise ValueError(f"win_length {win_length} must not exceed n_fft {n_fft}")
        if frequency_scale == "mel":
            fb = mel_filter_bank(
                num_frequency_bins=n_fft // 2 + 1,
                num_mel_filters=n_mels,
                min_frequency=f_min,
                max_frequency=f_max,
                sampling_rate=sampling_rate,
                norm="slaney",
                mel_scale="slaney",
            )  # [n_freq, n_mels]
        elif frequency_scale == "log":
            fb = log_filter_bank(n_fft // 2 + 1, n_mels, f_min, f_max, sampling_rate)
        else:
            raise ValueError(f"frequency_scale must be 'mel' or 'log', got {frequency_scale!r}")
        if harmonics is not None:
            if frequency_scale != "log" or not harmonics or min(harmonics) <= 0:
                raise ValueError(f"harmonics (positive multiples) need frequency_scale='log'; got {harmonics!r}, {frequency_scale!r}")
            stack = [log_filter_bank(n_fft // 2 + 1, n_mels, f_min, f_max, sampling_rate, multiple=h).T for h in harmonics]
            self.register_buffer("harmonic_basis", torch.from_numpy(np.stack(stack)).float(), persistent=False)
        self.register_buffer("mel_basis", torch.from_numpy(np.ascontiguousarray(fb.T)).float(), persistent=False)
        self.register_buffer("mel_pinv", torch.linalg.pinv(self.mel_basis.double()).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    @property
    def pad(self) -> int:
        """Reflect padding on each side, so that frame i covers samples around ``i * hop``."""
        return (self.config.n_fft - self.config.hop_length) // 2

    def num_frames(self, num_samples: int) -> int:
        """Frames of :meth:`log_mel` for a waveform of ``num_samples`` samples."""
        return (num_samples + 2 * self.pad - self.config.n_fft) // self.config.hop_length + 1

    def magnitude(self, waveform: torch.Tensor) -> torch.Tensor:
        """Magnitude STFT ``[B, n_fft // 2 + 1, T]`` of waveforms ``[B, N]`` (AudioLDM framing)."""
        if waveform.ndim != 2:
            raise ValueError(f"expected waveforms [B, N], got shape {tuple(waveform.shape)}")
        x = torch.nn.functional.pad(waveform.float()[:, None], (self.pad, self.pad), mode="reflect")[:, 0]
        spec = torch.stft(
            x,
            self.config.n_fft,
            hop_length=self.config.hop_length,
            win_length=self.config.win_length,
            window=self.window.float(),
            center=False,
            return_complex=True,
        )
        return spec.abs()

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Natural-log mel spectrogram ``[B, T, n_mels]`` (what AudioLDM's vocoder takes)."""
        return self.log_mel_of_magnitude(self.magnitude(waveform))

    def log_mel_of_magnitude(self, magnitude: torch.Tensor) -> torch.Tensor:
        """:meth:`log_mel` from a magnitude STFT ``[B, n_fft // 2 + 1, T]`` already computed."""
        return self._log(torch.matmul(self.mel_basis.float(), magnitude)).transpose(1, 2)

    def _log(self, energies: torch.Tensor) -> torch.Tensor:
        """Natural log, floored at the config's ``log_floor``."""
        return torch.log(torch.clamp(energies, min=self.config.log_floor))

    def harmonic_log_spec(self, waveform: torch.Tensor) -> torch.Tensor:
        """Harmonic stack ``[B, H, T, n_mels]`` (config ``harmonics``): channel h is the log filterbank
        read at ``harmonics[h]`` times each filter's frequency, so that at a fundamental's bin the
        channels hold its harmonics' energies (the HCQT of Bittner et al., 2017)."""
        if self.config.harmonics is None:
            raise ValueError("this front end has no harmonics (config harmonics=None)")
        mag = self.magnitude(waveform)  # [B, F, T]
        return self._log(torch.einsum("hnf,bft->bhtn", self.harmonic_basis.float(), mag))

    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel -> the VAE's input range: ``(log_mel - shift) / scale``."""
        return (log_mel - self.config.shift) / self.config.scale

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`."""
        return x * self.config.scale + self.config.shift

    @property
    def silence(self) -> float:
        """The log-mel value of silence (``log(log_floor)``), used to pad frames."""
        return math.log(self.config.log_floor)

    def image(self, waveform: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Normalised log-mel image ``[B, 1, num_frames, n_mels]``, padded with silence or cropped."""
        return self.log_mel_image(self.log_mel(waveform), num_frames)

    def log_mel_image(self, log_mel: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Log-mel ``[B, T, n_mels]`` -> the normalised image ``[B, 1, num_frames, n_mels]`` (padded with silence or cropped)."""
        if num_frames is not None:
            log_mel = fit_frames(log_mel, num_frames, self.silence)
        return self.normalize(log_mel)[:, None]

    def mel_to_magnitude(self, log_mel: torch.Tensor, nnls_iters: int = 0) -> torch.Tensor:
        """Approximate linear magnitude ``[B, n_freq, T]`` from log-mel ``[B, T, n_mels]`` (for Griffin-Lim).

        The filterbank's pseudo-inverse applied to ``exp(log_mel)``, clamped at zero. A sine comes
        back as a narrow band whose centre is within ~10 Hz of the original below 1 kHz (the mel
        bands there are ~46 Hz apart). ``nnls_iters`` > 0 refines it by multiplicative
        non-negative least-squares updates ``s <- s * (M^T mel) / (M^T M s)``: a sine's centre
        lands within ~5 Hz, but harmonic patterns above ~1 kHz get worse (on ToyWorld sounds the
        timbre probe drops from ~90 % to ~77 % at 50 iterations), so the default is 0.
        """
        mel = torch.exp(log_mel.float()).transpose(1, 2)
        s = torch.clamp(torch.matmul(self.mel_pinv.float(), mel), min=0.0)
        if nnls_iters > 0:
            basis = self.mel_basis.float()
            s, target = s + 1e-6, torch.matmul(basis.T, mel)  # strictly positive start for the updates
            for _ in range(nnls_iters):
                s = s * target / (torch.matmul(basis.T, torch.matmul(basis, s)) + 1e-12)
        return s


def log_filter_bank(
    num_frequency_bins: int, num_filters: int, f_min: float, f_max: float, sampling_rate: int, multiple: float = 1.0
) -> np.ndarray:
    """Triangular filters ``[num_frequency_bins, num_filters]`` with centres evenly spaced in
    log-frequency between ``f_min`` and ``f_max`` (a constant-Q layout: a change of pitch shifts a
    harmonic pattern along the filter axis without changing its shape). Each triangle reaches its
    neighbours' centres, and at least one STFT bin either side where those are closer than a bin;
    each filter sums to 1. ``multiple`` scales every filter's frequencies (filters that end up past
    the Nyquist frequency are zero).
    """
    if not 0 < f_min < f_max <= sampling_rate / 2:
        raise ValueError(f"a log filterbank needs 0 < f_min < f_max <= {sampling_rate / 2}; got {f_min}, {f_max}")
    freqs = np.linspace(0.0, sampling_rate / 2, num_frequency_bins)
    bin_hz = freqs[1]
    edges = np.geomspace(f_min, f_max, num_filters + 2) * multiple
    fb = np.zeros((num_frequency_bins, num_filters))
    for i in range(num_filters):
        if edges[i + 1] + bin_hz >= freqs[-1]:
            continue
        lo = min(edges[i], edges[i + 1] - bin_hz)
        c = edges[i + 1]
        hi = max(edges[i + 2], c + bin_hz)
        up = (freqs - lo) / (c - lo)
        down = (hi - freqs) / (hi - c)
        fb[:, i] = np.clip(np.minimum(up, down), 0.0, None)
        fb[:, i] /= fb[:, i].sum()
    return fb


def fit_frames(log_mel: torch.Tensor, num_frames: int, pad_value: float) -> torch.Tensor:
    """Crop or pad (with ``pad_value``) the time axis (dim 1) of ``[B, T, F]`` to ``num_frames``."""
    t = log_mel.shape[1]
    if t >= num_frames:
        return log_mel[:, :num_frames]
    return torch.nn.functional.pad(log_mel, (0, 0, 0, num_frames - t), value=pad_value)


def griffin_lim(
    magnitude: torch.Tensor,
    mel: MelSpectrogram,
    num_samples: int,
    n_iter: int = 32,
    momentum: float = 0.99,
    seed: int = 0,
) -> torch.Tensor:
    """Waveforms ``[B, num_samples]`` whose STFT magnitude approximates ``magnitude`` ``[B, F, T]``.

    Fast Griffin-Lim (Perraudin et al. 2013) with ``torch.stft``/``torch.istft``. The frames are
    treated as centred on ``i * hop``: AudioLDM's framing differs by half a hop (5 ms), which is
    inaudible here. Deterministic for a given ``seed`` (initial phases).
    """
    cfg = mel.config
    window = mel.window.to(magnitude.device, torch.float32)
    n_frames = num_samples // cfg.hop_length + 1  # frames of a centred STFT of num_samples
    mag = magnitude.float()
    if mag.shape[-1] < n_frames:
        mag = torch.cat([mag, mag[..., -1:].expand(*mag.shape[:-1], n_frames - mag.shape[-1])], dim=-1)
    mag = mag[..., :n_frames]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    phase = torch.exp(2j * math.pi * torch.rand(mag.shape, generator=gen)).to(mag.device)
    stft_kw = dict(n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=window)
    prev = torch.zeros_like(phase)
    wave = None
    for _ in range(n_iter):
        wave = torch.istft(mag * phase, length=num_samples, **stft_kw)
        rebuilt = torch.stft(wave, return_complex=True, **stft_kw)
        accel = rebuilt - (momentum / (1 + momentum)) * prev
        phase = accel / accel.abs().clamp(min=1e-8)
        prev = rebuilt
    wave = torch.istft(mag * phase, length=num_samples, **stft_kw)
    return wave


class MelInverter(ModelMixin, ConfigMixin):
    """A learned log-mel -> linear-magnitude map, for Griffin-Lim: the idea of Tacotron's post-net.

    The filterbank's pseudo-inverse (:meth:`MelSpectrogram.mel_to_magnitude`) spreads each mel
    band's energy over the whole band. Above ~1 kHz, where bands are hundreds of Hz wide, that
    smears a harmonic series (odd-only harmonics gain even neighbours) and neighbouring bins of
    one partial beat against each other, so a steady tone comes back with a flutter. This network
    learns the correction: a stack of residual 1-D convolutions over time reads the normalised
    log-mel and adds a per-bin offset to the log of the pseudo-inverse. Its output layer starts
    at zero, so an untrained inverter *is* the pseudo-inverse.

    ``shift`` / ``scale`` normalise the input log-mel as the VAE's front end does.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        n_mels: int = 64,
        n_freq: int = 513,
        channels: int = 256,
        kernel_size: int = 5,
        layers: int = 3,
        shift: float = 0.0,
        scale: float = 1.0,
        log_floor: float = 1e-5,
    ):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-length convolutions), got {kernel_size}")
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        pad = kernel_size // 2
        self.conv_in = nn.Conv1d(n_mels, channels, kernel_size, padding=pad)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GELU(), nn.Conv1d(channels, channels, kernel_size, padding=pad)) for _ in range(layers - 1)
        )
        self.conv_out = nn.Conv1d(channels, n_freq, 1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, log_mel: torch.Tensor, base_magnitude: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, T, n_mels]`` and its pseudo-inverse ``[B, n_freq, T]`` -> log magnitude ``[B, n_freq, T]``."""
        cfg = self.config
        if log_mel.shape[-1] != cfg.n_mels or base_magnitude.shape[1] != cfg.n_freq:
            raise ValueError(f"MelInverter takes log-mel [B, T, {cfg.n_mels}] and magnitude [B, {cfg.n_freq}, T]; got "
                             f"{tuple(log_mel.shape)} and {tuple(base_magnitude.shape)}")
        x = ((log_mel - cfg.shift) / cfg.scale).transpose(1, 2).to(self.conv_in.weight.dtype)
        h = self.conv_in(x)
        for block in self.blocks:
            h = h + block(h)
        base = torch.log(base_magnitude.float().clamp(min=cfg.log_floor))
        return base + self.conv_out(nn.functional.gelu(h)).float()
