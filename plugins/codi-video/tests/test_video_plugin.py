"""Tests of the video plugin: latent shift, inflation (identity start), joint attention, shapes,
weights round trips, conversion and refusals. Tiny ToyWorld models only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from codi_image.diffuser import ImageDiffuser
from codi_image.encoder import ImageEncoder
from PIL import Image

from codi_sdk.errors import InvalidInputError, WeightsNotFoundError
from codi_sdk.outputs import VideoOutput
from codi_video.diffuser import VideoDiffuser
from codi_video.encoder import VideoEncoder
from codi_video.latent_shift import LatentShift, latent_shift
from codi_video.modality import VideoModality, resample_indices


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread on a shared machine; restore the setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def image_diffuser() -> ImageDiffuser:
    torch.manual_seed(0)
    image = ImageDiffuser.toyworld().eval()
    # Make the image joint attention non-trivial, so that copying it into the video is observable.
    for proc in image.joint.values():
        torch.nn.init.normal_(proc.to_out_env.weight, std=0.1)
    return image


@pytest.fixture(scope="module")
def video_diffuser(image_diffuser) -> VideoDiffuser:
    return VideoDiffuser.from_image_diffuser(image_diffuser).eval()


@pytest.fixture(scope="module")
def video_with_options(image_diffuser) -> VideoDiffuser:
    """The opt-in temporal options: context layouts, space-time attention, correlated noise."""
    return VideoDiffuser.from_image_diffuser(image_diffuser, layout=True, spacetime=True, noise_correlation=0.5).eval()


def _randomise_temporal(diffuser: VideoDiffuser) -> None:
    torch.manual_seed(1)
    for p in diffuser.unet.temporal.parameters():
        p.data.normal_(0.0, 0.5)


# -- latent shift -----------------------------------------------------------------------------------
def test_latent_shift_moves_chunk_i_forward_by_i_frames_with_zero_fill():
    b, c, t = 2, 16, 8  # 8 chunks of 2 channels
    x = torch.randn(b, c, t, 3, 3)
    y = latent_shift(x)
    for i in range(8):
        chunk = slice(2 * i, 2 * i + 2)
        assert torch.equal(y[:, chunk, :i], torch.zeros_like(y[:, chunk, :i]))
        assert torch.equal(y[:, chunk, i:], x[:, chunk, : t - i])
    # known values: frame f holds the number f + 1, so the zero fill is distinguishable
    frames = (torch.arange(8.0) + 1).view(1, 1, 8, 1, 1).expand(1, 8, 8, 1, 1)
    expected = torch.tensor([[f - i + 1 if f >= i else 0 for f in range(8)] for i in range(8)], dtype=torch.float32)
    assert torch.equal(latent_shift(frames)[0, :, :, 0, 0], expected)


def test_latent_shift_on_frame_batch_equals_the_5d_form():
    x = torch.randn(2, 8, 12, 4, 4)  # [B, T, C, H, W]
    flat = latent_shift(x.flatten(0, 1), num_frames=8)
    five = latent_shift(x.transpose(1, 2)).transpose(1, 2)
    assert torch.equal(flat.unflatten(0, (2, 8)), five)
    with pytest.raises(ValueError, match="num_frames"):
        latent_shift(x.flatten(0, 1))


def test_latent_shift_block_is_identity_at_gate_zero_and_the_shift_at_gate_one():
    block = LatentShift(16)
    h = torch.randn(16, 16, 2, 2)
    assert torch.equal(block(h, 8), h)
    block.gate.data.fill_(1.0)
    assert torch.equal(block(h, 8), latent_shift(h, 8))


# -- inflation ----------------------------------------------------------------------------------------
def _image_output(image: ImageDiffuser, z, t, ctx, env=None):
    t_frames = t.repeat_interleave(z.shape[1])
    env_frames = None if env is None else env.repeat_interleave(z.shape[1], 0)
    return image.denoise(z.flatten(0, 1), t_frames, ctx.repeat_interleave(z.shape[1], 0), env_frames).unflatten(0, z.shape[:2])


@torch.no_grad()
def test_inflated_denoiser_gives_the_image_denoisers_output_on_every_frame(image_diffuser, video_diffuser):
    torch.manual_seed(2)
    z = torch.randn(2, *video_diffuser.latent_shape)
    t, ctx, env = torch.tensor([5, 700]), torch.randn(2, 1, 64), torch.randn(2, 4, 64)
    assert torch.equal(video_diffuser.denoise(z, t, ctx), _image_output(image_diffuser, z, t, ctx))
    # with joint attention (weights copied from the image diffuser) too
    assert torch.equal(video_diffuser.denoise(z, t, ctx, env), _image_output(image_diffuser, z, t, ctx, env))


@torch.no_grad()
def test_inflation_from_an_image_weights_folder_keeps_the_image_weights(tmp_path, image_diffuser):
    image_diffuser.save_pretrained(tmp_path / "image")
    video = VideoDiffuser.from_image_pretrained(tmp_path / "image")
    base = {k: v for k, v in image_diffuser.unet.state_dict().items() if ".processor." not in k}
    inner = video.unet.unet.state_dict()
    assert all(torch.equal(inner[k], v) for k, v in base.items())
    z, t, ctx = torch.randn(1, 8, 4, 8, 8), torch.tensor([300]), torch.randn(1, 1, 64)
    assert torch.equal(video.denoise(z, t, ctx), _image_output(image_diffuser, z, t, ctx))
    with pytest.raises(WeightsNotFoundError, match="from_image_pretrained"):
        VideoDiffuser.from_pretrained(tmp_path / "image")


@torch.no_grad()
def test_warm_start_from_a_trained_image_diffuser_copies_vae_unet_and_joint(image_diffuser):
    import copy

    image = copy.deepcopy(image_diffuser)
    image.set_latent_scale(0.37)
    video = VideoDiffuser.toyworld().eval()
    assert video.warm_start({}) == set()
    assert video.warm_start({"image": image}) == {"vae"}
    assert video.latent_scale == pytest.approx(0.37)
    assert _state_equal(video.vae, image.vae)
    z, t, ctx, env = torch.randn(2, 8, 4, 8, 8), torch.tensor([7, 70]), torch.randn(2, 1, 64), torch.randn(2, 4, 64)
    assert torch.equal(video.denoise(z, t, ctx, env), _image_output(image, z, t, ctx, env))


@torch.no_grad()
def test_temporal_layers_mix_frames_only_after_training(video_diffuser):
    """Identity start: frame 0's output ignores frame 5; with non-zero temporal weights it does not."""
    import copy

    torch.manual_seed(3)
    z = torch.randn(1, 8, 4, 8, 8)
    z2 = z.clone()
    z2[:, 5] += 1.0
    t, ctx = torch.tensor([100]), torch.randn(1, 1, 64)
    assert torch.equal(video_diffuser.denoise(z, t, ctx)[:, 0], video_diffuser.denoise(z2, t, ctx)[:, 0])
    trained = copy.deepcopy(video_diffuser)
    _randomise_temporal(trained)
    assert not torch.allclose(trained.denoise(z, t, ctx)[:, 0], trained.denoise(z2, t, ctx)[:, 0])
    # the inner image UNet called directly stays the image denoiser (hooks pass through)
    frames = z.flatten(0, 1)
    direct = trained.unet.unet(frames, 100, encoder_hidden_states=ctx.expand(8, -1, -1)).sample
    assert torch.equal(direct, video_diffuser.unet.unet(frames, 100, encoder_hidden_states=ctx.expand(8, -1, -1)).sample)


@torch.no_grad()
@pytest.mark.parametrize("spacetime", [False, True])
def test_spacetime_attention_lets_a_pixel_see_other_pixels_of_other_frames(image_diffuser, spacetime):
    """Per-pixel temporal attention: a pixel's output ignores other pixels of other frames (up to
    what the spatial layers spread); space-time attention: it does not. Tested on the layer alone."""
    from codi_video.unet import TemporalAttention

    torch.manual_seed(7)
    layer = TemporalAttention(16, heads=2, max_frames=8, spacetime=spacetime)
    torch.nn.init.normal_(layer.attn.to_out[0].weight)
    h = torch.randn(8, 16, 4, 4)  # one video of 8 frames
    h2 = h.clone()
    h2[5, :, 3, 3] += torch.randn(16)  # frame 5, pixel (3, 3) (not a constant: the LayerNorm would remove it)
    same = torch.allclose(layer(h, 8)[0, :, 0, 0], layer(h2, 8)[0, :, 0, 0])  # frame 0, pixel (0, 0)
    assert same != spacetime
    assert torch.allclose(TemporalAttention(16, 2, 8, spacetime=spacetime)(h, 8), h)  # identity at start


def test_temporal_layers_receive_gradients(video_diffuser):
    import copy

    video = copy.deepcopy(video_diffuser).train()
    z, ctx = torch.randn(1, 8, 4, 8, 8), torch.randn(1, 1, 64)
    video.denoise(z, torch.tensor([10]), ctx).square().mean().backward()
    temporal = video.unet.temporal
    assert all(blk.gate.grad is not None and blk.gate.grad.abs().sum() > 0 for blk in temporal.shifts.values())
    assert all(a.attn.to_out[0].weight.grad.abs().sum() > 0 for a in temporal.attentions.values())
    assert all(a.layout is None and not a.spacetime for a in temporal.attentions.values())  # off by default


@torch.no_grad()
def test_temporal_options_start_as_the_identity_and_train(image_diffuser, video_with_options):
    import copy

    z, t, ctx, env = torch.randn(2, 8, 4, 8, 8), torch.tensor([5, 700]), torch.randn(2, 1, 64), torch.randn(2, 4, 64)
    assert torch.equal(video_with_options.denoise(z, t, ctx, env), _image_output(image_diffuser, z, t, ctx, env))
    video = copy.deepcopy(video_with_options).train()
    with torch.enable_grad():
        video.denoise(z, t, ctx).square().mean().backward()
    temporal = video.unet.temporal
    assert all(a.spacetime and a.layout.out[-1].weight.grad.abs().sum() > 0 for a in temporal.attentions.values())


@torch.no_grad()
def test_context_layout_depends_on_context_frame_and_position_and_starts_at_zero():
    from codi_video.unet import ContextLayout

    torch.manual_seed(6)
    layout = ContextLayout(channels=16, context_dim=64, hidden=32)
    ctx = torch.randn(2, 1, 64)
    assert torch.equal(layout(ctx, 8, 8, 4, 4), torch.zeros(16, 16, 4, 4))  # [B*T, C, H, W], zero at start
    torch.nn.init.normal_(layout.out[-1].weight)
    out = layout(ctx, 8, 8, 4, 4).unflatten(0, (2, 8))  # [B, T, C, H, W]
    assert not torch.allclose(out[0], out[1])  # another context
    assert not torch.allclose(out[0, 0], out[0, 7])  # another frame
    assert not torch.allclose(out[0, 0, :, 0, 0], out[0, 0, :, 3, 3])  # another pixel
    # a frame's bias does not depend on the clip length; several context tokens are averaged
    assert torch.allclose(layout(ctx, 4, 8, 4, 4).unflatten(0, (2, 4)), out[:, :4], atol=1e-6)
    assert torch.allclose(layout(ctx.expand(2, 3, 64), 8, 8, 4, 4), layout(ctx, 8, 8, 4, 4), atol=1e-6)


def test_video_noise_shares_part_of_its_variance_across_frames(tmp_path, video_with_options):
    video = video_with_options
    assert video.noise_correlation == 0.5
    n = video.sample_noise((512, 8, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    assert n.var().item() == pytest.approx(1.0, abs=0.02)
    corr = torch.corrcoef(torch.stack([n[:, 0].flatten(), n[:, 5].flatten()]))[0, 1].item()
    assert corr == pytest.approx(0.5, abs=0.03)
    again = video.sample_noise((512, 8, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    assert torch.equal(n, again)
    # saved with the temporal layers; ρ = 0 is plain torch.randn
    video.save_pretrained(tmp_path)
    assert VideoDiffuser.from_pretrained(tmp_path).noise_correlation == 0.5
    assert VideoDiffuser.toyworld().noise_correlation == 0.5  # the ToyWorld configuration
    iid = VideoDiffuser.from_image_diffuser(ImageDiffuser.toyworld())  # the option's default: i.i.d.
    assert iid.noise_correlation == 0.0
    assert torch.equal(iid.sample_noise((2, 8, 4, 8, 8), torch.Generator().manual_seed(3)), torch.randn((2, 8, 4, 8, 8), generator=torch.Generator().manual_seed(3)))
    from codi_video.unet import TemporalLayers

    with pytest.raises(ValueError, match="noise_correlation"):
        TemporalLayers(noise_correlation=1.0)


def test_layout_features_tell_the_first_frame_from_the_last():
    """Fourier features of period 2 on [-1, 1] would make frames 0 and 7 identical but for the raw
    coordinate (a trained layout then put the object in the same place in both)."""
    from codi_video.unet import _layout_features

    feats = _layout_features(8, 8, 1, 1, "cpu", torch.float32)  # one pixel, 8 frames
    fourier = feats[:, 3:]
    assert (fourier[0] - fourier[7]).abs().max() > 0.5
    # no two frames share their features
    dists = torch.cdist(fourier, fourier) + torch.eye(8) * 10
    assert dists.min() > 0.1


@torch.no_grad()
def test_the_prompt_moves_content_only_through_a_trained_layout(video_with_options):
    """Two contexts that cross-attention cannot tell apart (one token each: the same value at every
    pixel) still get different per-frame, per-pixel outputs once the layout is non-zero."""
    import copy

    video = copy.deepcopy(video_with_options)
    z, t = torch.randn(1, 8, 4, 8, 8), torch.tensor([500])
    ctx_a, ctx_b = torch.randn(1, 1, 64), torch.randn(1, 1, 64)
    base_a, base_b = video.denoise(z, t, ctx_a), video.denoise(z, t, ctx_b)
    for a in video.unet.temporal.attentions.values():
        torch.nn.init.normal_(a.layout.out[-1].weight, std=0.1)
    moved_a, moved_b = video.denoise(z, t, ctx_a), video.denoise(z, t, ctx_b)
    delta_a, delta_b = moved_a - base_a, moved_b - base_b
    assert delta_a.abs().max() > 1e-3 and not torch.allclose(delta_a, delta_b, atol=1e-4)


@torch.no_grad()
def test_temporal_layers_saved_without_layouts_still_load(tmp_path, image_diffuser):
    """Folders written before context layouts existed (no ``context_dim`` in temporal/config.json)
    load as they were: no layout, same outputs."""
    import json

    from codi_video.unet import TemporalLayers, VideoUNet

    video = VideoDiffuser.from_image_diffuser(image_diffuser).eval()
    video.unet = VideoUNet(video.unet.unet, TemporalLayers.for_unet(video.unet.unet, layout=False, spacetime=False))
    _randomise_temporal(video)
    video.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "unet" / "temporal" / "config.json").read_text())
    for option in ("context_dim", "layout_hidden", "spacetime", "noise_correlation"):  # as before these options
        config.pop(option)
    (tmp_path / "unet" / "temporal" / "config.json").write_text(json.dumps(config))
    loaded = VideoDiffuser.from_pretrained(tmp_path)
    assert all(a.layout is None and not a.spacetime for a in loaded.unet.temporal.attentions.values())
    z, t, ctx = torch.randn(1, 8, 4, 8, 8), torch.tensor([50]), torch.randn(1, 1, 64)
    assert torch.equal(video.denoise(z, t, ctx), loaded.denoise(z, t, ctx))


@torch.no_grad()
def test_zero_initialised_joint_attention_leaves_the_output_unchanged():
    torch.manual_seed(4)
    video = VideoDiffuser.toyworld().eval()
    _randomise_temporal(video)
    z, t, ctx, env = torch.randn(2, 8, 4, 8, 8), torch.tensor([1, 999]), torch.randn(2, 1, 64), torch.randn(2, 4, 64)
    without = video.denoise(z, t, ctx)
    assert torch.equal(video.denoise(z, t, ctx, env), without)
    next(iter(video.joint.values())).to_out_env.weight.data.normal_()
    assert not torch.allclose(video.denoise(z, t, ctx, env), without)


# -- shapes and weights ---------------------------------------------------------------------------------
@torch.no_grad()
def test_component_shapes(video_diffuser):
    videos = torch.rand(2, 8, 3, 32, 32) * 2 - 1
    z = video_diffuser.encode(videos)
    assert video_diffuser.latent_shape == (8, 4, 8, 8) and z.shape == (2, 8, 4, 8, 8)
    decoded = video_diffuser.decode(z)
    assert len(decoded) == 2 and decoded[0].shape == (8, 3, 32, 32) and decoded[0].abs().max() <= 1
    assert video_diffuser.latent_tokens(z).shape == (2, 128, 4)
    assert video_diffuser.environment(z, torch.tensor([3, 9])).shape == (2, 4, 64)
    losses = video_diffuser.vae_loss(videos)
    assert losses["loss"].ndim == 0 and torch.isfinite(losses["loss"])
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        video_diffuser.encode(videos[0])
    out = VideoEncoder.toyworld().encode([videos[0], videos[1]])
    assert out.tokens.shape == (2, 1, 64) and out.pooled.shape == (2, 64)
    assert torch.allclose(out.pooled.norm(dim=-1), torch.ones(2))


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@torch.no_grad()
def test_diffuser_save_and_from_pretrained_round_trip(tmp_path):
    torch.manual_seed(5)
    video = VideoDiffuser.toyworld().eval()
    _randomise_temporal(video)
    for proc in video.joint.values():
        proc.to_out_env.weight.data.normal_()
    video.save_pretrained(tmp_path)
    for part in ("vae", "unet", "unet/temporal", "env_encoder", "joint"):
        assert (tmp_path / part / "config.json").is_file()
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pt"))
    # unet/ is a plain diffusers UNet folder: no joint-attention weights in it
    from safetensors.torch import load_file

    assert not any(".processor." in k for k in load_file(tmp_path / "unet" / "diffusion_pytorch_model.safetensors"))
    loaded = VideoDiffuser.from_pretrained(tmp_path)
    assert _state_equal(video, loaded)
    z, t, ctx, env = torch.randn(1, 8, 4, 8, 8), torch.tensor([50]), torch.randn(1, 1, 64), torch.randn(1, 4, 64)
    # the weights are bit-equal (above); the outputs may differ in the last bits between CPUs, whose
    # kernels can pick another summation order for a freshly allocated module
    torch.testing.assert_close(video.denoise(z, t, ctx, env), loaded.denoise(z, t, ctx, env), rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_encoder_round_trip_motion_and_still_video(tmp_path):
    torch.manual_seed(6)
    encoder = VideoEncoder.toyworld().eval()
    videos = torch.rand(2, 8, 3, 32, 32) * 2 - 1
    # a new pooler is the mean of frame embeddings: a still video encodes like its image
    still = videos[:1, :1].expand(1, 8, 3, 32, 32)
    image_pooled = encoder.frames(videos[0, :1]).pooled
    assert torch.allclose(encoder(still).pooled, image_pooled, atol=1e-6)
    # once trained, order matters: reversed time gives another embedding (motion is visible)
    encoder.temporal.proj_out.weight.data.normal_()
    assert not torch.allclose(encoder(videos).pooled, encoder(videos.flip(1)).pooled)
    encoder.save_pretrained(tmp_path / "encoder")
    loaded = VideoEncoder.from_pretrained(tmp_path / "encoder")
    assert _state_equal(encoder, loaded)
    assert torch.equal(loaded(videos).pooled, encoder(videos).pooled)
    with pytest.raises(WeightsNotFoundError, match="from_image_pretrained"):
        ImageEncoder.toyworld().save_pretrained(tmp_path / "image_encoder")
        VideoEncoder.from_pretrained(tmp_path / "image_encoder")


@torch.no_grad()
def test_keypoints_read_where_the_object_is_and_old_encoders_load_without_them(tmp_path):
    from codi_video.encoder import TemporalPooler

    torch.manual_seed(7)
    encoder = VideoEncoder.toyworld().eval()
    pooler = encoder.temporal
    assert pooler.config.keypoints == 4 and pooler.config.patch_dim == encoder.frames.model.config.hidden_size
    # a score that peaks on one patch puts the keypoint at that patch's (x, y)
    patches = torch.zeros(1, 1, 64, pooler.config.patch_dim)
    patches[0, 0, 8 * 2 + 7, 0] = 100.0  # row 2, column 7 of the 8x8 grid
    pooler.keypoint_scores.weight.zero_()
    pooler.keypoint_scores.weight[0, 0] = 1.0
    xy = pooler.keypoint_coordinates(patches)[0, 0, 0]
    assert torch.allclose(xy, torch.tensor([1.0, -1.0 + 2 * 2 / 7]), atol=1e-4)
    # zero-initialised projection: until trained, the keypoints leave the embedding as it was
    pooler.proj_out.weight.normal_()  # a trained pooler: its transformer's output counts
    plain = VideoEncoder(encoder.frames, TemporalPooler(dim=64)).eval()
    plain.temporal.load_state_dict({k: v for k, v in pooler.state_dict().items() if "keypoint" not in k})
    videos = torch.rand(2, 8, 3, 32, 32) * 2 - 1
    assert torch.allclose(encoder(videos).pooled, plain(videos).pooled, atol=1e-6)
    # trained keypoints change the embedding; the folder round-trips; a folder without keypoints loads as before
    pooler.proj_keypoints.weight.normal_()
    assert not torch.allclose(encoder(videos).pooled, plain(videos).pooled)
    encoder.save_pretrained(tmp_path / "kp")
    assert torch.equal(VideoEncoder.from_pretrained(tmp_path / "kp")(videos).pooled, encoder(videos).pooled)
    plain.save_pretrained(tmp_path / "old")
    old = VideoEncoder.from_pretrained(tmp_path / "old")
    assert old.temporal.config.keypoints == 0 and torch.equal(old(videos).pooled, plain(videos).pooled)
    with pytest.raises(ValueError, match="patch_dim"):
        TemporalPooler(dim=64, keypoints=2)
    with pytest.raises(ValueError, match="patch tokens"):
        pooler(torch.randn(1, 8, 64))


# -- conversion and refusals --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def modality() -> VideoModality:
    return VideoModality()


def test_16_frame_rgba_video_is_resampled_to_8_rgb_frames(modality):
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (16, 64, 64, 4), dtype=np.uint8)
    video[..., 3] = 255
    video[:, :, :, :3] = np.arange(16, dtype=np.uint8)[:, None, None, None] * 10  # frame t has value 10 t
    x = modality.convert(video)
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32
    picked = resample_indices(16, 8)
    assert picked.tolist() == [0, 2, 4, 6, 9, 11, 13, 15]
    expected = torch.tensor(picked * 10 / 255.0 * 2 - 1, dtype=torch.float32)
    assert torch.allclose(x.mean(dim=(1, 2, 3)), expected, atol=1e-5)
    # alpha is composited on black
    video[..., 3] = 0
    assert torch.allclose(modality.convert(video), torch.full((8, 3, 32, 32), -1.0))


def test_grayscale_and_other_layouts_become_rgb(modality):
    gray = np.linspace(0, 255, 8 * 32 * 32).reshape(8, 32, 32).astype(np.uint8)
    x = modality.convert(gray)
    assert x.shape == (8, 3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    assert torch.equal(modality.convert(gray[..., None]), x)
    canonical = torch.rand(8, 3, 32, 32) * 2 - 1
    assert torch.allclose(modality.convert(canonical), canonical, atol=1e-6)
    frames = [Image.fromarray(f) for f in gray]
    assert torch.allclose(modality.convert(frames), x, atol=1e-6)


def test_gif_and_npy_round_trip(modality, tmp_path):
    rng = np.random.default_rng(1)
    video = torch.tensor(rng.integers(0, 256, (8, 32, 32, 3)) / 127.5 - 1, dtype=torch.float32).permute(0, 3, 1, 2)
    out = modality.to_output(video)
    assert isinstance(out, VideoOutput) and out.array.shape == (8, 32, 32, 3) and out.array.dtype == np.uint8 and out.fps == 4
    npy = modality.save(video, tmp_path / "clip.npy")
    assert torch.allclose(modality.load(npy), video, atol=1 / 127.5)
    solid = torch.zeros(8, 3, 32, 32)
    solid[:, 0] = torch.linspace(-1, 1, 8)[:, None, None]  # red ramps over time
    loaded = modality.load(modality.save(solid, tmp_path / "clip.gif"))
    assert loaded.shape == (8, 3, 32, 32)
    assert torch.allclose(loaded[:, 0, 0, 0], solid[:, 0, 0, 0], atol=0.05)
    assert not list(tmp_path.glob(".*"))  # atomic writes leave no temporary files


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros((32, 32, 3), np.uint8), "single image"),
        (torch.zeros(3, 32, 32), "single image"),
        (np.zeros((32, 32), np.uint8), "single grayscale image"),
        (np.zeros((1, 32, 32, 3), np.uint8), "single frame"),
        (np.full((8, 32, 32, 3), np.nan, np.float32), "NaN"),
        (torch.full((8, 3, 32, 32), float("nan")), "NaN"),
        (np.zeros((0, 32, 32, 3), np.uint8), "empty"),
        ([], "empty"),
        ("", "empty string"),
        (np.zeros((2, 8, 32, 32, 3), np.uint8), "one video at a time"),
        (np.zeros((8, 32, 32, 7), np.uint8), r"\(T, H, W, 1\|3\|4\)"),
        (np.full((8, 32, 32, 3), 2.0, np.float32), r"\[-1, 1\]"),
        (42, "cannot convert a int"),
    ],
)
def test_refusals_say_what_is_wrong_and_what_is_accepted(modality, value, message):
    with pytest.raises(InvalidInputError, match=message) as info:
        modality.convert(value)
    assert str(info.value).startswith("video: ") and "accepted:" in str(info.value)


def test_single_frame_gif_is_refused_as_an_image(modality, tmp_path):
    path = tmp_path / "still.gif"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)
    with pytest.raises(InvalidInputError, match="'image' modality"):
        modality.load(path)
    with pytest.raises(InvalidInputError, match="cannot read files of type '.txt'"):
        (tmp_path / "a.txt").write_text("x")
        modality.load(tmp_path / "a.txt")
