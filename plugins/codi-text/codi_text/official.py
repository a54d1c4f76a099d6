"""The ``codi-official`` profile of the text modality: real-size official CoDi modules.

* :class:`CoDiTextUNet` — the official "0-D" text denoiser (``UNetModel0D_MultiDim``): a UNet whose
  "spatial" map is a ``[C, 4, 1]`` feature, with 1×1-convolution residual blocks on the flattened
  feature (:class:`~codi_sdk.official.connectors.FCResBlock`), linear down/up "sampling", and
  diffusers ``Transformer2DModel`` cross-attention over the 4 positions. Parameter names follow
  diffusers' UNet (``down_blocks.L.resnets.j`` ...);
* :class:`OptimusBertEncoder` / :class:`OptimusGPT2Decoder` — Optimus' text VAE: transformers
  ``BertModel`` + the linear map to (mean, log-variance), and ``GPT2LMHeadModel`` + the two latent
  connectors (``transformer.linear``: one key/value memory token per layer; ``transformer.linear_emb``:
  added to every input embedding), with :meth:`OptimusGPT2Decoder.generate_from_latent`;
* :class:`CoDiCLIPTextEncoder` — CLIP ViT-L/14 text tower + projection (the bridge) and CLIP's
  ``logit_scale``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from transformers import BertConfig, BertModel, CLIPTextConfig, CLIPTextModelWithProjection, GPT2Config, GPT2LMHeadModel

from codi_sdk.official.connectors import FCResBlock, OfficialJointAttention, linear_multidim, spatial_transformer


class _Block(nn.Module):
    """A container with the diffusers block attribute names (``resnets``, ``attentions``, ...)."""

    def __init__(self, resnets, attentions=None, downsamplers=None, upsamplers=None):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions) if attentions else None
        self.downsamplers = nn.ModuleList(downsamplers) if downsamplers else None
        self.upsamplers = nn.ModuleList(upsamplers) if upsamplers else None


class CoDiTextUNet(ModelMixin, ConfigMixin):
    """ε(z_t, t, context) for Optimus latents ``[B, 768]`` (the official text UNet, 2.05 B parameters
    with its connectors)."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 768,
        model_channels: int = 320,
        out_channels: int = 768,
        channel_mult: list[int] = (1, 2, 4, 4),
        second_dim: list[int] = (4, 4, 4, 4),
        layers_per_block: int = 2,
        with_attn: list[bool] = (True, True, True, False),
        num_heads: int = 8,
        context_dim: int = 768,
    ):
        super().__init__()
        mc, temb = model_channels, 4 * model_channels
        self.time_proj = Timesteps(mc, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(mc, temb)
        ch, s = mc, second_dim[0]
        self.conv_in = nn.Linear(in_channels, ch * s)
        skip_channels = [(ch, s)]
        self.down_blocks = nn.ModuleList()
        n = len(channel_mult)
        for level, (mult, sdim) in enumerate(zip(channel_mult, second_dim)):
            resnets, attentions = [], []
            for _ in range(layers_per_block):
                resnets.append(FCResBlock(ch * s, mult * mc * sdim, temb, sdim))
                ch, s = mult * mc, sdim
                if with_attn[level]:
                    attentions.append(spatial_transformer(ch, num_heads, context_dim))
                skip_channels.append((ch, s))
            down = [nn.Linear(ch * s, ch * s)] if level != n - 1 else None
            if down:
                skip_channels.append((ch, s))
            self.down_blocks.append(_Block(resnets, attentions, downsamplers=down))
        self.mid_block = _Block(
            [FCResBlock(ch * s, ch * s, temb, s), FCResBlock(ch * s, ch * s, temb, s)],
            [spatial_transformer(ch, num_heads, context_dim)],
        )
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(n)):
            mult, sdim = channel_mult[level], second_dim[level]
            resnets, attentions = [], []
            for _ in range(layers_per_block + 1):
                extra, _ = skip_channels.pop()
                resnets.append(FCResBlock((ch + extra) * s, mult * mc * sdim, temb, sdim))
                ch, s = mult * mc, sdim
                if with_attn[level]:
                    attentions.append(spatial_transformer(ch, num_heads, context_dim))
            up = [nn.Linear(ch * s, ch * s)] if level != 0 else None
            self.up_blocks.append(_Block(resnets, attentions, upsamplers=up))
        self.conv_norm_out = nn.GroupNorm(32, ch, eps=1e-5)
        self.conv_out = nn.Linear(ch * s, out_channels)

    def time_embed(self, timestep, batch: int, dtype, device) -> torch.Tensor:
        """The time embedding ``[batch, 4 * model_channels]`` (also the text environment encoder's input)."""
        t = torch.as_tensor(timestep, device=device)
        t = t.reshape(-1).expand(batch) if t.numel() == 1 else t.reshape(batch)
        return self.time_embedding(self.time_proj(t).to(dtype))

    def forward(
        self,
        sample: torch.Tensor,
        timestep,
        context: torch.Tensor,
        env: torch.Tensor | None = None,
        joint: OfficialJointAttention | None = None,
    ) -> torch.Tensor:
        """``sample`` ``[B, 768]``, ``context`` ``[B, K, 768]``, ``env`` ``[B, Le, 1280]`` -> ``[B, 768]``."""
        emb = self.time_embed(timestep, sample.shape[0], sample.dtype, sample.device)
        context = context.to(sample.dtype)
        h = linear_multidim(self.conv_in, sample, self.config.second_dim[0])
        skips = [h]
        for level, block in enumerate(self.down_blocks):
            for j, resnet in enumerate(block.resnets):
                h = resnet(h, emb)
                if block.attentions is not None:
                    h = block.attentions[j](h, encoder_hidden_states=context).sample
                if joint is not None:
                    h = joint.apply("down", level, j, h, env)
                skips.append(h)
            if block.downsamplers is not None:
                h = linear_multidim(block.downsamplers[0], h, h.shape[2])
                skips.append(h)
        mid = self.mid_block
        h = mid.resnets[0](h, emb)
        h = mid.attentions[0](h, encoder_hidden_states=context).sample
        h = mid.resnets[1](h, emb)
        for u, block in enumerate(self.up_blocks):
            last = len(block.resnets) - 1
            for j, resnet in enumerate(block.resnets):
                h = resnet(torch.cat([h, skips.pop()], dim=1), emb)
                if block.attentions is not None:
                    h = block.attentions[j](h, encoder_hidden_states=context).sample
                if j == last and block.upsamplers is not None:
                    h = linear_multidim(block.upsamplers[0], h, h.shape[2])
                if joint is not None:
                    h = joint.apply("up", u, j, h, env)
        h = F.silu(self.conv_norm_out(h))
        return self.conv_out(h.reshape(h.shape[0], -1))


class OptimusBertEncoder(BertModel):
    """Optimus' encoder: BERT (cased, 28 996 tokens) whose pooled output is mapped by ``linear``
    (no bias) to the mean and log-variance of the 768-d latent."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.linear = nn.Linear(config.hidden_size, 2 * getattr(config, "latent_size", 768), bias=False)
        self.post_init()

    def latent_mean(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids ``[B, L]`` (0 = padding) -> latent mean ``[B, 768]`` (unscaled)."""
        if attention_mask is None:
            attention_mask = (input_ids > 0).long()
        pooled = self(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return self.linear(pooled).chunk(2, dim=-1)[0]


class OptimusGPT2Decoder(GPT2LMHeadModel):
    """Optimus' decoder: GPT-2 (50 260 tokens: GPT-2's + ``<PAD>``, ``<BOS>``, ``<EOS>``) reading a
    768-d latent through ``transformer.linear`` (a key = value memory token per layer) and
    ``transformer.linear_emb`` (added to every input embedding)."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        latent = getattr(config, "latent_size", 768)
        self.transformer.linear = nn.Linear(latent, config.n_embd * config.n_layer, bias=False)
        self.transformer.linear_emb = nn.Linear(latent, config.n_embd, bias=False)
        self.post_init()

    def latent_logits(self, input_ids: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[B, L, vocab]`` of ``input_ids`` given the (unscaled) ``latent`` ``[B, 768]``."""
        from transformers import DynamicCache

        cfg = self.config
        b = latent.shape[0]
        heads, dim = cfg.n_head, cfg.n_embd // cfg.n_head
        memory = self.transformer.linear(latent).view(b, cfg.n_layer, heads, 1, dim)
        cache = DynamicCache()
        for layer in range(cfg.n_layer):
            kv = memory[:, layer]
            cache.update(kv, kv, layer)
        embeds = self.transformer.wte(input_ids)
        if getattr(cfg, "latent_as_gpt_emb", True):
            embeds = embeds + self.transformer.linear_emb(latent)[:, None, :]
        mask = torch.ones(b, input_ids.shape[1] + 1, dtype=torch.long, device=input_ids.device)
        out = self(inputs_embeds=embeds, past_key_values=cache, attention_mask=mask, use_cache=False)
        return out.logits

    @torch.no_grad()
    def generate_from_latent(
        self,
        latent: torch.Tensor,
        max_length: int = 30,
        temperature: float = 1.0,
        greedy: bool = False,
        generator: torch.Generator | None = None,
    ) -> list[list[int]]:
        """Token ids for each latent: ``<BOS>`` ... ``<EOS>`` (sampling with ``temperature``, as
        upstream, or ``greedy``), at most ``max_length`` tokens including both markers."""
        bos, eos = self.config.bos_token_id, self.config.eos_token_id
        results = []
        for z in latent:
            ids = torch.tensor([[bos]], device=latent.device)
            while True:
                logits = self.latent_logits(ids, z[None])[0, -1].float() / temperature
                if greedy:
                    nxt = logits.argmax()[None]
                else:
                    nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
                ids = torch.cat([ids, nxt[None]], dim=1)
                if nxt.item() == eos:
                    break
                if ids.shape[1] >= max_length:
                    ids[0, -1] = eos
                    break
            results.append(ids[0].tolist())
        return results


class CoDiCLIPTextEncoder(CLIPTextModelWithProjection):
    """CLIP ViT-L/14 text tower + projection (CoDi's bridge encoder) and CLIP's ``logit_scale``."""

    def __init__(self, config: CLIPTextConfig):
        super().__init__(config)
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))
        self.post_init()

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, 77]`` -> L2-normalised projected embeddings ``[B, 768]``."""
        return F.normalize(self(input_ids=input_ids).text_embeds, dim=-1)


def build_official_component(target: str) -> nn.Module:
    """A new (untrained) module for one of the text folders of the official profile.

    Build it under ``torch.device("meta")`` to get the structure without allocating memory.
    """
    from codi_sdk.official.connectors import OfficialEnvironmentEncoder0D
    from codi_sdk.official.profile import COMPONENTS

    spec = COMPONENTS[target]
    cls_name = spec.class_name.split(":")[1]
    cfg = dict(spec.config)
    builders = {
        "CoDiTextUNet": lambda: CoDiTextUNet(**cfg),
        "OfficialEnvironmentEncoder0D": lambda: OfficialEnvironmentEncoder0D(**cfg),
        "OfficialJointAttention": lambda: OfficialJointAttention(**cfg),
        "OptimusBertEncoder": lambda: OptimusBertEncoder(BertConfig(**cfg)),
        "OptimusGPT2Decoder": lambda: OptimusGPT2Decoder(GPT2Config(**cfg)),
        "CoDiCLIPTextEncoder": lambda: CoDiCLIPTextEncoder(CLIPTextConfig(**cfg)),
    }
    return builders[cls_name]()


def load_official_component(root, target: str, *, dtype: torch.dtype | None = None) -> nn.Module:
    """Load folder ``target`` (e.g. ``"text/unet"``, ``"text/vae/decoder"``) of a converted weights root."""
    from pathlib import Path

    from codi_sdk.errors import WeightsNotFoundError
    from codi_sdk.official.connectors import OfficialEnvironmentEncoder0D
    from codi_sdk.official.profile import COMPONENTS

    folder = Path(root) / target
    if not (folder / "config.json").is_file():
        raise WeightsNotFoundError(f"no converted component {target!r} in {root} (run `codi convert-official`)")
    cls = {
        "CoDiTextUNet": CoDiTextUNet, "OfficialEnvironmentEncoder0D": OfficialEnvironmentEncoder0D,
        "OfficialJointAttention": OfficialJointAttention, "OptimusBertEncoder": OptimusBertEncoder,
        "OptimusGPT2Decoder": OptimusGPT2Decoder, "CoDiCLIPTextEncoder": CoDiCLIPTextEncoder,
    }[COMPONENTS[target].class_name.split(":")[1]]
    if COMPONENTS[target].library == "transformers":
        return cls.from_pretrained(folder, dtype=dtype) if dtype else cls.from_pretrained(folder)
    return cls.from_pretrained(folder, torch_dtype=dtype) if dtype else cls.from_pretrained(folder)


OFFICIAL_TARGETS: tuple[str, ...] = (
    "text/unet", "text/env_encoder", "text/joint", "text/vae/encoder", "text/vae/decoder", "text/encoder",
)

__all__ = [
    "CoDiTextUNet",
    "OptimusBertEncoder",
    "OptimusGPT2Decoder",
    "CoDiCLIPTextEncoder",
    "build_official_component",
    "load_official_component",
    "OFFICIAL_TARGETS",
]
