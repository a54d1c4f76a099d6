"""Tests of the codi-audio plugin: mel front end, conversion, components, real-folder loading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig
from transformers.audio_utils import hertz_to_mel

from codi_audio.diffuser import TOYWORLD_UNET, AudioDiffuser
from codi_audio.encoder import AudioEncoder
from codi_audio.mel import MelInverter, MelSpectrogram, griffin_lim
from codi_audio.modality import AudioModality
from codi_sdk.errors import InvalidInputError, WeightsNotFoundError
from codi_sdk.registry import Registry


def sine(freq: float, rate: int = 16000, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def fundamental(wave: np.ndarray, rate: int = 16000, lo: float = 100.0, hi: float = 2000.0) -> float:
    """Centre frequency of the strongest spectral peak in [lo, hi] Hz (power-weighted over +-40 Hz)."""
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave)))) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / rate)
    band = (freqs >= lo) & (freqs <= hi)
    peak = freqs[band][np.argmax(spec[band])]
    near = np.abs(freqs - peak) <= 40
    return float((spec[near] * freqs[near]).sum() / spec[near].sum())


@pytest.fixture(scope="module")
def modality() -> AudioModality:
    return AudioModality()


@pytest.fixture(scope="module")
def toy() -> AudioDiffuser:
    torch.manual_seed(0)
    return AudioDiffuser.toyworld().eval()


# -- mel front end --------------------------------------------------------------------------------
def test_mel_of_440hz_sine_peaks_in_the_slaney_bin_nearest_440hz():
    mel = MelSpectrogram()
    log_mel = mel.log_mel(torch.from_numpy(sine(440.0))[None])
    assert log_mel.shape == (1, 100, 64)  # 16 000 samples / hop 160
    centres = np.linspace(0.0, hertz_to_mel(8000.0, "slaney"), 64 + 2)[1:-1]
    expected = int(np.argmin(np.abs(centres - hertz_to_mel(440.0, "slaney"))))
    assert int(log_mel[0, 5:-5].mean(0).argmax()) == expected
    assert math.isclose(float(log_mel.min()), math.log(1e-5), abs_tol=5.0)  # floor is log(1e-5)


def test_log_filter_bank_centres_are_log_spaced_and_each_filter_sums_to_one():
    from codi_audio.mel import log_filter_bank

    fb = log_filter_bank(513, 64, 75.0, 8000.0, 16000)
    assert fb.shape == (513, 64) and np.allclose(fb.sum(0), 1.0)
    freqs = np.linspace(0.0, 8000.0, 513)
    centres = (freqs[:, None] * fb).sum(0)  # each filter's centre of mass
    steps = np.diff(np.log2(centres[8:]))  # past the lowest, where filters are a few STFT bins wide
    assert np.all(steps > 0) and np.allclose(steps, steps.mean(), rtol=0.15)
    high = log_filter_bank(513, 64, 75.0, 8000.0, 16000, multiple=4.0)
    assert np.allclose(high[:, -1], 0.0) and np.allclose(high[:, 0].sum(), 1.0)  # past Nyquist: empty
    with pytest.raises(ValueError, match="f_min"):
        log_filter_bank(513, 64, 0.0, 8000.0, 16000)


@pytest.mark.parametrize("f0", [261.63, 440.0])
def test_harmonic_stack_puts_a_sines_harmonic_channels_an_octave_apart(f0):
    mel = MelSpectrogram(frequency_scale="log", f_min=75.0, harmonics=[0.5, 1.0, 2.0])
    stack = mel.harmonic_log_spec(torch.from_numpy(sine(f0))[None])
    assert stack.shape == (1, 3, 100, 64)
    peak = stack[0, :, 5:-5].mean(1).argmax(-1)  # per channel: the bin whose multiple holds the sine
    per_octave = 65 / np.log2(8000.0 / 75.0)  # 66 log-spaced edges; bin i is centred at edge i + 1
    assert abs(int(peak[1]) + 1 - per_octave * np.log2(f0 / 75.0)) <= 1
    assert abs(int(peak[0] - peak[1]) - per_octave) <= 1  # read at half the frequency: an octave up
    assert abs(int(peak[1] - peak[2]) - per_octave) <= 1  # read at twice: an octave down
    with pytest.raises(ValueError, match="harmonics"):
        MelSpectrogram(harmonics=[1.0, 2.0])  # Slaney mel has no harmonic stack
    with pytest.raises(ValueError, match="no harmonics"):
        MelSpectrogram().harmonic_log_spec(torch.zeros(1, 16000))


def test_griffin_lim_reconstructs_a_sine_within_a_few_hz():
    mel = MelSpectrogram()
    log_mel = mel.log_mel(torch.from_numpy(sine(440.0))[None])
    wave = griffin_lim(mel.mel_to_magnitude(log_mel), mel, 16000)[0].numpy()
    assert wave.shape == (16000,)
    assert abs(fundamental(wave) - 440.0) < 10.0  # mel bands are ~46 Hz apart here
    refined = griffin_lim(mel.mel_to_magnitude(log_mel, nnls_iters=50), mel, 16000)[0].numpy()
    assert abs(fundamental(refined) - 440.0) < 4.0


def test_griffin_lim_fallback_keeps_toyworld_pitch_and_envelope():
    from codi_sdk.toyworld.probes import probe_audio
    from codi_sdk.toyworld.render import render_audio
    from codi_sdk.toyworld.scenes import Scene

    scenes = [Scene("red", "circle", "left"), Scene("green", "square", "right"), Scene("blue", "triangle", "up"),
              Scene("yellow", "circle", "down")]
    rng = np.random.default_rng(0)
    waves = torch.tensor(np.stack([render_audio(s, rng) for s in scenes]), dtype=torch.float32)
    mel = MelSpectrogram()
    rebuilt = griffin_lim(mel.mel_to_magnitude(mel.log_mel(waves)), mel, 16000)
    reads = [probe_audio(wave) for wave in rebuilt.numpy()]
    assert [r["color"] for r in reads] == [s.color for s in scenes]
    # a steady sine may come back with some beating (read as tremolo): allow one motion miss
    assert sum(r["motion"] == s.motion for r, s in zip(reads, scenes)) >= 3


def _toyworld_waves(n: int, seed: int = 0):
    from codi_sdk.toyworld.render import render_audio
    from codi_sdk.toyworld.scenes import Scene

    colors, shapes, motions = ("red", "green", "blue", "yellow"), ("circle", "square", "triangle"), ("left", "right", "up", "down")
    scenes = [Scene(colors[i % 4], shapes[i % 3], motions[(i // 3) % 4]) for i in range(n)]
    rng = np.random.default_rng(seed)
    return scenes, torch.tensor(np.stack([render_audio(s, rng) for s in scenes]), dtype=torch.float32)


def test_untrained_mel_inverter_is_the_pseudo_inverse_and_refuses_wrong_shapes():
    torch.manual_seed(0)
    mel, inverter = MelSpectrogram(), MelInverter()
    log_mel = mel.log_mel(torch.from_numpy(np.stack([sine(440.0), sine(261.63)])))
    base = mel.mel_to_magnitude(log_mel)
    with torch.no_grad():
        assert torch.allclose(torch.exp(inverter(log_mel, base)), base.clamp(min=1e-5), rtol=1e-5)
        with pytest.raises(ValueError, match=r"takes log-mel \[B, T, 64\] and magnitude \[B, 513, T\]"):
            inverter(log_mel[..., :32], base)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        MelInverter(kernel_size=4)
    with pytest.raises(ValueError, match="mel_inverter maps 32 mel bins"):
        AudioDiffuser(AutoencoderKL(**_tiny_vae(4, (8, 8, 8, 8))), UNet2DConditionModel(**TOYWORLD_UNET),
                      mel_inverter=MelInverter(n_mels=32))


def test_decoder_loss_trains_only_the_mel_inverter_and_sharpens_toyworld_harmonics():
    """A few hundred steps on true log-mels: the learned magnitude fits the STFT better than the
    pseudo-inverse does, and Griffin-Lim from it keeps what the probe reads."""
    from codi_sdk.toyworld.probes import probe_audio

    torch.manual_seed(0)
    diffuser = AudioDiffuser(AutoencoderKL(**_tiny_vae(4, (8, 8, 8, 8))), UNet2DConditionModel(**TOYWORLD_UNET),
                             mel=MelSpectrogram(shift=-4.5, scale=3.0),
                             mel_inverter=MelInverter(channels=64, layers=2, shift=-4.5, scale=3.0))
    assert list(diffuser.decoder_parts()) == ["mel_inverter"]
    scenes, waves = _toyworld_waves(24)
    true = diffuser.mel.log_mel(waves)
    target = diffuser.mel.magnitude(waves)

    def error() -> float:
        with torch.no_grad():
            return float(torch.linalg.norm(diffuser.mel_to_magnitude(true) - target) / torch.linalg.norm(target))

    before = error()
    diffuser.requires_grad_(False)
    diffuser.mel_inverter.requires_grad_(True)
    optimizer = torch.optim.Adam(diffuser.mel_inverter.parameters(), lr=2e-3)
    for step in range(150):
        idx = torch.arange(8) + 8 * (step % 3)
        losses = diffuser.decoder_loss(waves[idx], true[idx])  # features: the true mel stands in for the VAE's
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    assert set(losses) == {"loss", "l1", "sc"}
    assert all(p.grad is None for p in diffuser.unet.parameters()) and all(p.grad is None for p in diffuser.vae.parameters())
    after = error()  # measured: 0.52 -> 0.11
    assert after < 0.5 * before, (before, after)
    with torch.no_grad():
        rebuilt = griffin_lim(diffuser.mel_to_magnitude(true[:12]), diffuser.mel, 16000)
    reads = [probe_audio(w) for w in rebuilt.numpy()]
    assert [r["color"] for r in reads] == [s.color for s in scenes[:12]]
    with pytest.raises(ValueError, match="no mel_inverter to train"):
        AudioDiffuser(AutoencoderKL(**_tiny_vae(4, (8, 8, 8, 8))), UNet2DConditionModel(**TOYWORLD_UNET)).decoder_loss(waves[:2], true[:2])


# -- conversion -----------------------------------------------------------------------------------
@pytest.mark.parametrize("channels_first", [True, False])
def test_44k1_stereo_becomes_mono_16k_with_pitch_kept(modality, channels_first):
    left, right = sine(440.0, 44100), sine(440.0, 44100, amp=0.3)
    stereo = np.stack([left, right]) if channels_first else np.stack([left, right], axis=1)
    out = modality.convert((stereo, 44100))
    assert out.shape == (16000,) and out.dtype == torch.float32
    assert abs(fundamental(out.numpy()) - 440.0) < 2.0
    assert math.isclose(float(out.abs().max()), 0.4, abs_tol=0.02)  # channel mean, no normalisation


def test_stereo_file_and_dict_and_int16_are_converted(modality, tmp_path):
    stereo = np.stack([sine(330.0, 44100), sine(330.0, 44100)], axis=1)
    path = tmp_path / "tone.flac"
    sf.write(path, stereo, 44100)
    from_file = modality.convert(str(path))
    assert from_file.shape == (16000,) and abs(fundamental(from_file.numpy()) - 330.0) < 2.0
    pcm = (sine(330.0, 22050) * 32767).astype(np.int16)
    from_dict = modality.convert({"array": pcm, "sampling_rate": 22050})
    assert torch.allclose(from_dict, from_file, atol=0.02)


def test_short_audio_is_padded_long_trimmed_and_loud_normalised(modality):
    short = modality.convert(torch.ones(800) * 0.25)
    assert short.shape == (16000,) and short[:800].eq(0.25).all() and short[800:].eq(0).all()
    loud = modality.convert(np.concatenate([np.full(16000, 3.0), np.full(100, 9.0)]))
    assert float(loud.max()) == 1.0  # peak of the kept second, not of the trimmed tail
    assert modality.convert(torch.zeros(16000)).abs().max() == 0  # silence is valid


@pytest.mark.parametrize(
    "value, message",
    [
        (np.array([0.1, np.nan, 0.2]), "NaN"),
        (torch.tensor([0.0, float("inf")]), "NaN or infinite"),
        (np.zeros(0), "empty"),
        (np.zeros((2, 3, 16000)), "3-D"),
        (np.zeros((100, 16000)), "channels"),
        ((np.zeros(16000), -5), "sample rate"),
        (np.zeros(16000, dtype=bool), "dtype"),
        ({"array": np.zeros(10)}, "sampling_rate"),
        (object(), "cannot read audio"),
    ],
)
def test_bad_audio_is_refused_with_what_is_accepted(modality, value, message):
    with pytest.raises(InvalidInputError, match=message) as info:
        modality.convert(value)
    assert "accepted:" in str(info.value)


def test_non_audio_and_missing_files_are_refused(modality, tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    with pytest.raises(InvalidInputError, match="cannot decode"):
        modality.convert(text)
    with pytest.raises(InvalidInputError, match="no such audio file"):
        modality.convert(tmp_path / "missing.flac")


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".npy"])
def test_save_then_load_round_trips(modality, tmp_path, suffix):
    sample = modality.convert(sine(392.0))
    path = modality.save(sample, tmp_path / f"out{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}"]  # atomic: no temp left
    assert torch.allclose(modality.load(path), sample, atol=1e-4)
    assert modality.to_output(sample).sample_rate == 16000


def test_plugin_registers_the_audio_modality():
    from codi_audio import plugin

    modality = Registry.from_plugins({"audio": plugin}).get("audio")
    assert isinstance(modality, AudioModality) and "vocoder" in modality.components


# -- components -----------------------------------------------------------------------------------
def test_toyworld_component_shapes(toy):
    waves = torch.from_numpy(np.stack([sine(261.63), sine(523.25)]))
    z = toy.encode(waves)
    assert toy.latent_shape == (4, 13, 8) and z.shape == (2, 4, 13, 8)
    assert toy.latent_tokens(z).shape == (2, 104, 4)
    t = torch.tensor([10, 500])
    context = torch.nn.functional.normalize(torch.randn(2, 1, 64), dim=-1)
    env = torch.randn(2, 4, 64)
    with torch.no_grad():
        assert toy.denoise(z, t, context, env).shape == z.shape
        assert toy.environment(z, t).shape == (2, 4, 64)
    assert [d.shape for d in toy.decode(z)] == [(16000,), (16000,)]
    griffin = toy.decode(z[:1], vocoder="griffinlim")
    assert len(griffin) == 1 and griffin[0].shape == (16000,) and griffin[0].abs().max() <= 1
    with pytest.raises(ValueError, match="accepted: hifigan, griffinlim"):
        toy.decode(z, vocoder="wavenet")
    with pytest.raises(ValueError, match="context has 32 features"):
        toy.denoise(z, t, torch.randn(2, 1, 32))


def test_log_latent_keeps_a_pitch_change_a_shift_along_32_frequency_rows(tmp_path):
    torch.manual_seed(0)
    log = AudioModality().init_diffuser(latent="log").eval()
    assert log.time_fold == 4 and log.latent_shape == (4, 13, 32) and log.num_frames == 104
    # a fold puts 4 consecutive frames in the channels of one row, and unfolds back exactly
    image = torch.randn(2, 1, 104, 64)
    folded = log.fold(image)
    assert folded.shape == (2, 4, 26, 64) and torch.equal(folded[:, 3, 5], image[:, 0, 5 * 4 + 3])
    assert torch.equal(log.unfold(folded), image)
    # semitone filters: ToyWorld's red (C4) and yellow (C5) peak 12 filters apart, and a sawtooth's
    # second harmonic sits 12 filters above its fundamental at either pitch
    def peaks(f0):
        k = np.arange(1, 8)
        t = np.arange(16000) / 16000
        wave = (np.sin(2 * np.pi * f0 * k[:, None] * t) / k[:, None]).sum(0) * 0.2
        spec = log.mel.log_mel(torch.from_numpy(wave).float()[None])[0, 50]
        f = int(spec.argmax())
        return [f, f + 6 + int(spec[f + 6 : f + 17].argmax())]
    red, yellow = peaks(261.63), peaks(523.25)
    assert red == [11, 23] and yellow == [23, 35]
    waves = torch.from_numpy(np.stack([sine(261.63), sine(392.0)]))
    z = log.encode(waves)
    assert z.shape == (2, 4, 13, 32) and log.decode_mel(z).shape == (2, 100, 64)
    with torch.no_grad():
        assert log.denoise(z, torch.tensor([5, 900]), torch.randn(2, 1, 64), torch.randn(2, 4, 64)).shape == z.shape
    losses = log.vae_loss(waves, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(losses["loss"])
    log.save_pretrained(tmp_path / "log")
    loaded = AudioDiffuser.from_pretrained(tmp_path / "log")
    assert loaded.time_fold == 4 and loaded.mel.config.frequency_scale == "log"
    assert torch.equal(loaded.encode(waves), z)
    with pytest.raises(ValueError, match="accepted: mel, log"):
        AudioDiffuser.toyworld(latent="cqt")


def test_a_unet_with_a_projection_class_embedding_also_gets_the_pooled_context():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**dict(TOYWORLD_UNET, class_embed_type="projection", projection_class_embeddings_input_dim=64))
    d = AudioDiffuser.toyworld()
    d = AudioDiffuser(d.vae, unet, mel=d.mel).eval()
    z, t = torch.randn(1, 4, 13, 8), torch.tensor([300])
    a, b = torch.randn(1, 1, 64), torch.randn(1, 1, 64)
    with torch.no_grad():
        out = d.denoise(z, t, a)
        unet.class_embedding.linear_1.weight.zero_()  # cut the time-embedding path: the output changes
        assert out.shape == z.shape and not torch.allclose(d.denoise(z, t, a), out)
        assert not torch.allclose(d.denoise(z, t, b), d.denoise(z, t, a))  # cross-attention still reads it


def test_frequency_position_feeds_the_unet_each_rows_place_on_the_frequency_axis(tmp_path):
    torch.manual_seed(0)
    d = AudioModality().init_diffuser(frequency_position=True).eval()
    assert d.frequency_position and d.unet.config.in_channels == 5 and d.latent_shape == (4, 13, 8)
    z, t, ctx = torch.randn(2, 4, 13, 8), torch.tensor([5, 900]), torch.randn(2, 1, 64)
    grid = d._frequency_grid(z)
    assert grid.shape == (2, 1, 13, 8) and torch.equal(grid[1, 0, 7], torch.linspace(-1, 1, 8))
    with torch.no_grad():
        out = d.denoise(z, t, ctx)
        assert out.shape == z.shape
        d.unet.conv_in.weight[:, 4].zero_()  # cut the position channel: the output changes
        assert not torch.allclose(d.denoise(z, t, ctx), out)
    d.save_pretrained(tmp_path / "fp")
    loaded = AudioDiffuser.from_pretrained(tmp_path / "fp")
    assert loaded.frequency_position
    with torch.no_grad():
        assert torch.allclose(loaded.denoise(z, t, ctx), d.denoise(z, t, ctx), atol=1e-6)
    assert not AudioModality().init_diffuser().frequency_position
    with pytest.raises(ValueError, match="accepted in_channels 4, or 5"):
        AudioDiffuser(d.vae, UNet2DConditionModel(**dict(TOYWORLD_UNET, in_channels=6)))


def test_a_vae_that_changes_its_channel_count_is_refused():
    vae = AutoencoderKL(in_channels=2, out_channels=1, block_out_channels=[8], norm_num_groups=4, latent_channels=4)
    with pytest.raises(ValueError, match="give back the channels it takes"):
        AudioDiffuser(vae, UNet2DConditionModel(**TOYWORLD_UNET))


def test_vae_loss_trains_vae_and_vocoder_but_not_the_denoiser(toy):
    toy.zero_grad(set_to_none=True)
    losses = toy.vae_loss(torch.from_numpy(np.stack([sine(329.63), sine(392.0)])), generator=torch.Generator().manual_seed(0))
    assert set(losses) == {"loss", "rec", "kl", "voc"} and all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert toy.vae.encoder.conv_in.weight.grad is not None and toy.vocoder.conv_pre.weight.grad is not None
    assert all(p.grad is None for p in toy.unet.parameters())
    toy.zero_grad(set_to_none=True)


def test_encoder_outputs_normalised_tokens_in_the_shared_space():
    torch.manual_seed(0)
    encoder = AudioEncoder().eval()
    out = encoder.encode([torch.from_numpy(sine(261.63)), torch.from_numpy(sine(523.25))])
    assert out.tokens.shape == (2, 1, 64) and out.pooled.shape == (2, 64)
    assert torch.allclose(out.pooled.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.equal(out.tokens[:, 0], out.pooled)
    assert not torch.allclose(out.pooled[0], out.pooled[1])  # different pitches, different codes
    assert encoder.mel.config.harmonics == [0.5, 1.0, 2.0, 3.0, 4.0]  # the ToyWorld front end: a harmonic stack
    assert encoder.clap.config.patch_embed_input_channels == 5


def test_encoder_front_end_and_clap_channels_must_agree():
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection

    from codi_audio.encoder import TOYWORLD_CLAP_CONFIG

    one = ClapAudioModelWithProjection(ClapAudioConfig(**{**TOYWORLD_CLAP_CONFIG, "patch_embed_input_channels": 1}))
    legacy = AudioEncoder(one)  # a one-channel tower alone gets AudioLDM's log-mel
    assert legacy.mel.config.frequency_scale == "mel" and legacy.mel.config.harmonics is None
    assert legacy.encode([torch.from_numpy(sine(330.0))]).pooled.shape == (1, 64)
    three = AudioEncoder(mel=MelSpectrogram(frequency_scale="log", f_min=75.0, harmonics=[0.5, 1.0, 2.0]))
    assert three.clap.config.patch_embed_input_channels == 3
    with pytest.raises(ValueError, match="input channel"):
        AudioEncoder(one, MelSpectrogram(frequency_scale="log", f_min=75.0, harmonics=[1.0, 2.0]))


def test_zero_initialised_joint_attention_leaves_the_unet_unchanged():
    torch.manual_seed(0)
    base = UNet2DConditionModel(**TOYWORLD_UNET)
    reference = UNet2DConditionModel.from_config(base.config)
    reference.load_state_dict({k: v for k, v in base.state_dict().items() if ".processor." not in k})
    diffuser = AudioDiffuser(AutoencoderKL(**_tiny_vae(4, (8, 8, 8, 8))), base)
    z, t, context = torch.randn(2, 4, 13, 8), torch.tensor([3, 700]), torch.randn(2, 1, 64)
    with torch.no_grad():
        expected = reference(z, t, encoder_hidden_states=context).sample
        assert torch.allclose(diffuser.denoise(z, t, context, torch.randn(2, 4, 64)), expected, atol=1e-5)
        assert torch.allclose(diffuser.denoise(z, t, context), expected, atol=1e-5)
        for layer in diffuser.joint.values():  # once trained, the environment does change the output
            torch.nn.init.normal_(layer.to_out_env.weight)
        assert not torch.allclose(diffuser.denoise(z, t, context, torch.randn(2, 4, 64)), expected, atol=1e-3)


# -- weights folders ------------------------------------------------------------------------------
def test_own_save_and_from_pretrained_round_trip_identically(tmp_path, modality):
    torch.manual_seed(0)
    diffuser = AudioDiffuser.toyworld().eval()
    for layer in diffuser.joint.values():  # make the joint weights non-trivial so the check can fail
        torch.nn.init.normal_(layer.to_out_env.weight, std=0.1)
    encoder = AudioEncoder().eval()
    diffuser.save_pretrained(tmp_path)
    encoder.save_pretrained(tmp_path / "encoder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder", "env_encoder", "joint", "mel_inverter", "unet", "vae", "vocoder"]
    assert not any(".processor." in k for k in _safetensors_keys(tmp_path / "unet"))  # base weights only
    assert modality.weights_found(tmp_path) == list(modality.components)

    loaded = modality.load_diffuser(tmp_path).eval()
    loaded_encoder = modality.load_encoder(tmp_path).eval()
    waves = torch.from_numpy(np.stack([sine(440.0), sine(300.0, amp=0.2)]))
    z, t = torch.randn(2, 4, 13, 8), torch.tensor([5, 900])
    context, env = torch.randn(2, 1, 64), torch.randn(2, 4, 64)
    with torch.no_grad():
        assert torch.equal(loaded.encode(waves), diffuser.encode(waves))
        assert torch.equal(loaded.denoise(z, t, context, env), diffuser.denoise(z, t, context, env))
        assert torch.equal(loaded.environment(z, t), diffuser.environment(z, t))
        assert torch.equal(loaded.decode(z[:1])[0], diffuser.decode(z[:1])[0])
        assert torch.equal(loaded.decode(z[:1], vocoder="griffinlim")[0], diffuser.decode(z[:1], vocoder="griffinlim")[0])
        assert torch.equal(loaded_encoder(waves).pooled, encoder(waves).pooled)
        direct = modality.load_encoder(tmp_path / "encoder").eval()  # an encoder folder itself
        assert torch.equal(direct(waves).pooled, encoder(waves).pooled)
    assert loaded.mel.config.shift == -4.5 and loaded.mel.config.scale == 3.0


def test_audioldm_layout_folder_loads_and_matches_the_original_objects(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderKL(**_tiny_vae(8, (8, 16, 16)), scaling_factor=0.9).eval()  # 4x, like AudioLDM
    unet = UNet2DConditionModel(  # AudioLDM: condition as class labels, attn2 = self-attention
        sample_size=(25, 16), in_channels=8, out_channels=8, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=(16, 32), attention_head_dim=4, norm_num_groups=8,
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=32, class_embeddings_concat=True,
    ).eval()
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=64, sampling_rate=16000, upsample_initial_channel=16, upsample_rates=[5, 4, 4, 2],
        upsample_kernel_sizes=[10, 8, 8, 4], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=False,
    )).eval()
    for name, part in (("vae", vae), ("unet", unet), ("vocoder", vocoder)):
        part.save_pretrained(tmp_path / name)
    loaded = AudioDiffuser.from_pretrained(tmp_path)
    assert loaded.latent_shape == (8, 25, 16) and loaded.conditioning == "class_labels" and loaded.joint_available
    assert loaded.mel.config.shift == 0.0 and loaded.mel.config.scale == 1.0  # AudioLDM's raw log-mel

    waves = torch.from_numpy(np.stack([sine(440.0), sine(220.0)]))
    z, t, context = torch.randn(2, 8, 25, 16), torch.tensor([1, 999]), torch.randn(2, 1, 32)
    with torch.no_grad():
        mel_image = MelSpectrogram().log_mel(waves)[:, None]
        assert torch.equal(loaded.encode(waves), vae.encode(mel_image).latent_dist.mode() * 0.9)
        expected = unet(z, t, encoder_hidden_states=None, class_labels=context[:, 0]).sample
        assert torch.equal(loaded.denoise(z, t, context), expected)
        assert torch.allclose(loaded.denoise(z, t, context, torch.randn(2, 4, 64)), expected, atol=1e-5)
        mel = vae.decode(z / 0.9).sample[:, 0]  # AudioLDMPipeline.decode_latents + mel_spectrogram_to_waveform
        decoded = loaded.decode(z)
        assert torch.equal(torch.stack(decoded), vocoder(mel).clamp(-1, 1)[:, :16000])
    with pytest.raises(ValueError, match="takes 32 .*class_labels"):
        loaded.denoise(z, t, torch.randn(2, 1, 64))


def test_unet_without_cross_attention_loads_without_joint_attention(tmp_path, caplog):
    torch.manual_seed(0)
    AutoencoderKL(**_tiny_vae(4, (8, 8, 8, 8))).save_pretrained(tmp_path / "vae")
    UNet2DConditionModel(
        sample_size=(13, 8), in_channels=4, out_channels=4, block_out_channels=(8, 8), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        mid_block_type=None, norm_num_groups=8, class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=64,
    ).save_pretrained(tmp_path / "unet")
    loaded = AudioDiffuser.from_pretrained(tmp_path)
    assert not loaded.joint_available and loaded.vocoder is None
    assert "joint attention cannot attach" in caplog.text and "Griffin-Lim" in caplog.text
    z, t, context = torch.randn(1, 4, 13, 8), torch.tensor([7]), torch.randn(1, 1, 64)
    with torch.no_grad():
        assert loaded.denoise(z, t, context).shape == z.shape
        with pytest.raises(ValueError, match="joint attention is unavailable"):
            loaded.denoise(z, t, context, torch.randn(1, 4, 64))
        assert loaded.decode(z)[0].shape == (16000,)  # Griffin-Lim fallback


def test_missing_folder_parts_are_reported(tmp_path, modality):
    with pytest.raises(WeightsNotFoundError, match="vae/config.json"):
        AudioDiffuser.from_pretrained(tmp_path)
    with pytest.raises(WeightsNotFoundError, match="audio encoder"):
        AudioEncoder.from_pretrained(tmp_path)


def _tiny_vae(latent_channels: int, blocks: tuple[int, ...]) -> dict:
    return dict(
        in_channels=1, out_channels=1, latent_channels=latent_channels, block_out_channels=blocks,
        down_block_types=["DownEncoderBlock2D"] * len(blocks), up_block_types=["UpDecoderBlock2D"] * len(blocks),
        layers_per_block=1, norm_num_groups=8,
    )


def _safetensors_keys(folder) -> list[str]:
    from safetensors import safe_open

    keys: list[str] = []
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), "pt") as fh:
            keys.extend(fh.keys())
    return keys
