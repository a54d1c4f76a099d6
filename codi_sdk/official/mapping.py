"""Key mapping: official CoDi state-dict keys -> our component folders and their keys.

Every official key lands in exactly one of these outcomes (:func:`map_key`):

* :class:`Mapped` — one tensor of one of our components (``target`` folder, ``key``), possibly
  reshaped (1×1 convolution -> linear, same number of elements);
* :class:`Split` — one fused tensor cut into equal parts along dim 0 (HTSAT ``qkv`` -> query/key/value);
* :class:`Dropped` — a documented constant that our modules rebuild themselves (DDPM schedule
  buffers, CLIP ``position_ids``, GPT-2 causal masks, CLAP's lazily-built STFT/mel front end).

Targets are our ``save_pretrained`` folders, named ``<modality>/<component>`` (see
:data:`TARGETS`). The module classes that own each folder live in the plugins
(``codi_image.official``, ``codi_audio.official``, ``codi_text.official``) and in
:mod:`codi_sdk.official.joint`; their state-dict keys after this mapping are a bijection with the
official keys (checked in ``tests/test_official_mapping.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Union

from . import layout

# -- our component folders ---------------------------------------------------------------------
IMAGE_UNET = "image/unet"
IMAGE_ENV = "image/env_encoder"
IMAGE_JOINT = "image/joint"
IMAGE_VAE = "image/vae"
IMAGE_ENCODER = "image/encoder"
VIDEO_TEMPORAL = "video/temporal"
AUDIO_UNET = "audio/unet"
AUDIO_ENV = "audio/env_encoder"
AUDIO_JOINT = "audio/joint"
AUDIO_VAE = "audio/vae"
AUDIO_VOCODER = "audio/vocoder"
AUDIO_MEL = "audio/mel"
AUDIO_ENCODER = "audio/encoder"
TEXT_UNET = "text/unet"
TEXT_ENV = "text/env_encoder"
TEXT_JOINT = "text/joint"
TEXT_VAE_ENCODER = "text/vae/encoder"
TEXT_VAE_DECODER = "text/vae/decoder"
TEXT_ENCODER = "text/encoder"

#: Which of our folders each official component fills.
TARGETS: dict[str, tuple[str, ...]] = {
    "unet_image": (IMAGE_UNET, IMAGE_ENV, IMAGE_JOINT, VIDEO_TEMPORAL),
    "unet_text": (TEXT_UNET, TEXT_ENV, TEXT_JOINT),
    "unet_audio": (AUDIO_UNET, AUDIO_ENV, AUDIO_JOINT),
    "autokl": (IMAGE_VAE,),
    "audioldm": (AUDIO_VAE, AUDIO_VOCODER, AUDIO_MEL),
    "optimus": (TEXT_VAE_ENCODER, TEXT_VAE_DECODER),
    "clip": (TEXT_ENCODER, IMAGE_ENCODER),
    "clap": (AUDIO_ENCODER,),
    "root": (),
}

#: Folders of the video modality that are the image modality's (same official tensors).
VIDEO_SHARES: dict[str, str] = {
    "video/unet": IMAGE_UNET,
    "video/env_encoder": IMAGE_ENV,
    "video/joint": IMAGE_JOINT,
    "video/vae": IMAGE_VAE,
    "video/encoder": IMAGE_ENCODER,
}

#: Keys our modules own that the official model has no tensor for, with the constant to write.
#: (transformers' SpeechT5HifiGan keeps input-normalisation buffers; AudioLDM's HiFi-GAN has none
#: and does not normalise, which ``normalize_before=False`` reproduces.)
FILLED: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {
    AUDIO_VOCODER: {"mean": ("zeros", (64,)), "scale": ("ones", (64,))},
}


@dataclass(frozen=True)
class Mapped:
    """An official tensor becomes ``key`` of our ``target`` folder (reshaped if ``shape`` is set)."""

    target: str
    key: str
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Split:
    """An official fused tensor is cut into ``len(parts)`` equal chunks along dim 0."""

    parts: tuple[Mapped, ...]


@dataclass(frozen=True)
class Dropped:
    """An official tensor our modules rebuild themselves; ``reason`` says which constant it is."""

    reason: str


Outcome = Union[Mapped, Split, Dropped]
# A sub-mapping turns the rest of a key (after a matched prefix) into our rest of key.
SubMap = Callable[[str, tuple[int, ...]], Union[tuple[str, "tuple[int, ...] | None"], Split, Dropped, None]]

DROP_SCHEDULE = "DDPM schedule buffer: recomputed from the official schedule (see profile.SCHEDULER_CONFIG)"
DROP_POSITION_IDS = "CLIP position_ids: int64 arange, a non-persistent buffer in transformers"
DROP_CAUSAL_MASK = "GPT-2 causal mask: constant, rebuilt by transformers"
DROP_SHIFT_MASK = "HTSAT shifted-window attention mask: constant, computed by transformers' ClapAudioEncoder"
DROP_LAZY_FRONT_END = "CLAP STFT/log-mel front end: fixed filters, built lazily upstream; recomputed by our encoder"


# -- sub-mappings -------------------------------------------------------------------------------
def _same(rest: str, shape):
    return rest, None


def _renamer(table: dict[str, str], squeeze_1x1: frozenset[str] = frozenset()) -> SubMap:
    """Rename the first dotted component(s) of the rest by ``table``; squeeze 1×1 conv weights."""

    def sub(rest: str, shape):
        for old, new in table.items():
            if rest == old or rest.startswith(old + "."):
                tail = rest[len(old):]
                new_shape = None
                if old in squeeze_1x1 and tail == ".weight" and len(shape) == 4:
                    new_shape = tuple(shape[:2])
                return new + tail, new_shape
        return rest, None

    return sub


_TIME_EMBED = _renamer({"0": "linear_1", "2": "linear_2"})
# openai-style ResBlock / FCBlock -> diffusers ResnetBlock2D names
_RESNET = _renamer(
    {
        "in_layers.0": "norm1",
        "in_layers.2": "conv1",
        "emb_layers.1": "time_emb_proj",
        "out_layers.0": "norm2",
        "out_layers.3": "conv2",
        "skip_connection": "conv_shortcut",
    }
)
# LDM VAE blocks -> diffusers AutoencoderKL names
_LDM_RESNET = _renamer({"nin_shortcut": "conv_shortcut"})
_LDM_ATTN = _renamer(
    {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"},
    squeeze_1x1=frozenset({"q", "k", "v", "proj_out"}),
)
_HIFIGAN = _renamer({"ups": "upsampler"})


def _optimus_decoder(rest: str, shape):
    parts = rest.split(".")
    if len(parts) == 5 and parts[:2] == ["transformer", "h"] and parts[3:] == ["attn", "bias"]:
        return Dropped(DROP_CAUSAL_MASK)
    return rest, None


def _clip_part(rest: str, shape):
    if rest == "embeddings.position_ids":
        return Dropped(DROP_POSITION_IDS)
    return rest, None


_HTSAT_BLOCK = _renamer(
    {
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "attn.relative_position_bias_table": "attention.self.relative_position_bias_table",
        "attn.relative_position_index": "attention.self.relative_position_index",
        "attn.proj": "attention.output.dense",
        "mlp.fc1": "intermediate.dense",
        "mlp.fc2": "output.dense",
    }
)


def _htsat_block(target: str, our_prefix: str) -> SubMap:
    def sub(rest: str, shape):
        if rest == "attn_mask":
            return Dropped(DROP_SHIFT_MASK)
        if rest in ("attn.qkv.weight", "attn.qkv.bias"):
            leaf = rest.rsplit(".", 1)[1]
            third = (shape[0] // 3, *shape[1:])
            return Split(
                tuple(Mapped(target, f"{our_prefix}attention.self.{n}.{leaf}", third) for n in ("query", "key", "value"))
            )
        return _HTSAT_BLOCK(rest, shape)

    return sub


# -- rule tables --------------------------------------------------------------------------------
Rule = tuple[str, str, SubMap]  # (target, our prefix, sub-mapping)


def _unet_levels(n_levels: int, layers: int):
    """Official input/output block indices of an openai-style UNet, with their diffusers positions."""
    blocks, downs, idx = [], [], 1
    for level in range(n_levels):
        for j in range(layers):
            blocks.append((idx, level, j))
            idx += 1
        if level != n_levels - 1:
            downs.append((idx, level))
            idx += 1
    ups, idx = [], 0
    for u, level in enumerate(reversed(range(n_levels))):
        for j in range(layers + 1):
            ups.append((idx, u, level, j))
            idx += 1
    return blocks, downs, ups


def _connector_levels(n_levels: int, layers: tuple[int, ...]):
    """Indices in ``connecters_out``: resnets (index, running number), downsamplers (index, level), out."""
    resnets, downs, idx, n = [], [], 1, 0
    for level in range(n_levels):
        for _ in range(layers[level]):
            resnets.append((idx, n))
            idx += 1
            n += 1
        if level != n_levels - 1:
            downs.append((idx, level))
            idx += 1
    return resnets, downs, idx


def _unet_rules(args: dict, *, kind: str, unet: str, env: str, joint: str, temporal: str | None) -> dict[str, Rule]:
    """Rules for one openai-style CoDi UNet. ``kind``: "2d" (image/video, audio) or "0d" (text)."""
    video = temporal is not None
    mults = args["channel_mult"]
    layers = args["num_noattn_blocks"]
    if len(set(layers)) != 1:
        raise ValueError(f"CoDi UNets use the same number of blocks on every level, got {layers}")
    with_attn, with_conn = args["with_attn"], args["with_connector"]
    res_suffix = "0.0." if video else "0."
    r: dict[str, Rule] = {"time_embed.": (unet, "time_embedding.", _TIME_EMBED), "input_blocks.0.0.": (unet, "conv_in.", _same)}
    blocks, downs, ups = _unet_levels(len(mults), layers[0])
    for idx, level, j in blocks:
        r[f"input_blocks.{idx}.{res_suffix}"] = (unet, f"down_blocks.{level}.resnets.{j}.", _RESNET)
        if video:
            r[f"input_blocks.{idx}.0.1."] = (temporal, f"down.{level}.{j}.", _same)
        if with_attn[level]:
            r[f"input_blocks.{idx}.1."] = (unet, f"down_blocks.{level}.attentions.{j}.", _same)
        if with_conn[level]:
            r[f"input_block_connecters_in.{idx}.0."] = (joint, f"down.{level}.{j}.", _same)
    for idx, level in downs:
        src = f"input_blocks.{idx}.0.op." if kind == "2d" else f"input_blocks.{idx}.0."
        dst = f"down_blocks.{level}.downsamplers.0.conv." if kind == "2d" else f"down_blocks.{level}.downsamplers.0."
        r[src] = (unet, dst, _same)
    mid_res = ("middle_block.0.0.", "middle_block.2.0.") if video else ("middle_block.0.", "middle_block.2.")
    r[mid_res[0]] = (unet, "mid_block.resnets.0.", _RESNET)
    r[mid_res[1]] = (unet, "mid_block.resnets.1.", _RESNET)
    r["middle_block.1."] = (unet, "mid_block.attentions.0.", _same)
    if video:
        r["middle_block.0.1."] = (temporal, "mid.0.", _same)
        r["middle_block.2.1."] = (temporal, "mid.1.", _same)
    for idx, u, level, j in ups:
        r[f"output_blocks.{idx}.{res_suffix}"] = (unet, f"up_blocks.{u}.resnets.{j}.", _RESNET)
        if video:
            r[f"output_blocks.{idx}.0.1."] = (temporal, f"up.{u}.{j}.", _same)
        if with_attn[level]:
            r[f"output_blocks.{idx}.1."] = (unet, f"up_blocks.{u}.attentions.{j}.", _same)
        if level != 0 and j == layers[0]:
            pos = 2 if with_attn[level] else 1
            if kind == "2d":
                r[f"output_blocks.{idx}.{pos}.conv."] = (unet, f"up_blocks.{u}.upsamplers.0.conv.", _same)
            else:
                r[f"output_blocks.{idx}.{pos}."] = (unet, f"up_blocks.{u}.upsamplers.0.", _same)
        if with_conn[level]:
            r[f"output_block_connecters_in.{idx}.0."] = (joint, f"up.{u}.{j}.", _same)
    r["out.0."] = (unet, "conv_norm_out.", _same)
    r["out.2."] = (unet, "conv_out.", _same)
    # connecters_out: the environment encoder
    conn_layers = args["num_noattn_blocks_connector"]
    n_conn = len(conn_layers)
    resnets, cdowns, out_idx = _connector_levels(n_conn, conn_layers)
    r["connecters_out.0.0."] = (env, "conv_in.", _same)
    for idx, n in resnets:
        r[f"connecters_out.{idx}.{res_suffix}"] = (env, f"resnets.{n}.", _RESNET)
        if video:
            r[f"connecters_out.{idx}.0.1."] = (env, f"temporals.{n}.", _same)
    for idx, level in cdowns:
        if kind == "2d":
            r[f"connecters_out.{idx}.0.op."] = (env, f"downsamplers.{level}.conv.", _same)
        else:
            r[f"connecters_out.{idx}.0."] = (env, f"downsamplers.{level}.", _same)
    r[f"connecters_out.{out_idx}.0."] = (env, "norm_out.", _same)
    r[f"connecters_out.{out_idx}.2."] = (env, "conv_out.", _same)
    return r


def _ldm_vae_rules(target: str, n_levels: int, layers: int) -> dict[str, Rule]:
    r: dict[str, Rule] = {}
    for part in ("encoder", "decoder"):
        r[f"{part}.conv_in."] = (target, f"{part}.conv_in.", _same)
        r[f"{part}.conv_out."] = (target, f"{part}.conv_out.", _same)
        r[f"{part}.norm_out."] = (target, f"{part}.conv_norm_out.", _same)
        r[f"{part}.mid.block_1."] = (target, f"{part}.mid_block.resnets.0.", _LDM_RESNET)
        r[f"{part}.mid.block_2."] = (target, f"{part}.mid_block.resnets.1.", _LDM_RESNET)
        r[f"{part}.mid.attn_1."] = (target, f"{part}.mid_block.attentions.0.", _LDM_ATTN)
    for i in range(n_levels):
        for j in range(layers):
            r[f"encoder.down.{i}.block.{j}."] = (target, f"encoder.down_blocks.{i}.resnets.{j}.", _LDM_RESNET)
        if i != n_levels - 1:
            r[f"encoder.down.{i}.downsample."] = (target, f"encoder.down_blocks.{i}.downsamplers.0.", _same)
        u = n_levels - 1 - i
        for j in range(layers + 1):
            r[f"decoder.up.{i}.block.{j}."] = (target, f"decoder.up_blocks.{u}.resnets.{j}.", _LDM_RESNET)
        if i != 0:
            r[f"decoder.up.{i}.upsample."] = (target, f"decoder.up_blocks.{u}.upsamplers.0.", _same)
    r["quant_conv."] = (target, "quant_conv.", _same)
    r["post_quant_conv."] = (target, "post_quant_conv.", _same)
    return r


def _clip_rules(vision_layers: int) -> dict[str, Rule]:
    r: dict[str, Rule] = {
        "model.text_model.": (TEXT_ENCODER, "text_model.", _clip_part),
        "model.text_projection.": (TEXT_ENCODER, "text_projection.", _same),
        "model.logit_scale": (TEXT_ENCODER, "logit_scale", _same),
        "model.vision_model.": (IMAGE_ENCODER, "vision_model.", _clip_part),
        "model.visual_projection.": (IMAGE_ENCODER, "visual_projection.", _same),
    }
    for n in range(vision_layers):
        r[f"model.vision_model.encoder.layers.{n}.temporal_self_attn."] = (IMAGE_ENCODER, f"temporal.{n}.", _same)
    return r


def _clap_rules(depths: tuple[int, ...]) -> dict[str, Rule]:
    enc = "audio_model.audio_encoder."
    r: dict[str, Rule] = {
        "model.audio_branch.bn0.": (AUDIO_ENCODER, enc + "batch_norm.", _same),
        "model.audio_branch.patch_embed.": (AUDIO_ENCODER, enc + "patch_embed.", _same),
        "model.audio_branch.norm.": (AUDIO_ENCODER, enc + "norm.", _same),
        "model.audio_branch.tscam_conv.": (AUDIO_ENCODER, "tscam_conv.", _same),
        "model.audio_branch.head.": (AUDIO_ENCODER, "head.", _same),
        "model.audio_branch.spectrogram_extractor.": ("", "", lambda rest, shape: Dropped(DROP_LAZY_FRONT_END)),
        "model.audio_branch.logmel_extractor.": ("", "", lambda rest, shape: Dropped(DROP_LAZY_FRONT_END)),
        "model.audio_transform.": (AUDIO_ENCODER, "audio_transform.", _same),
        "model.audio_projection.0.": (AUDIO_ENCODER, "audio_projection.linear1.", _same),
        "model.audio_projection.2.": (AUDIO_ENCODER, "audio_projection.linear2.", _same),
    }
    for i, depth in enumerate(depths):
        r[f"model.audio_branch.layers.{i}.downsample."] = (AUDIO_ENCODER, f"{enc}layers.{i}.downsample.", _same)
        for j in range(depth):
            ours = f"{enc}layers.{i}.blocks.{j}."
            r[f"model.audio_branch.layers.{i}.blocks.{j}."] = (AUDIO_ENCODER, ours, _htsat_block(AUDIO_ENCODER, ours))
    return r


@lru_cache(maxsize=1)
def rule_tables() -> dict[str, dict[str, Rule]]:
    """Per official component: official key prefix (without the component prefix) -> rule."""
    from .profile import OFFICIAL_UNET_ARGS

    return {
        "unet_image": _unet_rules(OFFICIAL_UNET_ARGS["unet_image"], kind="2d", unet=IMAGE_UNET, env=IMAGE_ENV, joint=IMAGE_JOINT, temporal=VIDEO_TEMPORAL),
        "unet_audio": _unet_rules(OFFICIAL_UNET_ARGS["unet_audio"], kind="2d", unet=AUDIO_UNET, env=AUDIO_ENV, joint=AUDIO_JOINT, temporal=None),
        "unet_text": _unet_rules(OFFICIAL_UNET_ARGS["unet_text"], kind="0d", unet=TEXT_UNET, env=TEXT_ENV, joint=TEXT_JOINT, temporal=None),
        "autokl": _ldm_vae_rules(IMAGE_VAE, 4, 2),
        "audioldm": {
            **_ldm_vae_rules(AUDIO_VAE, 3, 2),
            "vocoder.": (AUDIO_VOCODER, "", _HIFIGAN),
            "fn_STFT.mel_basis": (AUDIO_MEL, "mel_basis", _same),
            "fn_STFT.stft_fn.forward_basis": (AUDIO_MEL, "forward_basis", _same),
            "fn_STFT.stft_fn.inverse_basis": (AUDIO_MEL, "inverse_basis", _same),
        },
        "optimus": {
            "encoder.": (TEXT_VAE_ENCODER, "", _same),
            "decoder.": (TEXT_VAE_DECODER, "", _optimus_decoder),
        },
        "clip": _clip_rules(24),
        "clap": _clap_rules((2, 2, 12, 2)),
    }


def map_key(key: str, shape: tuple[int, ...]) -> Outcome | None:
    """Where the official tensor ``key`` (of ``shape``) goes; ``None`` if no rule knows the key."""
    if key == "lvlb_weights":  # non-persistent upstream, but tolerated if a file carries it
        return Dropped(DROP_SCHEDULE)
    component = layout.component_of(key)
    if component is None:
        return None
    if component == "root":
        return Dropped(DROP_SCHEDULE)
    rest_all = key[len(layout.component_prefix(component)):]
    table = rule_tables()[component]
    parts = rest_all.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut]) + ("" if cut == len(parts) else ".")
        rule = table.get(prefix)
        if rule is None:
            continue
        target, ours, sub = rule
        out = sub(rest_all[len(prefix):], tuple(shape))
        if out is None or isinstance(out, (Split, Dropped)):
            return out
        our_rest, new_shape = out
        return Mapped(target, ours + our_rest, new_shape)
    return None


@dataclass
class MappedLayout:
    """The official layout pushed through :func:`map_key`: what each of our folders receives."""

    targets: dict[str, dict[str, tuple[int, ...]]]
    dropped: dict[str, str]  # official key -> reason
    unmapped: list[str]  # official keys no rule knows (must be empty)
    collisions: list[str]  # our keys produced twice (must be empty)


def mapped_layout(component: str | None = None, *, include_lazy: bool = True) -> MappedLayout:
    """Map every official entry (of ``component``, or all) and collect our keys with their shapes.

    Filled constants (:data:`FILLED`) are added to their folders, so ``targets[folder]`` is exactly
    the key -> shape table of our module's state dict.
    """
    out = MappedLayout({}, {}, [], [])
    components = [component] if component else list(TARGETS)
    for name in components:
        for target in TARGETS[name]:
            out.targets.setdefault(target, {})
            for key, (_, shape) in FILLED.get(target, {}).items():
                out.targets[target][key] = shape
    for entry in layout.entries(component, include_lazy=include_lazy):
        outcome = map_key(entry.key, entry.shape)
        if outcome is None:
            out.unmapped.append(entry.key)
            continue
        if isinstance(outcome, Dropped):
            out.dropped[entry.key] = outcome.reason
            continue
        for part in outcome.parts if isinstance(outcome, Split) else (outcome,):
            table = out.targets.setdefault(part.target, {})
            if part.key in table:
                out.collisions.append(f"{part.target}:{part.key}")
            table[part.key] = part.shape or entry.shape
    return out
