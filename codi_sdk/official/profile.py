"""The ``codi-official`` profile as data: schedule, latent scales and shapes, component configs.

What ``compose`` needs to run the converted official weights (one dict per modality in
:data:`MODALITIES`), and the configuration of every component folder the converter writes
(:data:`COMPONENTS`). Values come from the official model config (``configs/model/*.yaml`` of
microsoft/i-Code ``i-Code-V3``) and its inference code; nothing here needs the weights.

Example:
    >>> from codi_sdk.official.profile import MODALITIES, SCHEDULER_CONFIG
    >>> MODALITIES["audio"]["scale_factor"], MODALITIES["audio"]["latent_shape"]
    (0.9228, (8, 256, 16))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import mapping as m

#: The official noise schedule in diffusers' terms: 1000 steps, betas linear in sqrt from 0.00085
#: to 0.012 (upstream calls it "linear"; diffusers "scaled_linear"), epsilon prediction. Upstream
#: DDIM uses timesteps ``range(0, 1000, 1000 // steps) + 1`` and ``alphas_cumprod[0]`` as the last
#: "previous" alpha, i.e. ``timestep_spacing="leading"``, ``steps_offset=1``, ``set_alpha_to_one=False``.
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}

#: Sampling defaults of the official inference code.
SAMPLING: dict[str, Any] = {
    "scheduler": "DDIMScheduler",
    "num_inference_steps": 50,
    "guidance_scale": 7.5,
    "eta": 0.0,
    "num_frames": 8,
    "image_size": 256,
}

#: Joint-attention wirings: ``"cross"`` (the paper: a stream attends to the *other* streams'
#: environment tokens) and ``"self"`` (the released inference code: each stream attends to its own
#: environment encoding, and only when two or more outputs are generated together).
JOINT_MODES: tuple[str, ...] = ("cross", "self")

#: Per modality: latent scale factor, latent shape (one sample, no batch axis), conditioning and
#: environment sizes, and the folders of a converted weights root it loads.
MODALITIES: dict[str, dict[str, Any]] = {
    "image": {
        "scale_factor": 0.18215,
        "latent_shape": (4, 32, 32),  # 256×256 RGB, VAE downsampling 8
        "sample": "RGB 256×256 in [-1, 1]",
        "context_dim": 768,
        "context_tokens": 1,
        "env_dim": 1280,
        "env_tokens": 1,
        "unconditional": "CLIP vision embedding of an all-zero image",
        "folders": ("vae", "unet", "env_encoder", "joint", "encoder"),
        "scheduler": SCHEDULER_CONFIG,
    },
    "video": {
        "scale_factor": 0.18215,
        "latent_shape": (4, 8, 32, 32),  # channels, frames, height, width
        "num_frames": 8,
        "frame_rate_index": 4,  # upstream temporal attention adds frame_rate_embeds[framerate - 1]
        "sample": "8 RGB frames 256×256 in [-1, 1]",
        "context_dim": 768,
        "context_tokens": 1,
        "env_dim": 1280,
        "env_tokens": 1,
        "unconditional": "CLIP vision embedding of an all-zero video",
        "folders": ("vae", "unet", "temporal", "env_encoder", "joint", "encoder"),
        "scheduler": SCHEDULER_CONFIG,
    },
    "audio": {
        "scale_factor": 0.9228,
        "latent_shape": (8, 256, 16),  # 10.24 s of 16 kHz audio: 1024 mel frames × 64 bins / 4
        "sample_rate": 16000,
        "seconds": 10.24,
        "sample": "mono 16 kHz waveform in [-1, 1]",
        "context_dim": 768,
        "context_tokens": 1,
        "env_dim": 1280,
        "env_tokens": 1,
        "unconditional": "CLAP audio embedding of silence",
        "decode_clip": 10.0,  # upstream clips |z| to 10 before decoding when max|z| > 100
        "folders": ("vae", "vocoder", "mel", "unet", "env_encoder", "joint", "encoder"),
        "scheduler": SCHEDULER_CONFIG,
    },
    "text": {
        "scale_factor": 4.3108,
        "latent_shape": (768,),  # Optimus latent
        "sample": "a string (lower-cased before the Optimus BERT encoder)",
        "context_dim": 768,
        "context_tokens": 1,
        "env_dim": 1280,
        "env_tokens": 1,
        "unconditional": 'CLIP text embedding of ""',
        "decode": {"max_length": 30, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "bos": "<BOS>", "eos": "<EOS>"},
        "folders": ("vae", "unet", "env_encoder", "joint", "encoder"),
        "scheduler": SCHEDULER_CONFIG,
    },
}

#: The resolved UNet arguments of the official config (``configs/model/openai_unet.yaml``).
OFFICIAL_UNET_ARGS: dict[str, dict[str, Any]] = {
    "unet_image": {
        "input_channels": 4, "model_channels": 320, "output_channels": 4,
        "num_noattn_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4], "with_attn": [True, True, True, False],
        "channel_mult_connector": [1, 2, 4], "num_noattn_blocks_connector": [1, 1, 1],
        "with_connector": [True, True, True, False], "connector_output_channel": 1280,
        "num_heads": 8, "context_dim": 768, "use_video_architecture": True,
    },
    "unet_audio": {
        "input_channels": 8, "model_channels": 192, "output_channels": 8,
        "num_noattn_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4], "with_attn": [True, True, True, False],
        "channel_mult_connector": [1, 2, 4], "num_noattn_blocks_connector": [1, 1, 1],
        "with_connector": [True, True, True, False], "connector_output_channel": 1280,
        "num_heads": 8, "context_dim": 768,
    },
    "unet_text": {
        "input_channels": 768, "model_channels": 320, "output_channels": 768,
        "num_noattn_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4], "second_dim": [4, 4, 4, 4],
        "with_attn": [True, True, True, False],
        "channel_mult_connector": [1, 2, 4], "num_noattn_blocks_connector": [1, 1, 1], "second_dim_connector": [4, 4, 4],
        "with_connector": [True, True, True, False], "connector_output_channel": 1280,
        "num_heads": 8, "context_dim": 768,
    },
}


@dataclass(frozen=True)
class ComponentSpec:
    """How one converted folder is written and read back.

    ``library``: ``"diffusers"`` (``ConfigMixin`` config, ``diffusion_pytorch_model.safetensors``),
    ``"transformers"`` (``PretrainedConfig`` of ``model_type``, ``model.safetensors``) or
    ``"codi"`` (a codi-sdk / plugin ``ModelMixin``, diffusers conventions).
    ``class_name``: the class that loads it, ``module:Class``.
    """

    library: str
    class_name: str
    config: dict[str, Any] = field(default_factory=dict)
    model_type: str | None = None  # transformers only
    #: keys that share storage with another key (written once; the loader re-ties them)
    tied: dict[str, str] = field(default_factory=dict)

    @property
    def weights_name(self) -> str:
        return "model.safetensors" if self.library == "transformers" else "diffusion_pytorch_model.safetensors"


def _unet2d_config(args: dict, sample_size) -> dict[str, Any]:
    ch = [args["model_channels"] * k for k in args["channel_mult"]]
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in args["with_attn"])
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(args["with_attn"]))
    return {
        "sample_size": sample_size,
        "in_channels": args["input_channels"],
        "out_channels": args["output_channels"],
        "down_block_types": down,
        "up_block_types": up,
        "block_out_channels": tuple(ch),
        "layers_per_block": args["num_noattn_blocks"][0],
        "cross_attention_dim": args["context_dim"],
        # diffusers' legacy name: with num_attention_heads unset this is the number of heads
        "attention_head_dim": args["num_heads"],
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "act_fn": "silu",
        "downsample_padding": 1,
        "mid_block_scale_factor": 1,
        "center_input_sample": False,
    }


def _joint_config(args: dict) -> dict[str, Any]:
    return {
        "block_out_channels": [args["model_channels"] * k for k in args["channel_mult"]],
        "with_connector": list(args["with_connector"]),
        "layers_per_block": args["num_noattn_blocks"][0],
        "num_heads": args["num_heads"],
        "env_dim": args["connector_output_channel"],
    }


def _env2d_config(args: dict, temporal: bool) -> dict[str, Any]:
    return {
        "in_channels": args["input_channels"],
        "model_channels": args["model_channels"],
        "channel_mult": list(args["channel_mult_connector"]),
        "layers_per_level": list(args["num_noattn_blocks_connector"]),
        "out_channels": args["connector_output_channel"],
        "temb_channels": 4 * args["model_channels"],
        **({"temporal_heads": 8, "temporal_dim_head_divisor": 4} if temporal else {}),
    }


def _vae_config(in_ch: int, blocks: tuple[int, ...], latent: int, scale: float, size) -> dict[str, Any]:
    n = len(blocks)
    return {
        "in_channels": in_ch,
        "out_channels": in_ch,
        "down_block_types": ("DownEncoderBlock2D",) * n,
        "up_block_types": ("UpDecoderBlock2D",) * n,
        "block_out_channels": blocks,
        "layers_per_block": 2,
        "act_fn": "silu",
        "latent_channels": latent,
        "norm_num_groups": 32,
        "sample_size": size,
        "scaling_factor": scale,
    }


_CLIP_TEXT = {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "projection_dim": 768,
    "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 77,
    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
    # eos_token_id=2 keeps transformers' legacy pooling (argmax token id = end of text), as upstream
    "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2,
}
_CLIP_VISION = {
    "hidden_size": 1024, "intermediate_size": 4096, "projection_dim": 768, "num_hidden_layers": 24,
    "num_attention_heads": 16, "num_channels": 3, "image_size": 224, "patch_size": 14,
    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
}

_UI, _UA, _UT = (OFFICIAL_UNET_ARGS[k] for k in ("unet_image", "unet_audio", "unet_text"))

#: Every folder the converter writes, keyed by ``<modality>/<component>``.
COMPONENTS: dict[str, ComponentSpec] = {
    m.IMAGE_UNET: ComponentSpec("diffusers", "diffusers:UNet2DConditionModel", _unet2d_config(_UI, 32)),
    m.IMAGE_VAE: ComponentSpec("diffusers", "diffusers:AutoencoderKL", _vae_config(3, (128, 256, 512, 512), 4, 0.18215, 256)),
    m.IMAGE_ENV: ComponentSpec("codi", "codi_image.official:CoDiVideoEnvironmentEncoder", _env2d_config(_UI, temporal=True)),
    m.IMAGE_JOINT: ComponentSpec("codi", "codi_sdk.official.connectors:OfficialJointAttention", _joint_config(_UI)),
    m.IMAGE_ENCODER: ComponentSpec(
        "transformers", "codi_image.official:CoDiCLIPVisionEncoder", {**_CLIP_VISION, "temporal_layers": True}, "clip_vision_model"
    ),
    m.VIDEO_TEMPORAL: ComponentSpec(
        "codi", "codi_image.official:CoDiVideoTemporalLayers",
        {
            "block_out_channels": [_UI["model_channels"] * k for k in _UI["channel_mult"]],
            "layers_per_block": _UI["num_noattn_blocks"][0],
            "heads": 8,
            "dim_head_divisor": 4,
            "max_frames": 30,
        },
    ),
    m.AUDIO_UNET: ComponentSpec("diffusers", "diffusers:UNet2DConditionModel", _unet2d_config(_UA, (256, 16))),
    m.AUDIO_VAE: ComponentSpec("diffusers", "diffusers:AutoencoderKL", _vae_config(1, (128, 256, 512), 8, 0.9228, 256)),
    m.AUDIO_VOCODER: ComponentSpec(
        "transformers", "transformers:SpeechT5HifiGan",
        {
            "model_in_dim": 64, "sampling_rate": 16000, "upsample_initial_channel": 1024,
            "upsample_rates": [5, 4, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 8, 4, 4],
            "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
            "leaky_relu_slope": 0.1, "normalize_before": False,
        },
        "speecht5_hifigan",
    ),
    m.AUDIO_MEL: ComponentSpec(
        "codi", "codi_audio.official:AudioLDMMel",
        {"sampling_rate": 16000, "filter_length": 1024, "hop_length": 160, "win_length": 1024, "n_mel_channels": 64, "mel_fmin": 0.0, "mel_fmax": 8000.0},
    ),
    m.AUDIO_ENV: ComponentSpec("codi", "codi_sdk.official.connectors:OfficialEnvironmentEncoder2D", _env2d_config(_UA, temporal=False)),
    m.AUDIO_JOINT: ComponentSpec("codi", "codi_sdk.official.connectors:OfficialJointAttention", _joint_config(_UA)),
    m.AUDIO_ENCODER: ComponentSpec(
        "transformers", "codi_audio.official:CoDiCLAPAudioEncoder",
        {
            "patch_embeds_hidden_size": 256, "hidden_size": 2048, "depths": [2, 2, 12, 2],
            "num_attention_heads": [4, 8, 16, 32], "window_size": 8, "spec_size": 256, "num_mel_bins": 64,
            "num_classes": 527, "projection_dim": 768, "enable_fusion": False, "projection_hidden_act": "relu",
            # the front end upstream runs on 48 kHz audio (HTSAT-large audio_cfg)
            "front_end": {"sample_rate": 48000, "window_size": 1024, "hop_size": 480, "fmin": 50, "fmax": 14000, "clip_samples": 480000},
        },
        "clap_audio_model",
    ),
    m.TEXT_UNET: ComponentSpec(
        "codi", "codi_text.official:CoDiTextUNet",
        {
            "in_channels": _UT["input_channels"], "model_channels": _UT["model_channels"], "out_channels": _UT["output_channels"],
            "channel_mult": list(_UT["channel_mult"]), "second_dim": list(_UT["second_dim"]),
            "layers_per_block": _UT["num_noattn_blocks"][0], "with_attn": list(_UT["with_attn"]),
            "num_heads": _UT["num_heads"], "context_dim": _UT["context_dim"],
        },
    ),
    m.TEXT_ENV: ComponentSpec(
        "codi", "codi_sdk.official.connectors:OfficialEnvironmentEncoder0D",
        {
            "in_channels": _UT["input_channels"], "model_channels": _UT["model_channels"],
            "channel_mult": list(_UT["channel_mult_connector"]), "second_dim": list(_UT["second_dim_connector"]),
            "layers_per_level": list(_UT["num_noattn_blocks_connector"]), "out_channels": _UT["connector_output_channel"],
            "temb_channels": 4 * _UT["model_channels"],
        },
    ),
    m.TEXT_JOINT: ComponentSpec("codi", "codi_sdk.official.connectors:OfficialJointAttention", _joint_config(_UT)),
    m.TEXT_VAE_ENCODER: ComponentSpec(
        "transformers", "codi_text.official:OptimusBertEncoder",
        {
            "vocab_size": 28996, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "intermediate_size": 3072, "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 2,
            "layer_norm_eps": 1e-12, "latent_size": 768, "scale_factor": 4.3108,
        },
        "bert",
    ),
    m.TEXT_VAE_DECODER: ComponentSpec(
        "transformers", "codi_text.official:OptimusGPT2Decoder",
        {
            "vocab_size": 50260, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
            "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True, "latent_size": 768,
            "latent_as_gpt_emb": True, "latent_as_gpt_memory": True,
            # GPT-2 vocabulary + '<PAD>', '<BOS>', '<EOS>' added in this order by upstream
            "pad_token_id": 50257, "bos_token_id": 50258, "eos_token_id": 50259,
        },
        "gpt2",
        tied={"lm_head.weight": "transformer.wte.weight"},
    ),
    m.TEXT_ENCODER: ComponentSpec("transformers", "codi_text.official:CoDiCLIPTextEncoder", dict(_CLIP_TEXT), "clip_text_model"),
}

#: Which official checkpoint file is expected to hold each component (inferred from names/sizes).
CHECKPOINT_FILES: dict[str, tuple[str, ...]] = {
    "CoDi_encoders.pth": ("clip", "clap", "optimus", "autokl", "audioldm"),
    "CoDi_text_diffuser.pth": ("unet_text",),
    "CoDi_audio_diffuser_m.pth": ("unet_audio",),
    "CoDi_video_diffuser_8frames.pth": ("unet_image",),
}


def scheduler_config() -> dict[str, Any]:
    """A copy of :data:`SCHEDULER_CONFIG` for ``DDIMScheduler.from_config``."""
    return dict(SCHEDULER_CONFIG)


def official_betas():
    """The official betas as a float64 tensor: ``linspace(sqrt(0.00085), sqrt(0.012), 1000) ** 2``."""
    import torch

    return torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
