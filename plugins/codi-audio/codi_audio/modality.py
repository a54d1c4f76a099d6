"""`AudioModality`: what counts as audio, how it is converted to the canonical sample, read and written.

The canonical sample is a float32 torch tensor ``[16000]``: one second of mono audio at 16 kHz with
values in [-1, 1]. :meth:`AudioModality.convert` gets there from what users have at hand.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codi_sdk.modality import COMPONENTS, Modality
from codi_sdk.outputs import AudioOutput

SAMPLE_RATE = 16000
NUM_SAMPLES = 16000
#: More channels than this on the shorter axis of a 2-D array is taken for a batch, not a recording.
MAX_CHANNELS = 16
_RATE_KEYS = ("sample_rate", "sampling_rate", "sr")
_WAVE_KEYS = ("waveform", "array", "audio")


class AudioModality(Modality):
    """Mono 16 kHz audio, one second long.

    ``convert`` accepts:

    * a path (``str`` / ``os.PathLike``) to a file soundfile decodes (WAV, FLAC, OGG, ...) or a ``.npy``
      array (taken as 16 kHz);
    * a numpy array or torch tensor, 1-D ``[N]`` or 2-D with channels on either axis (the shorter
      axis, at most 16 channels), float in [-1, 1] or integer PCM; taken as 16 kHz unless a rate is
      given: ``convert(x, sample_rate=44100)``, ``convert((x, 44100))`` or
      ``convert({"array": x, "sampling_rate": 44100})`` (HF datasets style; ``waveform``/``audio``
      and ``sample_rate``/``sr`` also work).

    It mixes to mono (channel mean), resamples to 16 kHz (``scipy.signal.resample_poly``), zero-pads
    or trims to 16 000 samples (keeping the start), and peak-normalises only when a value exceeds 1.
    Silence is valid. NaN/inf, empty input, 3-D or higher arrays and undecodable files are refused.
    """

    name = "audio"
    sample_type = (
        "mono float32 waveform, 16 kHz, 16000 samples (1 s) in [-1, 1]; from a WAV/FLAC/OGG/.npy path, "
        "or a 1-D/2-D numpy array or torch tensor (channels on either axis, 16 kHz unless given as "
        "(waveform, sample_rate) or {'array': ..., 'sampling_rate': ...})"
    )
    extensions = (".wav", ".flac", ".npy")
    components = COMPONENTS + ("vocoder", "mel_inverter")

    # -- data ---------------------------------------------------------------------------------
    def convert(self, value: Any, sample_rate: int | None = None) -> torch.Tensor:
        """A user value -> float32 tensor ``[16000]`` (see the class docstring for what is accepted)."""
        if isinstance(value, (str, os.PathLike)):
            if sample_rate is not None:
                raise self.invalid("sample_rate is read from the file; do not pass one with a path")
            return self.load(value)
        if isinstance(value, dict):
            wave = next((value[k] for k in _WAVE_KEYS if k in value), None)
            rate = next((value[k] for k in _RATE_KEYS if k in value), None)
            if wave is None or rate is None:
                raise self.invalid(f"a dict needs one of the keys {_WAVE_KEYS} and one of {_RATE_KEYS}, got {sorted(value)}")
            return self._from_array(wave, rate)
        if isinstance(value, tuple):
            if len(value) != 2:
                raise self.invalid(f"a tuple must be (waveform, sample_rate), got {len(value)} items")
            return self._from_array(value[0], value[1])
        return self._from_array(value, SAMPLE_RATE if sample_rate is None else sample_rate)

    def load(self, path: str | os.PathLike) -> torch.Tensor:
        """Read an audio file (anything soundfile decodes) or a ``.npy`` array (16 kHz) into a sample."""
        path = Path(path)
        if not path.is_file():
            raise self.invalid(f"no such audio file: {str(path)!r}")
        if path.suffix.lower() == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except Exception as exc:
                raise self.invalid(f"cannot read {str(path)!r} as a numpy array ({exc})") from exc
            return self._from_array(array, SAMPLE_RATE)
        import soundfile as sf

        try:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (frames, channels)
        except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
            raise self.invalid(f"cannot decode {str(path)!r} as audio ({exc})") from exc
        return self._from_array(data, rate)

    def save(self, sample: Any, path: str | os.PathLike) -> Path:
        """Write a sample as 16-bit WAV, FLAC (by extension) or ``.npy``, atomically."""
        return self.to_output(sample).save(path)

    def to_output(self, sample: Any) -> AudioOutput:
        """Wrap a sample in an :class:`~codi_sdk.outputs.AudioOutput` (float32 numpy, 16 kHz)."""
        if isinstance(sample, torch.Tensor) and sample.ndim == 1 and sample.is_floating_point() and sample.numel() > 0 \
                and bool(torch.isfinite(sample).all()) and float(sample.abs().max()) <= 1.0:
            wave = sample.detach().float().cpu()  # a generated waveform keeps its length (official CoDi: 10.24 s)
        else:
            wave = self.convert(sample)
        return AudioOutput(modality=self.name, waveform=wave.numpy(), sample_rate=SAMPLE_RATE)

    def _from_array(self, value: Any, rate: Any) -> torch.Tensor:
        rate = self._check_rate(rate)
        if isinstance(value, torch.Tensor):
            array = value.detach().cpu()
            array = array.float().numpy() if array.is_floating_point() and array.dtype != torch.float64 else array.numpy()
        elif isinstance(value, np.ndarray):
            array = value
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
            array = np.asarray(value, dtype=np.float64)
        else:
            raise self.invalid(f"cannot read audio from a {type(value).__name__}")
        array = self._to_float(array)
        if array.size == 0:
            raise self.invalid(f"empty audio (shape {array.shape})")
        if array.ndim == 0 or array.ndim > 2:
            raise self.invalid(
                f"a {array.ndim}-D array (shape {array.shape}) is not one recording; pass [N] or [channels, N] / [N, channels]"
                + (" one sample at a time" if array.ndim > 2 else "")
            )
        if not np.isfinite(array).all():
            raise self.invalid("audio contains NaN or infinite values")
        if array.ndim == 2:
            array = self._mix_to_mono(array)
        if rate != SAMPLE_RATE:
            from scipy.signal import resample_poly

            ratio = Fraction(SAMPLE_RATE, rate)
            array = resample_poly(array, ratio.numerator, ratio.denominator)
        if array.shape[0] >= NUM_SAMPLES:
            array = array[:NUM_SAMPLES]
        else:
            array = np.pad(array, (0, NUM_SAMPLES - array.shape[0]))
        peak = float(np.abs(array).max())
        if peak > 1.0:
            array = array / peak
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    def _check_rate(self, rate: Any) -> int:
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
            raise self.invalid(f"sample rate must be a positive integer number of Hz, got {rate!r}")
        if not np.isfinite(rate) or rate <= 0 or float(rate) != int(rate):
            raise self.invalid(f"sample rate must be a positive integer number of Hz, got {rate!r}")
        return int(rate)

    def _to_float(self, array: np.ndarray) -> np.ndarray:
        kind = array.dtype.kind
        if kind == "f":
            return array.astype(np.float64, copy=False)
        if kind == "i":
            return array.astype(np.float64) / float(2 ** (8 * array.dtype.itemsize - 1))
        if kind == "u":
            half = float(2 ** (8 * array.dtype.itemsize - 1))
            return (array.astype(np.float64) - half) / half
        raise self.invalid(f"audio samples must be float or integer PCM, got dtype {array.dtype}")

    def _mix_to_mono(self, array: np.ndarray) -> np.ndarray:
        rows, cols = array.shape
        if rows == cols and rows > 1:
            raise self.invalid(f"ambiguous 2-D shape {array.shape}: cannot tell channels from samples")
        channel_axis = 0 if rows < cols else 1
        if array.shape[channel_axis] > MAX_CHANNELS:
            raise self.invalid(
                f"shape {array.shape} has {array.shape[channel_axis]} channels (more than {MAX_CHANNELS}); "
                "is it a batch? pass one recording at a time"
            )
        return array.mean(axis=channel_axis)

    # -- weights (shipped: codi_audio/weights/toyworld, found by Modality.default_weights) --------
    def load_encoder(self, path: str | os.PathLike | None = None):
        """The CLAP-style prompt encoder from ``<path>/encoder``, or from ``path`` itself when it is
        an encoder folder (``config.json`` at its top); default: the shipped weights.
        A folder written by ``codi convert-official`` (or its ``audio/`` sub-folder) gives the official
        CoDi encoder (``codi_audio.official_diffuser``).
        """
        from codi_sdk.official.folder import official_folder

        official = official_folder(path, self.name)
        if official is not None:  # written by `codi convert-official`
            from .official_diffuser import OfficialAudioEncoder

            return OfficialAudioEncoder.from_official(official)
        from .encoder import AudioEncoder

        folder = self.resolve_weights(path)
        if not (folder / "encoder" / "config.json").is_file() and (folder / "config.json").is_file():
            return AudioEncoder.from_pretrained(folder)
        return AudioEncoder.from_pretrained(folder / "encoder")

    def load_diffuser(self, path: str | os.PathLike | None = None):
        """The diffuser from ``path``: ours, or a diffusers AudioLDM folder (``vae/``, ``unet/``, ``vocoder/``).
        A folder written by ``codi convert-official`` (or its ``audio/`` sub-folder) gives the official
        CoDi diffuser (``codi_audio.official_diffuser``).
        """
        from codi_sdk.official.folder import official_folder

        official = official_folder(path, self.name)
        if official is not None:  # written by `codi convert-official`
            from .official_diffuser import OfficialAudioDiffuser

            return OfficialAudioDiffuser.from_official(official)
        from .diffuser import AudioDiffuser
        from .harmonic import HarmonicAudioDiffuser

        folder = self.resolve_weights(path)
        if HarmonicAudioDiffuser.is_folder(folder):
            return HarmonicAudioDiffuser.from_pretrained(folder)
        return AudioDiffuser.from_pretrained(folder)

    def init_encoder(self):
        """A new, untrained ToyWorld-size prompt encoder."""
        from .encoder import AudioEncoder

        return AudioEncoder()

    def init_diffuser(self, latent: str = "mel", frequency_position: bool = False, **harmonic: Any):
        """A new, untrained ToyWorld-size diffuser (VAE, denoiser, environment encoder, joint, vocoder).

        ``latent``: ``"mel"`` (AudioLDM's mel front end, latent ``[4, 13, 8]``), ``"log"``
        (semitone-spaced log-frequency front end, latent ``[4, 13, 32]``; see
        :meth:`codi_audio.diffuser.AudioDiffuser.toyworld`) or ``"harmonic"`` (pitch, loudness and
        harmonic amplitudes in separate channels, latent ``[12, 1, 32]``, with pitch bins
        (``pitch_step``) one channel per bin instead of one for the pitch; for held harmonic notes;
        :class:`codi_audio.harmonic.HarmonicAudioDiffuser`). ``frequency_position`` (spectrogram
        latents only): the denoiser also reads each latent position's place on the frequency axis
        as one more input channel. ``harmonic`` (harmonic latent only): settings of its codec,
        e.g. ``pitch_scale`` (:class:`codi_audio.harmonic.HarmonicCodec`).
        """
        from .diffuser import AudioDiffuser

        if latent == "harmonic":
            if frequency_position:
                raise ValueError("frequency_position applies to the spectrogram latents ('mel', 'log'), not 'harmonic'")
            from .harmonic import HarmonicAudioDiffuser

            return HarmonicAudioDiffuser.toyworld(**harmonic)
        if harmonic:
            raise ValueError(f"{', '.join(sorted(harmonic))} applies to the 'harmonic' latent only")
        return AudioDiffuser.toyworld(latent=latent, frequency_position=frequency_position)
