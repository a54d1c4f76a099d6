"""Tests of the image plugin: component shapes, real-layout folders, round trips, joint attention, conversion."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

from codi_image.diffuser import ImageDiffuser, latent_tokens
from codi_image.encoder import ImageEncoder, clip_preprocess
from codi_image.modality import ImageModality
from codi_sdk.errors import InvalidInputError, WeightsNotFoundError
from codi_sdk.outputs import ImageOutput


@pytest.fixture(scope="module")
def modality() -> ImageModality:
    return ImageModality()


@pytest.fixture(scope="module")
def toy_diffuser(modality) -> ImageDiffuser:
    torch.manual_seed(0)
    return modality.init_diffuser().eval()


@pytest.fixture(scope="module")
def toy_encoder(modality) -> ImageEncoder:
    torch.manual_seed(0)
    return modality.init_encoder().eval()


def _images(b: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _perturb(module: torch.nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


# -- shapes ------------------------------------------------------------------------------------------
@torch.no_grad()
def test_toyworld_diffuser_component_shapes(toy_diffuser):
    d = toy_diffuser
    assert d.latent_shape == (4, 8, 8) and d.env_dim == 64 and d.image_size == 32
    z = d.encode(_images())
    assert z.shape == (2, 4, 8, 8)
    assert torch.equal(z, d.vae.encode(_images()).latent_dist.mean * d.vae.config.scaling_factor)
    decoded = d.decode(z)
    assert len(decoded) == 2 and decoded[0].shape == (3, 32, 32)
    assert all(float(x.abs().max()) <= 1.0 for x in decoded)
    assert torch.equal(d.latent_tokens(z)[:, 9], z[:, :, 1, 1])  # token order (h w), channels last
    env = d.environment(z, torch.tensor([10, 500]))
    assert env.shape == (2, 4, 64)
    eps = d.denoise(z, torch.tensor([10, 500]), torch.randn(2, 1, 64), env)
    assert eps.shape == z.shape
    assert d.denoise(z, torch.tensor(3), torch.randn(2, 1, 64)).shape == z.shape  # scalar t, no env
    assert len(d.joint) == 4  # outer down (1), mid (1), outer up (layers_per_block + 1 = 2)


@torch.no_grad()
def test_calibrating_the_latent_scale_gives_unit_std_latents(modality):
    torch.manual_seed(0)
    d = modality.init_diffuser()
    images = _images(4)
    factor = d.calibrate_scaling_factor(images)
    assert d.vae.config.scaling_factor == factor == d.latent_scale
    assert abs(float(d.encode(images).std()) - 1.0) < 1e-4


def test_shipped_weights_folder_is_the_default(modality):
    from pathlib import Path

    import codi_image

    expected = Path(codi_image.__file__).parent / "weights" / "toyworld"
    assert modality.default_weights() == (expected if expected.is_dir() else None)


def test_vae_loss_has_reconstruction_and_kl_and_backpropagates(toy_diffuser):
    losses = toy_diffuser.vae_loss(_images())
    assert set(losses) == {"loss", "rec", "kl"}
    assert float(losses["kl"]) > 0 and float(losses["rec"]) > 0
    losses["loss"].backward()
    grad = toy_diffuser.vae.encoder.conv_in.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    toy_diffuser.zero_grad(set_to_none=True)


@torch.no_grad()
def test_toyworld_encoder_gives_one_normalised_token_of_64(toy_encoder):
    out = toy_encoder(_images(3))
    assert out.tokens.shape == (3, 1, 64) and out.pooled.shape == (3, 64)
    assert torch.allclose(out.pooled.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.equal(out.tokens[:, 0], out.pooled)


def test_large_latents_are_pooled_to_fit_the_environment_encoder():
    z = torch.randn(1, 4, 64, 64)
    tokens = latent_tokens(z, max_tokens=256)
    assert tokens.shape == (1, 256, 4)
    assert torch.allclose(tokens[0, 0], z[0, :, :4, :4].mean(dim=(1, 2)), atol=1e-6)
    assert torch.equal(latent_tokens(z[..., :8, :8], max_tokens=256), z[..., :8, :8].flatten(2).transpose(1, 2))


def test_clip_preprocess_resizes_and_normalises():
    x = torch.zeros(1, 3, 48, 64)  # grey 0.5 everywhere
    px = clip_preprocess(x, 16)
    assert px.shape == (1, 3, 16, 16)
    assert torch.allclose(px[0, 0], torch.full((16, 16), (0.5 - 0.48145466) / 0.26862954), atol=1e-5)


# -- real-layout folders -----------------------------------------------------------------------------
def _tiny_sd_parts():
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=32, norm_num_groups=8, layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 8, 16, 16],
    )
    unet = UNet2DConditionModel(
        sample_size=4, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=[16, 32],
        down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
        cross_attention_dim=24, attention_head_dim=2, norm_num_groups=8,
    )
    return vae.eval(), unet.eval()


@torch.no_grad()
def test_sd15_layout_folder_loads_with_identical_outputs(tmp_path, modality, caplog):
    vae, unet = _tiny_sd_parts()
    vae.save_pretrained(tmp_path / "vae")
    unet.save_pretrained(tmp_path / "unet")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with caplog.at_level(logging.WARNING, logger="codi_image.diffuser"):
        d = modality.load_diffuser(tmp_path)
    assert "untrained" in caplog.text
    assert d.latent_shape == (4, 4, 4)  # (4, size/8, size/8)
    assert d.env_dim == 24  # the UNet's cross_attention_dim
    z = torch.randn(2, 4, 4, 4)
    assert torch.equal(d.vae.decode(z).sample, vae.decode(z).sample)
    scaled = z * vae.config.scaling_factor
    assert torch.allclose(torch.stack(d.decode(scaled)), vae.decode(z).sample.clamp(-1, 1), atol=1e-5)
    t, ctx = torch.tensor([1, 700]), torch.randn(2, 3, 24)
    expected = unet(z, t, encoder_hidden_states=ctx).sample
    assert torch.equal(d.denoise(z, t, ctx), expected)
    env = d.environment(z, t)
    assert env.shape == (2, 4, 24)
    assert torch.allclose(d.denoise(z, t, ctx, env), expected, atol=1e-6)  # zero-initialised joint attention


def test_folder_without_vae_is_refused_with_what_is_expected(tmp_path, modality):
    _, unet = _tiny_sd_parts()
    unet.save_pretrained(tmp_path / "unet")
    with pytest.raises(WeightsNotFoundError, match="no vae/config.json"):
        modality.load_diffuser(tmp_path)


@torch.no_grad()
def test_clip_vision_folder_loads_with_identical_outputs(tmp_path, modality):
    torch.manual_seed(0)
    clip = CLIPVisionModelWithProjection(
        CLIPVisionConfig(image_size=16, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, projection_dim=16)
    ).eval()
    clip.save_pretrained(tmp_path / "clip")
    enc = modality.load_encoder(tmp_path / "clip")
    images = _images(2, size=32)
    expected = clip(pixel_values=clip_preprocess(images, 16)).image_embeds
    out = enc(images)
    assert torch.equal(out.pooled, torch.nn.functional.normalize(expected, dim=-1))
    assert out.tokens.shape == (2, 1, 16)


def test_clip_folder_without_projection_is_refused(tmp_path, modality):
    from transformers import CLIPVisionModel

    config = CLIPVisionConfig(image_size=16, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2)
    CLIPVisionModel(config).save_pretrained(tmp_path)
    with pytest.raises(WeightsNotFoundError, match="visual_projection"):
        modality.load_encoder(tmp_path)


@torch.no_grad()
def test_full_clip_model_folder_loads_its_vision_half(tmp_path, modality):
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"vocab_size": 50, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 8},
        vision_config={"image_size": 16, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 1, "num_attention_heads": 2},
        projection_dim=16,
    )
    clip = CLIPModel(config).eval()
    clip.save_pretrained(tmp_path)  # layout of openai/clip-vit-large-patch14
    enc = modality.load_encoder(tmp_path)
    images = _images(2, size=16)
    pixels = clip_preprocess(images, 16)
    expected = clip.visual_projection(clip.vision_model(pixel_values=pixels).pooler_output)
    assert torch.allclose(enc(images).pooled, torch.nn.functional.normalize(expected, dim=-1), atol=1e-6)


# -- our own folders ---------------------------------------------------------------------------------
@torch.no_grad()
def test_save_and_load_round_trip_gives_identical_outputs(tmp_path, modality):
    torch.manual_seed(0)
    d = modality.init_diffuser().eval()
    _perturb(d.joint)  # non-zero joint attention, so that its weights matter
    enc = modality.init_encoder().eval()
    d.save_pretrained(tmp_path)
    enc.save_pretrained(tmp_path / "encoder")
    from safetensors.torch import load_file

    unet_keys = load_file(str(tmp_path / "unet" / "diffusion_pytorch_model.safetensors"))
    assert not any("env" in k for k in unet_keys)  # base weights only: a plain diffusers UNet folder
    assert sorted(modality.weights_found(tmp_path)) == sorted(["vae", "unet", "env_encoder", "joint", "encoder"])

    d2, enc2 = modality.load_diffuser(tmp_path), modality.load_encoder(tmp_path)
    images, t, ctx = _images(), torch.tensor([5, 900]), torch.randn(2, 1, 64)
    z = d.encode(images)
    assert torch.equal(d2.encode(images), z)
    assert torch.equal(torch.stack(d2.decode(z)), torch.stack(d.decode(z)))
    env = d.environment(z, t)
    assert torch.equal(d2.environment(z, t), env)
    assert torch.equal(d2.denoise(z, t, ctx, env), d.denoise(z, t, ctx, env))
    assert torch.equal(enc2(images).pooled, enc(images).pooled)


@torch.no_grad()
def test_zero_initialised_joint_attention_leaves_the_denoiser_unchanged_until_trained(modality):
    torch.manual_seed(0)
    d = modality.init_diffuser().eval()
    z, t, ctx, env = torch.randn(2, 4, 8, 8), torch.tensor([100, 200]), torch.randn(2, 1, 64), torch.randn(2, 4, 64)
    base = d.denoise(z, t, ctx)
    assert torch.equal(d.denoise(z, t, ctx, env), base)
    for proc in d.joint.values():
        torch.nn.init.normal_(proc.to_out_env.weight, std=0.1)
    assert not torch.allclose(d.denoise(z, t, ctx, env), base, atol=1e-4)
    assert torch.equal(d.denoise(z, t, ctx), base)  # env=None still skips joint attention


# -- conversion --------------------------------------------------------------------------------------
def test_rgba_256_png_is_composited_on_black_and_resized(tmp_path, modality):
    rgba = np.zeros((256, 256, 4), np.uint8)
    rgba[:, :128] = (255, 0, 0, 255)  # opaque red left half
    rgba[:, 128:] = (0, 255, 0, 0)  # fully transparent green right half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "in.png")
    x = modality.convert(str(tmp_path / "in.png"))
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[:, :, :12], torch.tensor([1.0, -1.0, -1.0])[:, None, None].expand(3, 32, 12), atol=1e-3)
    assert torch.allclose(x[:, :, 20:], torch.full((3, 32, 12), -1.0), atol=1e-3)  # transparent -> black


def test_grayscale_becomes_rgb(modality):
    gray = Image.fromarray(np.full((40, 50), 255, np.uint8), "L")
    x = modality.convert(gray)
    assert x.shape == (3, 32, 32)
    assert torch.allclose(x, torch.ones(3, 32, 32), atol=1e-4)
    arr = modality.convert(np.zeros((32, 32), np.uint8))
    assert torch.equal(arr, -torch.ones(3, 32, 32))


def test_array_layouts_and_canonical_samples_convert(modality):
    hwc = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    from_hwc = modality.convert(hwc)
    assert torch.allclose(modality.convert(np.ascontiguousarray(hwc.transpose(2, 0, 1))), from_hwc)
    assert torch.allclose(from_hwc[:, 3, 4], torch.tensor(hwc[3, 4], dtype=torch.float32) / 127.5 - 1, atol=1e-6)
    canonical = _images(1)[0]
    assert torch.equal(modality.convert(canonical), canonical)  # idempotent on canonical samples
    assert torch.allclose(modality.convert(canonical.numpy().transpose(1, 2, 0)), canonical)


@pytest.mark.parametrize(
    "value, message",
    [
        (np.zeros((8, 32, 32), np.float32), "video"),
        (np.full((32, 32, 3), np.nan, np.float32), "NaN"),
        ("", "empty string"),
        ("a red circle", "not an existing image file"),
        (np.zeros((0, 32, 3), np.uint8), "empty"),
        (torch.zeros(2, 3, 32, 32), "batch"),
        (np.full((32, 32, 3), 2.0, np.float32), r"\[-1, 1\]"),
        ([1, 2, 3], "cannot convert a list"),
    ],
)
def test_unconvertible_values_are_refused_with_what_is_accepted(modality, value, message):
    with pytest.raises(InvalidInputError, match=message) as info:
        modality.convert(value)
    assert "accepted:" in str(info.value)


def test_save_and_load_files_round_trip(tmp_path, modality):
    sample = modality.convert(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    for name in ("x.png", "x.npy"):
        path = modality.save(sample, tmp_path / name)
        assert torch.allclose(modality.load(path), sample, atol=1e-6)
    out = modality.to_output(sample)
    assert isinstance(out, ImageOutput) and out.array.dtype == np.uint8 and out.array.shape == (32, 32, 3)
    with pytest.raises(InvalidInputError):
        modality.save(sample, tmp_path / "x.gif")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(InvalidInputError, match="cannot decode"):
        modality.load(tmp_path / "bad.png")


def test_plugin_is_registered_under_image():
    from codi_sdk.registry import Registry

    reg = Registry.load()
    assert isinstance(reg.get("image"), ImageModality)
