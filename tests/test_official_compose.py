"""compose() runs a converted official CoDi folder: detection, schedule, joint wiring, determinism.

The converter only accepts the real official shapes, so the root is made in two steps: a small
synthetic official checkpoint (schedule buffers + AudioLDM's STFT front end) goes through
``codi convert-official`` (which writes the ``codi_official.json`` marker, the scheduler and
``audio/mel``); then tiny modules of the official classes are saved into the same folder layout
(``save_pretrained``), standing in for the 5.7 B-parameter weights.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from typer.testing import CliRunner

from codi_sdk.cli import app
from codi_sdk.composer import Composer
from codi_sdk.errors import CodiError, InvalidInputError, WeightsNotFoundError
from codi_sdk.official import layout
from codi_sdk.official.folder import MARKER, official_folder
from codi_sdk.official.profile import SCHEDULER_CONFIG
from codi_sdk.registry import get_registry

image_official = pytest.importorskip("codi_image.official")
audio_official = pytest.importorskip("codi_audio.official")
text_official = pytest.importorskip("codi_text.official")
pytest.importorskip("codi_video.official_diffuser")

CTX, ENV, TEXT_LATENT = 16, 24, 12  # tiny stand-ins for 768-d contexts, 1280-d environments, 768-d text latents
CH = [32, 64]


def _tiny_unet(in_channels: int, sample_size):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=in_channels, out_channels=in_channels, layers_per_block=1,
        block_out_channels=tuple(CH), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=CTX, attention_head_dim=2,
        norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0,
    )


def _tiny_joint():
    from codi_sdk.official.connectors import OfficialJointAttention

    return OfficialJointAttention(block_out_channels=CH, with_connector=[True, False], layers_per_block=1, num_heads=2, env_dim=ENV)


def _tiny_vae(channels: int, latent: int, scale: float):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=channels, out_channels=channels, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 32), layers_per_block=1,
        latent_channels=latent, sample_size=16, scaling_factor=scale,
    )


def _add_tiny_official_modules(root):
    """Tiny modules of the official classes, saved in the converted layout (``<root>/<m>/<part>``)."""
    from transformers import BertConfig, ClapAudioConfig, CLIPTextConfig, CLIPVisionConfig, GPT2Config, SpeechT5HifiGan, SpeechT5HifiGanConfig

    from codi_sdk.official.connectors import OfficialEnvironmentEncoder0D, OfficialEnvironmentEncoder2D
    from codi_text.tokenizer import build_toyworld_tokenizer

    torch.manual_seed(0)
    tok = build_toyworld_tokenizer()
    temb = 4 * CH[0]
    parts = {
        "image/unet": _tiny_unet(4, 8),
        "image/vae": _tiny_vae(3, 4, 0.18215),
        "image/env_encoder": image_official.CoDiVideoEnvironmentEncoder(
            in_channels=4, model_channels=64, channel_mult=[1, 2], layers_per_level=[1, 1], out_channels=ENV,
            temb_channels=temb, temporal_heads=2, temporal_dim_head_divisor=4,
        ),
        "image/joint": _tiny_joint(),
        "image/encoder": image_official.CoDiCLIPVisionEncoder(CLIPVisionConfig(
            hidden_size=32, intermediate_size=64, projection_dim=CTX, num_hidden_layers=1, num_attention_heads=2,
            image_size=28, patch_size=14,
        )),
        "video/temporal": image_official.CoDiVideoTemporalLayers(block_out_channels=CH, layers_per_block=1, heads=2, dim_head_divisor=4),
        "audio/unet": _tiny_unet(8, [16, 4]),
        "audio/vae": _tiny_vae(1, 8, 0.9228),
        "audio/vocoder": SpeechT5HifiGan(SpeechT5HifiGanConfig(
            model_in_dim=8, upsample_initial_channel=16, upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8],
            resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], normalize_before=False,
        )),
        "audio/encoder": audio_official.CoDiCLAPAudioEncoder(ClapAudioConfig(
            patch_embeds_hidden_size=32, hidden_size=64, depths=[1, 1], num_attention_heads=[1, 2], projection_dim=CTX, num_classes=5,
        )),
        "audio/env_encoder": OfficialEnvironmentEncoder2D(
            in_channels=8, model_channels=64, channel_mult=[1, 2], layers_per_level=[1, 1], out_channels=ENV, temb_channels=temb
        ),
        "audio/joint": _tiny_joint(),
        "text/unet": text_official.CoDiTextUNet(
            in_channels=TEXT_LATENT, model_channels=CH[0], out_channels=TEXT_LATENT, channel_mult=[1, 2], second_dim=[4, 4],
            layers_per_block=1, with_attn=[True, False], num_heads=2, context_dim=CTX,
        ),
        "text/env_encoder": OfficialEnvironmentEncoder0D(
            in_channels=TEXT_LATENT, model_channels=64, channel_mult=[1, 2], second_dim=[4, 4], layers_per_level=[1, 1],
            out_channels=ENV, temb_channels=temb,
        ),
        "text/joint": _tiny_joint(),
        "text/encoder": text_official.CoDiCLIPTextEncoder(CLIPTextConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, projection_dim=CTX, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=77, bos_token_id=tok.bos_token_id, pad_token_id=0, eos_token_id=2,  # legacy pooling, as CLIP ViT-L/14's config
        )),
        "text/vae/decoder": text_official.OptimusGPT2Decoder(GPT2Config(
            vocab_size=len(tok), n_positions=40, n_embd=16, n_layer=1, n_head=2, latent_size=TEXT_LATENT,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        )),
        "text/vae/encoder": text_official.OptimusBertEncoder(BertConfig(
            vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            latent_size=TEXT_LATENT,
        )),
    }
    for target, module in parts.items():
        module.eval().save_pretrained(str(root / target))
    for target in ("text/encoder", "text/vae/decoder", "text/vae/encoder"):
        tok.save_pretrained(str(root / target))
    for part in ("unet", "vae", "env_encoder", "joint", "encoder"):  # the converter links these image folders
        shutil.copytree(root / "image" / part, root / "video" / part)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("official")
    src, dst = base / "checkpoints", base / "codi-official"
    src.mkdir()
    gen = torch.Generator().manual_seed(0)
    state = {e.key: torch.rand(e.shape, generator=gen) for e in layout.entries("root")}
    state.update({e.key: torch.rand(e.shape, generator=gen) for e in layout.entries("audioldm") if "fn_STFT" in e.key})
    torch.save(state, src / "CoDi_encoders.pth")
    result = CliRunner().invoke(app, ["convert-official", "--from", str(src), "--to", str(dst)])
    assert result.exit_code == 0, result.output
    assert (dst / MARKER).is_file() and (dst / "audio" / "mel" / "config.json").is_file()
    _add_tiny_official_modules(dst)
    return dst


@pytest.fixture(scope="module")
def composer(root):
    return Composer(get_registry(), weights={m: root for m in ("text", "image", "audio", "video")})


def _image(composer, outputs=("image",), **kw):
    kw = {"steps": 2, "seed": 0, "progress": False, **kw}
    return composer({"text": "a red circle"}, list(outputs), **kw)


def test_a_converted_root_or_its_modality_folder_is_detected(root, tmp_path):
    assert official_folder(root, "image").root == root
    assert official_folder(root / "audio", "audio").root == root
    assert official_folder(root / "audio", "image") is None  # audio/ is no image folder
    assert official_folder(tmp_path, "image") is None
    (tmp_path / MARKER).write_text('{"profile": "toyworld"}')
    with pytest.raises(WeightsNotFoundError, match="codi-official"):
        official_folder(tmp_path, "image")


def test_each_modality_loads_its_official_classes_with_the_official_schedule_and_scales(composer):
    expected = {"image": ("OfficialImageDiffuser", 0.18215, (4, 8, 8)), "audio": ("OfficialAudioDiffuser", 0.9228, (8, 16, 4)),
                "text": ("OfficialTextDiffuser", 4.3108, (TEXT_LATENT,)), "video": ("OfficialVideoDiffuser", 0.18215, (4, 8, 8, 8))}
    for m, (cls, scale, shape) in expected.items():
        d = composer.diffuser(m)
        assert type(d).__name__ == cls and d.latent_scale == scale and d.latent_shape == shape
        assert d.scheduler_config == SCHEDULER_CONFIG and d.scheduler_config["timestep_spacing"] == "leading"
        assert type(composer.encoder(m)).__name__ == cls.replace("Diffuser", "Encoder")
    assert composer.diffuser("video").num_frames == 8


def test_text_to_image_is_deterministic_per_seed(composer):
    a = _image(composer)["image"][0].array
    assert a.shape == (16, 16, 3)
    assert a.tobytes() == _image(composer)["image"][0].array.tobytes()
    assert a.tobytes() != _image(composer, seed=1)["image"][0].array.tobytes()


def test_text_to_audio_keeps_the_generated_length(composer):
    out = composer({"text": "a dog barks"}, ["audio"], steps=2, seed=0, progress=False)["audio"][0]
    assert out.waveform.shape == (32 * 16,)  # 16 latent rows × 2 (VAE) = 32 mel frames × 16 (vocoder hop)
    assert out.sample_rate == 16000 and abs(out.waveform).max() <= 1.0


def test_joint_image_and_audio_run_with_both_wirings(composer):
    alone = _image(composer)["image"][0].array
    cross = _image(composer, ("image", "audio"), joint="cross")
    self_ = _image(composer, ("image", "audio"), joint="self")
    for out in (cross, self_):
        assert out["image"][0].array.shape == (16, 16, 3) and out["audio"][0].waveform.shape == (512,)
    # both wirings act (the joint layers change the image) ...
    assert cross["image"][0].array.tobytes() != alone.tobytes()
    assert self_["image"][0].array.tobytes() != alone.tobytes()
    # ... and are deterministic per seed
    again = _image(composer, ("image", "audio"), joint="cross")
    assert again["image"][0].array.tobytes() == cross["image"][0].array.tobytes()
    assert again["audio"][0].waveform.tobytes() == cross["audio"][0].waveform.tobytes()


def test_cross_wiring_reads_the_other_stream_and_self_wiring_does_not(composer):
    # the image latent is drawn first, so it starts from the same noise next to audio or text
    with_audio = {j: _image(composer, ("image", "audio"), joint=j)["image"][0].array for j in ("cross", "self")}
    with_text = {j: _image(composer, ("image", "text"), joint=j)["image"][0].array for j in ("cross", "self")}
    assert with_audio["cross"].tobytes() != with_text["cross"].tobytes()
    assert with_audio["self"].tobytes() == with_text["self"].tobytes()


def test_joint_video_and_text(composer):
    out = composer({"text": "a red circle"}, ["video", "text"], steps=2, seed=0, progress=False)
    assert out["video"][0].array.shape == (8, 16, 16, 3)
    text = out["text"][0].text
    assert isinstance(text, str) and "[BOS]" not in text and "[EOS]" not in text
    assert composer({"text": "a red circle"}, ["video", "text"], steps=2, seed=0, progress=False)["text"][0].text == text


def test_image_and_audio_prompts_and_text_latent_encoding(composer):
    img = torch.zeros(3, 32, 32)
    img[:, 8:20, 8:20] = 0.8
    out = composer({"image": img}, ["audio"], steps=2, seed=0, progress=False)
    assert out["audio"][0].waveform.shape == (512,)
    wave = 0.5 * torch.sin(torch.arange(16000) * 2 * torch.pi * 440 / 16000)
    out = composer([("audio", wave), ("text", "a beep")], ["image"], steps=2, seed=0, progress=False)
    assert out["image"][0].array.shape == (16, 16, 3)
    for m, sample in (("image", img), ("audio", wave)):
        emb = composer.encoder(m).encode([sample])
        assert emb.tokens.shape == (1, 1, CTX)
        torch.testing.assert_close(emb.pooled.norm(dim=-1), torch.ones(1))
    z = composer.diffuser("text").encode(["A Red Circle"])
    assert z.shape == (1, TEXT_LATENT)
    torch.testing.assert_close(z, composer.diffuser("text").encode(["a red circle"]))  # lower-cased as upstream


def test_a_toyworld_text_encoder_with_official_image_weights_is_a_clear_error(root):
    reg = get_registry()
    c = Composer(reg, weights={"image": root}).set_components("text", encoder=reg.get("text").init_encoder())
    with pytest.raises(InvalidInputError, match=f"takes {CTX}-d prompt contexts, got 64-d"):
        c({"text": "a red circle"}, ["image"], steps=1, seed=0, progress=False)


def test_missing_joint_folders_allow_single_but_not_joint_generation(root, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(root, partial)
    shutil.rmtree(partial / "image" / "joint")
    shutil.rmtree(partial / "text" / "encoder")
    c = Composer(get_registry(), weights={"text": partial, "image": partial, "audio": partial})
    with pytest.raises(WeightsNotFoundError, match="text/encoder"):
        c({"text": "a red circle"}, ["image"], steps=1, seed=0, progress=False)
    c.weights["text"] = root
    assert _image(c, steps=1)["image"][0].array.shape == (16, 16, 3)
    with pytest.raises(CodiError, match="env_encoder/ and joint/"):
        _image(c, ("image", "audio"), steps=1)


def test_a_missing_tokenizer_is_named(root, tmp_path):
    partial = tmp_path / "notok"
    shutil.copytree(root, partial)
    for f in (partial / "text" / "encoder").iterdir():
        if "token" in f.name or f.name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
            f.unlink()
    with pytest.raises(WeightsNotFoundError, match="CLIP tokenizer"):
        get_registry().get("text").load_encoder(partial)


def test_cli_generates_from_a_converted_folder(root, tmp_path):
    result = CliRunner().invoke(app, [
        "generate", "--weights-dir", f"text={root}", "--weights-dir", f"image={root / 'image'}",
        "-i", "text=a red circle", "-O", "image", "--steps", "2", "-o", str(tmp_path / "out"),
    ])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "image.png").is_file()


def test_cli_names_a_bad_environment_before_writing(root, tmp_path):
    result = CliRunner().invoke(app, [
        "generate", "--weights-dir", f"text={root}", "--weights-dir", f"image={root / 'image'}",
        "-i", "text=a red circle", "-O", "image", "--environment", "clean", "-o", str(tmp_path / "out"),
    ])
    assert result.exit_code != 0
    assert "environment='clean'; accepted: denoised, noisy" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--environment-guidance", "-1", "environment_guidance=-1.0; accepted: None or a finite number ≥ 0"),
    ("--environment-guidance-end", "1.5", "environment_guidance_end=1.5; accepted: a fraction of the steps in [0, 1]"),
])
def test_cli_names_a_bad_environment_guidance_before_writing(root, tmp_path, flag, value, message):
    result = CliRunner().invoke(app, [
        "generate", "--weights-dir", f"text={root}", "--weights-dir", f"image={root / 'image'}",
        "-i", "text=a red circle", "-O", "image", flag, value, "-o", str(tmp_path / "out"),
    ])
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_real_size_official_diffusers_have_the_profile_latent_shapes():
    from codi_audio.official_diffuser import OfficialAudioDiffuser
    from codi_image.official_diffuser import OfficialImageDiffuser
    from codi_sdk.official.profile import MODALITIES
    from codi_text.official_diffuser import OfficialTextDiffuser, OptimusVAE
    from codi_video.official_diffuser import OfficialVideoDiffuser

    build = {m: mod.build_official_component for m, mod in (("image", image_official), ("audio", audio_official), ("text", text_official))}
    with torch.device("meta"):
        unet, vae, joint = (build["image"](f"image/{p}") for p in ("unet", "vae", "joint"))
        diffusers = {
            "image": OfficialImageDiffuser(vae, unet, None, joint),
            "video": OfficialVideoDiffuser(vae, unet, build["image"]("video/temporal"), None, joint),
            "audio": OfficialAudioDiffuser(*(build["audio"](f"audio/{p}") for p in ("vae", "vocoder", "unet"))),
            "text": OfficialTextDiffuser(OptimusVAE(build["text"]("text/vae/decoder"), None), build["text"]("text/unet")),
        }
    for m, d in diffusers.items():
        assert d.latent_shape == tuple(MODALITIES[m]["latent_shape"]), m
        assert d.latent_scale == MODALITIES[m]["scale_factor"] and d.context_dim == 768
    assert diffusers["image"].env_dim == 1280
