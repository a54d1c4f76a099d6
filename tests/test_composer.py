"""compose(): conditioning mixing, determinism, joint wiring, options and errors (tiny untrained models)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from codi_sdk.bridge import Bridge
from codi_sdk.composer import Composer
from codi_sdk.errors import CodiError, InvalidInputError, UnknownModalityError
from codi_sdk.registry import get_registry
from codi_sdk.sampling import joint_sample


def _perturb_joint(diffuser, seed=0):
    """Give the zero-initialised joint-attention output projections real weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in diffuser.joint.named_parameters():
            if "to_out_env" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


@pytest.fixture(scope="module")
def composer():
    torch.manual_seed(0)
    reg = get_registry()
    c = Composer(reg)
    for m in ("text", "image", "audio"):
        mod = reg.get(m)
        c.set_components(m, encoder=mod.init_encoder(), diffuser=mod.init_diffuser())
    for m in ("image", "audio"):
        _perturb_joint(c.diffuser(m), seed=len(m))
    return c


def test_weights_are_normalised_and_mixing_is_a_weighted_average(composer):
    a = composer.encoder("text").encode(["a red circle"]).tokens
    b = composer.encoder("text").encode(["something moving left"]).tokens
    mixed = composer.encode_inputs([("text", "a red circle"), ("text", "something moving left")], weights=[3, 1])
    torch.testing.assert_close(mixed, 0.75 * a + 0.25 * b)
    assert Bridge.normalize_weights([2, 2]) == [0.5, 0.5]


def test_inputs_of_different_modalities_mix_by_modality_weight(composer):
    img = np.zeros((32, 32, 3), np.uint8)
    img[8:20, 8:20] = (220, 40, 40)
    t = composer.encoder("text").encode(["a red square"]).tokens
    i = composer.encoder("image").encode([composer.registry.get("image").convert(img)]).tokens
    mixed = composer.encode_inputs({"text": "a red square", "image": img}, weights={"image": 0.25, "text": 0.75})
    torch.testing.assert_close(mixed, 0.75 * t + 0.25 * i)


def test_no_inputs_means_the_unconditional_context(composer):
    torch.testing.assert_close(composer.encode_inputs({}), composer.encoder("text").encode([""]).tokens)
    out = composer(None, ["image"], steps=2, seed=0, progress=False)
    assert out["image"][0].array.shape == (32, 32, 3)


def test_same_seed_gives_the_same_bytes_and_another_seed_differs(composer):
    kw = dict(steps=3, seed=7, progress=False)
    a = composer({"text": "a blue circle"}, ["image"], **kw)["image"][0].array
    b = composer({"text": "a blue circle"}, ["image"], **kw)["image"][0].array
    c = composer({"text": "a blue circle"}, ["image"], steps=3, seed=8, progress=False)["image"][0].array
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_num_samples_and_typed_outputs(composer, tmp_path):
    out = composer({"text": "a green triangle"}, ["image", "audio"], steps=2, seed=0, num_samples=2, progress=False)
    assert len(out["image"]) == 2 and len(out["audio"]) == 2
    assert out["audio"][0].waveform.shape == (16000,)
    written = out.save(tmp_path)
    assert sorted(p.split("/")[-1] for p in written) == ["audio_0.wav", "audio_1.wav", "image_0.png", "image_1.png"]


def _run_two_streams(composer, mode, other_latent_seed):
    d = {m: composer.diffuser(m) for m in ("image", "audio")}
    g = torch.Generator().manual_seed(0)
    z_img = torch.randn((1, *d["image"].latent_shape), generator=g)
    z_aud = torch.randn((1, *d["audio"].latent_shape), generator=torch.Generator().manual_seed(other_latent_seed))
    ctx = torch.cat([composer.unconditional_context(1), composer.encode_inputs({"text": "a red circle"})])
    schedulers = {m: composer._scheduler("ddim", d[m].scheduler_config, 3) for m in d}
    with torch.no_grad():
        out = joint_sample(d, {"image": z_img, "audio": z_aud}, {m: ctx for m in d}, schedulers, 2.0, mode)
    return out["image"]


def test_with_cross_joint_attention_a_stream_depends_on_the_other_streams_latent(composer):
    a = _run_two_streams(composer, "cross", other_latent_seed=1)
    b = _run_two_streams(composer, "cross", other_latent_seed=2)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("mode", ["self", None])
def test_with_self_wiring_or_no_joint_a_stream_ignores_the_other_stream(composer, mode):
    a = _run_two_streams(composer, mode, other_latent_seed=1)
    b = _run_two_streams(composer, mode, other_latent_seed=2)
    torch.testing.assert_close(a, b)


def test_one_output_ignores_joint_attention(composer):
    a = composer({"text": "a red circle"}, ["image"], steps=2, seed=1, joint="cross", progress=False)["image"][0].array
    b = composer({"text": "a red circle"}, ["image"], steps=2, seed=1, joint=False, progress=False)["image"][0].array
    assert a.tobytes() == b.tobytes()


def test_dpm_solver_is_selectable(composer):
    out = composer({"text": "a red circle"}, ["image"], steps=3, seed=0, scheduler="dpm++", progress=False)
    assert out["image"][0].array.dtype == np.uint8


def test_sampling_starts_from_the_diffusers_own_noise_prior(composer, monkeypatch):
    """compose() draws its start latents with ``Diffuser.sample_noise`` (video correlates frames)."""
    image = composer.diffuser("image")
    seen = []

    def record(shape, generator=None):
        seen.append(shape)
        return torch.zeros(shape)

    monkeypatch.setattr(image, "sample_noise", record)
    composer({"text": "a red circle"}, ["image"], steps=2, seed=0, progress=False)
    assert seen == [(1, *image.latent_shape)]
    monkeypatch.undo()
    default = image.sample_noise((2, 3), torch.Generator().manual_seed(5))
    assert torch.equal(default, torch.randn((2, 3), generator=torch.Generator().manual_seed(5)))


def test_callback_can_stop_the_loop(composer):
    seen = []

    def cb(i, t, latents):
        seen.append(i)
        return i < 1

    composer({"text": "a red circle"}, ["image"], steps=10, seed=0, callback=cb, progress=False)
    assert seen == [0, 1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(inputs={"smell": "roses"}, outputs=["image"]), "unknown or uninstalled modality 'smell'"),
        (dict(inputs={"text": "a"}, outputs=["smell"]), "unknown or uninstalled modality 'smell'"),
        (dict(inputs={"text": "a"}, outputs=[]), "no outputs requested"),
        (dict(inputs={"text": "a"}, outputs=["image"], steps=0), "steps=0"),
        (dict(inputs={"text": "a"}, outputs=["image"], weights={"text": -1}), "finite numbers ≥ 0"),
        (dict(inputs={"text": "a"}, outputs=["image"], weights={"text": float("nan")}), "finite numbers ≥ 0"),
        (dict(inputs={"audio": "/no/such/file.wav"}, outputs=["image"]), "file.wav"),
        (dict(inputs={"text": "a"}, outputs=["image"], scheduler="euler-magic"), "accepted: ddim, dpm\\+\\+"),
        (dict(inputs={"text": "a"}, outputs=["image"], joint="sideways"), "joint="),
    ],
)
def test_bad_arguments_fail_before_sampling_with_clear_errors(composer, kwargs, match):
    called = []
    with pytest.raises((CodiError, InvalidInputError, UnknownModalityError), match=match):
        composer(kwargs.pop("inputs"), kwargs.pop("outputs"), progress=False, callback=lambda *a: called.append(1), **kwargs)
    assert called == []
