"""The harmonic audio latent: codec analysis/synthesis and the diffuser around it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codi_audio.harmonic import HarmonicAudioDiffuser, HarmonicCodec
from codi_audio.modality import AudioModality
from codi_sdk.errors import WeightsNotFoundError
from codi_sdk.toyworld.probes import probe_audio
from codi_sdk.toyworld.render import render_audio
from codi_sdk.toyworld.scenes import COLORS, MOTIONS, SHAPES, Scene, item_rng


@pytest.fixture(scope="module")
def sounds():
    """One ToyWorld sound per (colour, shape), motions cycling; held-out pairs included."""
    pairs = [(c, s) for c in COLORS for s in SHAPES]
    scenes = [Scene(c, s, MOTIONS[i % len(MOTIONS)]) for i, (c, s) in enumerate(pairs)]
    waves = np.stack([render_audio(s, item_rng("seen", i, "audio", 7)) for i, s in enumerate(scenes)])
    return scenes, torch.from_numpy(waves).float()


def test_codec_round_trip_keeps_what_the_probe_reads(sounds):
    scenes, waves = sounds
    codec = HarmonicCodec()
    params = codec.encode(waves)
    assert params.shape == (len(scenes), 12, 1, 32)
    out = codec.decode(params)
    assert out.shape == waves.shape and out.abs().max() <= 1.0
    for s, wave in zip(scenes, out):
        assert probe_audio(wave.numpy()) == {"color": s.color, "shape": s.shape, "motion": s.motion}, s


def test_codec_channels_hold_pitch_loudness_and_timbre_apart(sounds):
    scenes, waves = sounds
    codec = HarmonicCodec()
    params = codec.encode(waves)[:, :, 0]
    by = {(s.color, s.shape): p for s, p in zip(scenes, params)}
    # pitch: red (C4) and yellow (C5) are 12 semitones apart = 12 units at pitch_scale 1, whatever the timbre
    for shape in ("circle", "square", "triangle"):
        gap = float(by["yellow", shape][0].mean() - by["red", shape][0].mean())
        assert gap == pytest.approx(12.0, abs=0.3)
    # timbre: a sine has no harmonics (-1); a square only odd ones; a sawtooth every one; the same at every pitch
    for color in ("red", "green", "blue", "yellow"):
        circle, square, saw = (by[color, shape][2:, 0] for shape in ("circle", "square", "triangle"))
        assert torch.all(circle == -1.0)
        assert torch.all(square[0::2] == -1.0) and square[1] == pytest.approx(1 + np.log10(1 / 3), abs=0.05)
        assert saw[0] == pytest.approx(1 + np.log10(1 / 2), abs=0.05)
    # loudness: a "right" sound rises, a "left" one falls
    moving = [(s.motion, p) for s, p in zip(scenes, params) if s.motion in ("left", "right")]
    assert {m for m, _ in moving} == {"left", "right"}
    for motion, p in moving:
        assert (p[1, -3] > p[1, 2] + 1.0) if motion == "right" else (p[1, 2] > p[1, -3] + 1.0)


def test_pitch_bins_round_trip_and_decode_a_blend_of_two_notes_to_the_stronger(sounds):
    scenes, waves = sounds
    codec = HarmonicCodec(pitch_step=1.0, f_min=200.0, f_max=700.0)
    assert codec.pitch_channels == 22 and codec.channels == 33
    params = codec.encode(waves)
    assert params.shape == (len(scenes), 33, 1, 32)
    # one bump per clip: its peak bin is the note's semitone above f_min, rounded
    f0 = codec.fundamental(waves)
    peak = params[:, :22, 0, 0].argmax(-1)
    assert torch.equal(peak, (12 * torch.log2(f0 / 200.0)).round().long())
    for s, wave in zip(scenes, codec.decode(params)):
        assert probe_audio(wave.numpy()) == {"color": s.color, "shape": s.shape, "motion": s.motion}, s
    # a denoiser unsure between green and blue predicts a blend; decoding picks a note, not the middle
    green, blue = codec._pitch_code(torch.tensor([329.63, 392.0]))
    for w, note in ((0.6, 329.63), (0.4, 392.0)):
        hz = float(codec._pitch_decode((w * green + (1 - w) * blue)[None])[0])
        assert abs(1200 * np.log2(hz / note)) < 15, (w, hz)
    # the single pitch channel would land between the two notes
    scalar = HarmonicCodec()
    mid = float(scalar._pitch_decode(0.5 * (scalar._pitch_code(torch.tensor([329.63])) + scalar._pitch_code(torch.tensor([392.0]))))[0])
    assert 340 < mid < 380


def test_pitch_bin_options_are_checked():
    with pytest.raises(ValueError, match="pitch_step must be 0 .* or a positive number of semitones"):
        HarmonicCodec(pitch_step=-1.0)
    with pytest.raises(ValueError, match="pitch_scale applies to the single pitch channel"):
        HarmonicCodec(pitch_step=1.0, pitch_scale=2.0)
    with pytest.raises(ValueError, match="expected 0 < f_min < f_ref < f_max"):
        HarmonicCodec(f_min=400.0)
    d = AudioModality().init_diffuser(latent="harmonic", pitch_step=2.0, f_min=200.0, f_max=700.0)
    assert d.latent_shape == (11 + 11, 1, 32) and d.unet.config.in_channels == 22


def test_codec_refuses_wrong_shapes():
    codec = HarmonicCodec()
    with pytest.raises(ValueError, match=r"expected waveforms \[B, 16000\]"):
        codec.encode(torch.zeros(2, 8000))
    with pytest.raises(ValueError, match=r"expected parameters \[B, 12, 1, frames\]"):
        codec.decode(torch.zeros(2, 4, 1, 32))
    with pytest.raises(ValueError, match="not a multiple of frames"):
        HarmonicCodec(frames=30)


def test_harmonic_diffuser_denoises_saves_and_loads_through_the_modality(sounds, tmp_path):
    _, waves = sounds
    torch.manual_seed(0)
    modality = AudioModality()
    d = modality.init_diffuser(latent="harmonic").eval()
    assert isinstance(d, HarmonicAudioDiffuser) and d.latent_shape == (12, 1, 32)
    assert not list(d.vae.parameters())  # nothing for stage 2's VAE sub-stage to fit
    d.set_latent_scale(2.0)
    z = d.encode(waves[:3])
    assert z.shape == (3, 12, 1, 32)
    assert torch.allclose(z, 2.0 * d.codec.encode(waves[:3]))
    assert all(w.shape == (16000,) for w in d.decode(z))
    t, ctx, env = torch.tensor([5, 500, 900]), torch.randn(3, 1, 64), torch.randn(3, 4, 64)
    # joint attention starts at zero: with or without an environment, the same prediction
    with torch.no_grad():
        eps = d.denoise(z, t, ctx)
        assert eps.shape == z.shape and torch.allclose(d.denoise(z, t, ctx, env), eps, atol=1e-6)
        assert d.environment(z, t).shape == (3, 4, 64)
    d.save_pretrained(tmp_path / "audio")
    loaded = modality.load_diffuser(tmp_path / "audio")
    assert isinstance(loaded, HarmonicAudioDiffuser) and loaded.latent_scale == 2.0
    with torch.no_grad():
        assert torch.equal(loaded.denoise(z, t, ctx, env), d.denoise(z, t, ctx, env))
    with pytest.raises(ValueError, match="no vocoder choice"):
        d.decode(z, vocoder="griffinlim")
    with pytest.raises(ValueError, match="context has 32 features but this denoiser takes 64"):
        d.denoise(z, t, torch.randn(3, 1, 32))


def test_harmonic_latent_refuses_what_it_does_not_take(tmp_path):
    with pytest.raises(ValueError, match="frequency_position applies to the spectrogram latents"):
        AudioModality().init_diffuser(latent="harmonic", frequency_position=True)
    with pytest.raises(ValueError, match="accepted: mel, log .*harmonic"):
        AudioModality().init_diffuser(latent="cqt")
    (tmp_path / "harmonic").mkdir()
    with pytest.raises(WeightsNotFoundError, match="not a harmonic audio weights folder"):
        HarmonicAudioDiffuser.from_pretrained(tmp_path)


def test_codec_options_reach_the_codec_and_unknown_ones_are_refused():
    d = AudioModality().init_diffuser(latent="harmonic", pitch_scale=6.0, harmonics=7)
    assert d.codec.config.pitch_scale == 6.0 and d.latent_shape == (8, 1, 32)
    with pytest.raises(ValueError, match="pitch_scale applies to the 'harmonic' latent only"):
        AudioModality().init_diffuser(pitch_scale=1.0)
    with pytest.raises(ValueError, match="unknown harmonic codec option.*pitch_scal; accepted: .*pitch_scale"):
        AudioModality().init_diffuser(latent="harmonic", pitch_scal=1.0)
