"""The hand-written codi-official modules run, at toy size, the way the official model does."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from codi_sdk.official.connectors import (
    OfficialEnvironmentEncoder0D,
    OfficialEnvironmentEncoder2D,
    OfficialJointAttention,
    joint_environment,
)
from codi_sdk.official.unet import unet2d_forward

image = pytest.importorskip("codi_image.official")
audio = pytest.importorskip("codi_audio.official")
text = pytest.importorskip("codi_text.official")

CH = (32, 64)


def tiny_unet(in_channels=4):
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=in_channels, layers_per_block=1, block_out_channels=CH,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0,
    ).eval()


def tiny_joint():
    torch.manual_seed(1)
    return OfficialJointAttention(block_out_channels=list(CH), with_connector=[True, False], layers_per_block=1, num_heads=2, env_dim=24).eval()


@torch.no_grad()
def test_walker_matches_diffusers_forward_without_extras():
    unet = tiny_unet()
    x, ctx = torch.randn(2, 4, 8, 8), torch.randn(2, 1, 16)
    t = torch.tensor([10, 500])
    torch.testing.assert_close(unet2d_forward(unet, x, t, ctx), unet(x, t, ctx).sample, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_joint_attention_acts_only_with_an_environment():
    unet, joint = tiny_unet(), tiny_joint()
    x, ctx, env = torch.randn(2, 4, 8, 8), torch.randn(2, 1, 16), torch.randn(2, 1, 24)
    plain = unet2d_forward(unet, x, 3, ctx)
    torch.testing.assert_close(unet2d_forward(unet, x, 3, ctx, joint=joint, env=None), plain)
    assert not torch.allclose(unet2d_forward(unet, x, 3, ctx, joint=joint, env=env), plain)
    assert set(joint.down) == {"0"} and set(joint.up) == {"1"}  # level 0 only: down block 0, up block 1


def test_joint_environment_modes():
    envs = [torch.full((1, 1, 3), float(i)) for i in range(3)]
    assert joint_environment(envs[:1], 0) is None
    assert torch.equal(joint_environment(envs, 1, "self"), envs[1])
    cross = joint_environment(envs, 1, "cross")
    assert cross.shape == (1, 2, 3) and cross[0, :, 0].tolist() == [0.0, 2.0]
    with pytest.raises(ValueError, match="cross"):
        joint_environment(envs, 0, "both")


def _zero_temporal_outputs(module):
    for name, p in module.named_parameters():
        if name.endswith(("temporal_attn.to_out.weight", "ff.proj_out.1.weight", "frameshiftblock.out_layers.2.weight", "frameshiftblock.out_layers.2.bias")):
            torch.nn.init.zeros_(p)


@torch.no_grad()
def test_video_unet_runs_frames_and_skips_temporal_layers_for_images():
    unet = tiny_unet()
    temporal = image.CoDiVideoTemporalLayers(block_out_channels=list(CH), layers_per_block=1, heads=2, dim_head_divisor=4).eval()
    model = image.CoDiVideoUNet(unet, temporal, tiny_joint())
    video, ctx, env = torch.randn(1, 4, 3, 8, 8), torch.randn(1, 1, 16), torch.randn(1, 1, 24)
    out = model(video, 7, ctx, env)
    assert out.shape == video.shape
    # frames interact through the temporal layers ...
    changed = video.clone()
    changed[:, :, 0] += 1
    assert not torch.allclose(model(changed, 7, ctx, env)[:, :, 2], out[:, :, 2])
    # ... and with their outputs zeroed each frame is the image model's output
    _zero_temporal_outputs(temporal)
    per_frame = torch.stack([model(video[:, :, f], 7, ctx, env) for f in range(3)], dim=2)
    torch.testing.assert_close(model(video, 7, ctx, env), per_frame, rtol=1e-4, atol=1e-5)


def test_frame_shift_moves_channel_groups_by_their_index():
    x = torch.arange(4.0).view(1, 1, 4, 1, 1).repeat(1, 8, 1, 1, 1)  # frame index in every channel
    y = image._frame_shift(x)
    assert y[0, 0, :, 0, 0].tolist() == [0, 1, 2, 3]
    assert y[0, 1, :, 0, 0].tolist() == [0, 0, 1, 2]
    assert y[0, 7, :, 0, 0].tolist() == [0, 0, 0, 0]


@torch.no_grad()
def test_environment_encoders_give_unit_tokens():
    torch.manual_seed(0)
    env2d = OfficialEnvironmentEncoder2D(in_channels=4, model_channels=64, channel_mult=[1, 2], layers_per_level=[1, 1], out_channels=24, temb_channels=16)
    tok = env2d(torch.randn(2, 4, 8, 8), torch.randn(2, 16))
    assert tok.shape == (2, 1, 24)
    torch.testing.assert_close(tok.norm(dim=-1), torch.ones(2, 1))
    vid = image.CoDiVideoEnvironmentEncoder(in_channels=4, model_channels=64, channel_mult=[1, 2], layers_per_level=[1, 1], out_channels=24, temb_channels=16)
    assert vid(torch.randn(2, 4, 3, 8, 8), torch.randn(2, 16)).shape == (2, 1, 24)
    env0d = OfficialEnvironmentEncoder0D(in_channels=12, model_channels=64, channel_mult=[1, 2], second_dim=[4, 4], layers_per_level=[1, 1], out_channels=24, temb_channels=16)
    assert env0d(torch.randn(2, 12), torch.randn(2, 16)).shape == (2, 1, 24)


@torch.no_grad()
def test_text_unet_denoises_a_latent_vector_with_joint_attention():
    torch.manual_seed(0)
    unet = text.CoDiTextUNet(in_channels=12, model_channels=32, out_channels=12, channel_mult=[1, 2], second_dim=[4, 4], layers_per_block=1, with_attn=[True, False], num_heads=2, context_dim=16).eval()
    joint = OfficialJointAttention(block_out_channels=[32, 64], with_connector=[True, False], layers_per_block=1, num_heads=2, env_dim=24).eval()
    z, ctx, env = torch.randn(3, 12), torch.randn(3, 1, 16), torch.randn(3, 1, 24)
    out = unet(z, torch.tensor([1, 2, 3]), ctx)
    assert out.shape == (3, 12)
    torch.testing.assert_close(unet(z, torch.tensor([1, 2, 3]), ctx, env=None, joint=joint), out)
    assert not torch.allclose(unet(z, torch.tensor([1, 2, 3]), ctx, env=env, joint=joint), out)


@torch.no_grad()
def test_clip_video_with_identity_temporal_layers_equals_the_image_embedding():
    from transformers import CLIPVisionConfig

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, projection_dim=16, num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=14)
    enc = image.CoDiCLIPVisionEncoder(cfg).eval()
    for block in enc.temporal:
        torch.nn.init.normal_(block.temporal_attn.to_out.weight)
    frame = torch.randn(2, 3, 28, 28)
    video = frame[:, None].repeat(1, 3, 1, 1, 1)
    assert enc.embed(video).shape == (2, 16)
    assert not torch.allclose(enc.embed(video), enc.embed(frame), atol=1e-4)
    for block in enc.temporal:
        torch.nn.init.zeros_(block.temporal_attn.to_out.weight)
        torch.nn.init.zeros_(block.ff.proj_out[1].weight)
    torch.testing.assert_close(enc.embed(video), enc.embed(frame), rtol=1e-4, atol=1e-5)


def test_clip_pixels_shape_and_normalisation():
    x = torch.zeros(2, 3, 64, 96)
    px = image.clip_pixels(x)
    assert px.shape == (2, 3, 224, 224)
    torch.testing.assert_close(px[0, :, 0, 0], torch.tensor([(0.5 - m) / s for m, s in zip(image.CLIP_MEAN, image.CLIP_STD)]))


@torch.no_grad()
def test_audioldm_mel_basis_is_a_hann_stft():
    mel = audio.AudioLDMMel()
    wave = torch.randn(1, 16000).clamp(-1, 1)
    x = torch.nn.functional.pad(wave[:, None], (512, 512), mode="reflect")
    spec = torch.nn.functional.conv1d(x, mel.forward_basis, stride=160)
    ref = torch.stft(wave, 1024, 160, window=torch.hann_window(1024), center=True, pad_mode="reflect", return_complex=True)
    torch.testing.assert_close(torch.sqrt(spec[:, :513] ** 2 + spec[:, 513:] ** 2), ref.abs(), rtol=1e-3, atol=1e-3)
    assert mel(wave, num_frames=100).shape == (1, 1, 100, 64)


@torch.no_grad()
def test_optimus_decoder_reads_the_latent_as_memory_and_embedding():
    from transformers import GPT2Config

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=20, n_positions=32, n_embd=16, n_layer=2, n_head=2, latent_size=8, bos_token_id=17, eos_token_id=18, pad_token_id=19)
    dec = text.OptimusGPT2Decoder(cfg).eval()
    assert dec.lm_head.weight is dec.transformer.wte.weight
    ids = torch.tensor([[17, 3, 4]])
    z1, z2 = torch.randn(1, 8), torch.randn(1, 8)
    logits = dec.latent_logits(ids, z1)
    assert logits.shape == (1, 3, 20)
    assert not torch.allclose(logits, dec.latent_logits(ids, z2))
    out = dec.generate_from_latent(torch.randn(2, 8), max_length=6, greedy=True)
    assert all(seq[0] == 17 and seq[-1] == 18 and len(seq) <= 6 for seq in out)


def test_clap_upsampling_is_band_limited():
    t16 = torch.arange(1600) / 16000
    t48 = torch.arange(4800) / 48000
    up = audio._resample_up(torch.sin(2 * torch.pi * 1000 * t16)[None], 3)[0]
    torch.testing.assert_close(up[300:-300], torch.sin(2 * torch.pi * 1000 * t48)[300:-300], rtol=0, atol=2e-2)


@torch.no_grad()
def test_clap_encoder_embeds_16khz_audio():
    from transformers import ClapAudioConfig

    torch.manual_seed(0)
    cfg = ClapAudioConfig(patch_embeds_hidden_size=32, hidden_size=64, depths=[1, 1], num_attention_heads=[1, 2], projection_dim=16, num_classes=5)
    enc = audio.CoDiCLAPAudioEncoder(cfg).eval()
    emb = enc.embed(0.3 * torch.randn(2, 16000).clamp(-1, 1))
    assert emb.shape == (2, 16)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
