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
from codi_sdk.sampling import joint_sample, predicted_original


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


def _run_two_streams(composer, mode, other_latent_seed, **options):
    d = {m: composer.diffuser(m) for m in ("image", "audio")}
    g = torch.Generator().manual_seed(0)
    z_img = torch.randn((1, *d["image"].latent_shape), generator=g)
    z_aud = torch.randn((1, *d["audio"].latent_shape), generator=torch.Generator().manual_seed(other_latent_seed))
    ctx = torch.cat([composer.unconditional_context(1), composer.encode_inputs({"text": "a red circle"})])
    schedulers = {m: composer._scheduler("ddim", d[m].scheduler_config, 3) for m in d}
    with torch.no_grad():
        out = joint_sample(d, {"image": z_img, "audio": z_aud}, {m: ctx for m in d}, schedulers, 2.0, mode, **options)
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


@pytest.mark.parametrize("environment", ["denoised", "noisy"])
@pytest.mark.parametrize("guide_environment", [True, False])
def test_every_environment_option_carries_the_other_stream(composer, environment, guide_environment):
    opts = dict(environment=environment, guide_environment=guide_environment)
    a = _run_two_streams(composer, "cross", other_latent_seed=1, **opts)
    b = _run_two_streams(composer, "cross", other_latent_seed=2, **opts)
    assert not torch.allclose(a, b)


def test_environment_options_change_the_result(composer):
    base = _run_two_streams(composer, "cross", 1)
    assert not torch.allclose(base, _run_two_streams(composer, "cross", 1, environment="noisy"))
    assert not torch.allclose(base, _run_two_streams(composer, "cross", 1, guide_environment=False))


class _SpyDiffuser:
    """A stand-in diffuser that records what each denoiser call received."""

    latent_shape = (2,)

    def __init__(self, log):
        self.log = log

    def environment(self, z, t):
        self.log.append(("env", z.clone(), int(t)))
        return z[:, None, :]

    def denoise(self, z, t, context, env):
        self.log.append(("denoise", z.shape[0], None if env is None else env.shape[0]))
        return torch.zeros_like(z)


def _spy_sample(z: torch.Tensor, guidance: float, **options):
    """Three DDIM steps of two spy streams from ``z``; returns stream a's log and scheduler."""
    from diffusers import DDIMScheduler

    logs = {"a": [], "b": []}
    ds = {m: _SpyDiffuser(logs[m]) for m in logs}
    scheds = {m: DDIMScheduler(num_train_timesteps=100) for m in ds}
    for s in scheds.values():
        s.set_timesteps(3)
    joint_sample(ds, {m: z.clone() for m in ds}, {m: torch.zeros(2, 1, 4) for m in ds}, scheds, guidance, "cross", **options)
    return logs["a"], scheds["a"]


@pytest.mark.parametrize("guide, calls", [(True, [("denoise", 1, None), ("denoise", 1, 1)]), (False, [("denoise", 2, 2)])])
def test_guided_environment_leaves_the_unconditional_branch_without_it(guide, calls):
    log, _ = _spy_sample(torch.ones(1, 2), 3.0, guide_environment=guide)
    denoise_calls = [c for c in log if c[0] == "denoise"]
    assert denoise_calls == calls * 3


def test_environment_guidance_adds_a_prompt_only_branch():
    log, _ = _spy_sample(torch.ones(1, 2), 3.0, environment_guidance=6.0)
    denoise_calls = [c for c in log if c[0] == "denoise"]
    # one batched call for ε(∅) and ε(c) without the environment, one for ε(c, env)
    assert denoise_calls == [("denoise", 2, None), ("denoise", 1, 1)] * 3


def test_environment_guidance_equal_to_the_guidance_is_the_default_wiring(composer):
    base = _run_two_streams(composer, "cross", 1)  # guidance 2.0, environment guided with it
    torch.testing.assert_close(_run_two_streams(composer, "cross", 1, environment_guidance=2.0), base)
    stronger = _run_two_streams(composer, "cross", 1, environment_guidance=8.0)
    assert not torch.allclose(stronger, base)
    # ...and it scales only the pull towards the other stream: without joint attention it does nothing
    torch.testing.assert_close(_run_two_streams(composer, None, 1, environment_guidance=8.0), _run_two_streams(composer, None, 1))


def test_environment_guidance_end_limits_the_third_branch_to_the_first_steps(composer):
    log, _ = _spy_sample(torch.ones(1, 2), 3.0, environment_guidance=6.0, environment_guidance_end=0.34)
    denoise_calls = [c for c in log if c[0] == "denoise"]
    # 3 steps: round(0.34 * 3) = 1 step with the prompt-only branch, then the two-pass guided wiring
    assert denoise_calls == [("denoise", 2, None), ("denoise", 1, 1)] + [("denoise", 1, None), ("denoise", 1, 1)] * 2
    base = _run_two_streams(composer, "cross", 1)
    torch.testing.assert_close(_run_two_streams(composer, "cross", 1, environment_guidance=8.0, environment_guidance_end=0.0), base)
    with pytest.raises(ValueError, match="environment_guidance_end=1.5"):
        _spy_sample(torch.ones(1, 2), 3.0, environment_guidance=6.0, environment_guidance_end=1.5)


def test_environment_guidance_is_ignored_when_the_environment_is_not_guided():
    log, _ = _spy_sample(torch.ones(1, 2), 3.0, environment_guidance=6.0, guide_environment=False)
    assert [c for c in log if c[0] == "denoise"] == [("denoise", 2, 2)] * 3


def test_denoised_environment_encodes_the_previous_steps_clean_prediction():
    z = torch.full((1, 2), 2.0)
    log, sched = _spy_sample(z, 1.0)
    envs = [c for c in log if c[0] == "env"]
    t0 = int(sched.timesteps[0])
    # step 1 has no prediction yet: the noisy latent at t; later steps: x̂_0 = z_t/√ᾱ_t (ε = 0) at t = 0
    assert envs[0][2] == t0 and torch.equal(envs[0][1], z)
    a = sched.alphas_cumprod[t0]
    torch.testing.assert_close(envs[1][1], z / a.sqrt())
    assert [e[2] for e in envs[1:]] == [0, 0]


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("euler", [False, True])
def test_predicted_original_inverts_the_forward_process(kind, euler):
    from diffusers import DDIMScheduler, EulerDiscreteScheduler

    cls = EulerDiscreteScheduler if euler else DDIMScheduler
    sched = cls(num_train_timesteps=1000, prediction_type=kind)
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    t = int(sched.timesteps[3])
    a = sched.alphas_cumprod[t]
    z = a.sqrt() * x0 + (1 - a).sqrt() * eps
    out = eps if kind == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * x0
    sample = z / a.sqrt() if euler else z  # Euler-like schedulers keep z_t·√(σ²+1) = z_t/√ᾱ_t
    torch.testing.assert_close(predicted_original(sched, out, t, sample), x0, atol=1e-4, rtol=1e-4)


def test_predicted_original_names_an_unsupported_prediction_type():
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=10)
    sched.register_to_config(prediction_type="flow")
    with pytest.raises(ValueError, match="prediction_type='flow'; accepted: epsilon, v_prediction, sample"):
        predicted_original(sched, torch.zeros(1), 0, torch.zeros(1))


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
        (dict(inputs={"text": "a"}, outputs=["image"], environment="clean"), "environment='clean'; accepted: denoised, noisy"),
        (dict(inputs={"text": "a"}, outputs=["image"], guide_environment="yes"), "guide_environment="),
        (dict(inputs={"text": "a"}, outputs=["image"], environment_guidance=-1.0), "environment_guidance=-1.0; accepted"),
        (dict(inputs={"text": "a"}, outputs=["image"], environment_guidance=float("inf")), "environment_guidance=inf"),
        (dict(inputs={"text": "a"}, outputs=["image"], environment_guidance=True), "environment_guidance=True"),
        (dict(inputs={"text": "a"}, outputs=["image"], environment_guidance_end=-0.1), "environment_guidance_end=-0.1; accepted"),
    ],
)
def test_bad_arguments_fail_before_sampling_with_clear_errors(composer, kwargs, match):
    called = []
    with pytest.raises((CodiError, InvalidInputError, UnknownModalityError), match=match):
        composer(kwargs.pop("inputs"), kwargs.pop("outputs"), progress=False, callback=lambda *a: called.append(1), **kwargs)
    assert called == []


def test_eval_records_the_sampling_options_next_to_its_figures(composer, tmp_path):
    import json

    from codi_sdk.eval import evaluate, parse_tasks, write_results
    from codi_sdk.eval.compose_generators import ComposeGenerator

    gen = ComposeGenerator(composer, steps=2, guidance=3.0, environment_guidance=5.0, environment_guidance_end=0.5)
    results = evaluate(gen, parse_tasks("text->image+audio"), n=1, seed=0)
    paths = write_results(results, tmp_path)
    recorded = json.loads(paths["json"].read_text())["options"]
    assert recorded == {"steps": 2, "guidance": 3.0, "joint": "cross", "environment": "denoised", "guide_environment": True,
                        "environment_guidance": 5.0, "environment_guidance_end": 0.5}
    assert "`environment_guidance=5.0`" in paths["markdown"].read_text()
