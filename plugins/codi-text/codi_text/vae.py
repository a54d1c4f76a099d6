"""An Optimus-style text VAE: BERT encoder -> Gaussian latent -> GPT-2 decoder.

As in Optimus (Li et al. 2020), which CoDi uses for text:

* **encoder** — a transformers ``BertModel``; its hidden states, pooled, go through a linear layer
  to the mean and log-variance of a diagonal Gaussian. ``encoder_pooling="mean"`` (default)
  averages over the tokens; ``"cls"`` takes BERT's pooler output at ``[CLS]`` as Optimus does.
  Trained from scratch on ToyWorld, mean pooling learns several times faster: through the
  ``[CLS]``/``[BOS]`` pooler, captions that share their first words stay confused for hundreds of
  steps. ``encoder_pooling="tokens"`` pools nothing: the hidden states of the first
  ``latent_length`` positions (padding zeroed) each go through the linear layer to one latent
  token's moments, so each word keeps a latent token of its own. Then a colour–shape pair the VAE
  never saw comes back exactly, where a pooled latent comes back as a seen pair ("a red triangle" as
  "a red circle"): on ToyWorld's held-out captions 48 of 48 against 18 of 48 (session 10, the
  recipe with training-only colours). Longer texts are cut to ``latent_length`` positions;
* **latent** — ``latent_channels * latent_length`` numbers viewed as a short sequence of
  ``latent_length`` tokens with ``latent_channels`` channels, shape ``[B, C, L]`` (ToyWorld:
  ``C, L = 4, 8``: 32 numbers, Optimus' own latent size). The text denoiser and the environment
  encoder treat it as ``L`` tokens;
* **decoder** — a transformers ``GPT2LMHeadModel`` conditioned on the latent in both ways Optimus
  describes: the ``L`` latent tokens, each projected to the GPT-2 width, are a *prefix* that every
  generated token attends to (the "memory" injection), and a projection of the whole latent is added
  to every word embedding (the "embedding" injection);
* **loss** — ELBO with ``kl_beta`` and Optimus' per-dimension free bits ``kl_free_bits`` (the
  batch-mean KL of a latent dimension is not penalised below that many nats), so the decoder cannot
  ignore the latent and ToyWorld captions are reconstructed exactly. Defaults ``kl_beta=0.5``,
  ``kl_free_bits=2.0``: measured on all 243 ToyWorld captions (batch 32, AdamW 3e-3), 2 nats per
  dimension (64 for the latent) reconstructs 100 % of them after 600 steps, while 0.5 or 1.0 nats
  per dimension hold the latent to 16 or 32 nats and reach 12 % or 30 %. In that run the posterior
  kept a standard deviation of about 0.12 per dimension around means spread about 0.6, and 99.6 %
  of captions still decoded exactly with Gaussian noise of 0.1 added to the mean: the robustness to
  error in a generated latent that the diffusion model needs (set ``scaling_factor`` to about
  1 / 0.6 after training).

:class:`TextVAE` is a diffusers ``ModelMixin``/``ConfigMixin``: its folder holds ``config.json``
(the BERT and GPT-2 configs nested in it), ``diffusion_pytorch_model.safetensors`` and the
tokenizer files (``tokenizer.json`` ...). When the encoder's tokenizer differs from the decoder's
(real BERT + GPT-2), the encoder's lives in the sub-folder ``encoder_tokenizer/``.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from safetensors.torch import load_model, save_model
from torch import nn
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase

from codi_sdk.io import atomic_path

from .tokenizer import (
    MAX_TOKENS,
    VOCABULARY,
    build_toyworld_tokenizer,
    has_tokenizer,
    load_tokenizer,
    pad_token_id,
    start_token_id,
    stop_token_id,
)

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
ENCODER_TOKENIZER_DIR = "encoder_tokenizer"
#: transformers >= 5.2x names the key/value cache argument ``cache``; earlier ones ``past_key_values``.
_CACHE_ARG = "cache" if "cache" in inspect.signature(GPT2LMHeadModel.forward).parameters else "past_key_values"


def _cache_of(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def toyworld_bert_config(vocab_size: int = len(VOCABULARY)) -> dict[str, Any]:
    """The tiny BERT of the ToyWorld text VAE (width 64, 2 layers, 32 positions)."""
    return dict(
        vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=MAX_TOKENS, type_vocab_size=1, pad_token_id=0,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )


def toyworld_gpt2_config(vocab_size: int = len(VOCABULARY)) -> dict[str, Any]:
    """The tiny GPT-2 of the ToyWorld text VAE (width 64, 2 layers, room for prefix + 32 tokens)."""
    return dict(
        vocab_size=vocab_size, n_embd=64, n_layer=2, n_head=4, n_positions=64,
        bos_token_id=2, eos_token_id=3, pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )


class TextVAE(ModelMixin, ConfigMixin):
    """Text <-> latent ``[B, latent_channels, latent_length]``.

    ``TextVAE()`` is the untrained ToyWorld configuration with the ToyWorld tokenizer
    (``encoder_config``/``decoder_config`` ``None``: the tiny BERT and GPT-2 of
    :func:`toyworld_bert_config` and :func:`toyworld_gpt2_config`). For real pretrained parts use
    :meth:`from_bert_gpt2`. The tokenizers are not part of the config: they are saved next to it.
    ``scaling_factor`` plays the role it has in diffusers' ``AutoencoderKL``: the diffuser
    multiplies latents by it so they have about unit variance (set it after training the VAE).

    Example:
        >>> vae = TextVAE()
        >>> z = vae.encode(["a red circle moving left"]).latent_dist.mode()   # [1, 4, 8]
        >>> vae.decode(z)                                                      # ["..."] (untrained)
    """

    @register_to_config
    def __init__(
        self,
        encoder_config: dict[str, Any] | None = None,
        decoder_config: dict[str, Any] | None = None,
        latent_channels: int = 4,
        latent_length: int = 8,
        kl_beta: float = 0.5,
        kl_free_bits: float = 2.0,
        max_new_tokens: int = 16,
        scaling_factor: float = 1.0,
        encoder_pooling: str = "mean",
    ):
        super().__init__()
        if encoder_pooling not in ("mean", "cls", "tokens"):
            raise ValueError(f"encoder_pooling must be 'mean', 'cls' or 'tokens', got {encoder_pooling!r}")
        if encoder_config is None or decoder_config is None:  # the ToyWorld size, written out so the folder says it
            encoder_config = encoder_config or toyworld_bert_config()
            decoder_config = decoder_config or toyworld_gpt2_config()
            self.register_to_config(encoder_config=encoder_config, decoder_config=decoder_config)
        self.encoder = BertModel(BertConfig(**encoder_config))
        self.decoder = GPT2LMHeadModel(GPT2Config(**decoder_config))
        hidden, width = self.encoder.config.hidden_size, self.decoder.config.n_embd
        per_token = encoder_pooling == "tokens"  # one latent token from each of the first L positions
        self.to_moments = nn.Linear(hidden, 2 * latent_channels * (1 if per_token else latent_length))
        self.latent_to_prefix = nn.Linear(latent_channels, width)
        self.latent_to_embedding = nn.Linear(latent_channels * latent_length, width, bias=False)
        # GPT-2's own init scale: a default-initialised projection of z ~ N(0, I) would be ~30x
        # larger than the word embeddings and drown them at the start of training.
        std = self.decoder.config.initializer_range
        for layer in (self.to_moments, self.latent_to_prefix, self.latent_to_embedding):
            nn.init.normal_(layer.weight, std=std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        self.encoder_tokenizer: PreTrainedTokenizerBase = build_toyworld_tokenizer()
        self.decoder_tokenizer: PreTrainedTokenizerBase = self.encoder_tokenizer

    @property
    def latent_shape(self) -> tuple[int, int]:
        return (self.config.latent_channels, self.config.latent_length)

    def set_tokenizers(self, encoder_tokenizer: PreTrainedTokenizerBase, decoder_tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        """Use these tokenizers (the decoder's defaults to the encoder's); vocab sizes must fit."""
        decoder_tokenizer = decoder_tokenizer or encoder_tokenizer
        for name, tok, model_vocab in (
            ("encoder", encoder_tokenizer, self.encoder.config.vocab_size),
            ("decoder", decoder_tokenizer, self.decoder.config.vocab_size),
        ):
            if len(tok) > model_vocab:
                raise ValueError(f"{name} tokenizer has {len(tok)} tokens but the {name} model only {model_vocab}")
        self.encoder_tokenizer, self.decoder_tokenizer = encoder_tokenizer, decoder_tokenizer

    # -- encoder ----------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], return_dict: bool = True):
        """Texts -> posterior ``latent_dist`` (a diffusers ``DiagonalGaussianDistribution`` over
        ``[B, C, L]``), wrapped like ``AutoencoderKL.encode``'s output."""
        from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKLOutput

        texts = list(texts)
        batch = self.encoder_tokenizer(
            texts, padding=True, truncation=True, max_length=self.encoder.config.max_position_embeddings,
            return_tensors="pt",
        ).to(self.device)
        out = self.encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        if self.config.encoder_pooling == "tokens":
            states = out.last_hidden_state[:, : self.config.latent_length]
            states = states * batch.attention_mask[:, : self.config.latent_length, None].to(states.dtype)
            states = nn.functional.pad(states, (0, 0, 0, self.config.latent_length - states.shape[1]))
            moments = rearrange(self.to_moments(states), "b l c -> b c l")
            dist = DiagonalGaussianDistribution(moments)
            return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)
        if self.config.encoder_pooling == "cls":
            pooled = out.pooler_output
        else:
            mask = batch.attention_mask[..., None].to(out.last_hidden_state.dtype)
            pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
        moments = self.to_moments(pooled).view(len(texts), 2 * self.config.latent_channels, self.config.latent_length)
        dist = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    # -- decoder ----------------------------------------------------------------------------------
    def _conditioning(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prefix = self.latent_to_prefix(rearrange(z, "b c l -> b l c"))
        added = self.latent_to_embedding(z.flatten(1))[:, None]
        return prefix, added

    def _decoder_ids(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``[start] words [stop]`` ids, right-padded, and their mask (built here, not by the
        tokenizer's post-processor, so that GPT-2's tokenizer, which adds nothing, works too)."""
        tok = self.decoder_tokenizer
        limit = self.decoder.config.n_positions - self.config.latent_length - 2
        words = tok(list(texts), add_special_tokens=False, truncation=True, max_length=limit).input_ids
        rows = [[start_token_id(tok), *w, stop_token_id(tok)] for w in words]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_token_id(tok), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = True
        return ids.to(self.device), mask.to(self.device)

    def reconstruction_logits(self, z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced next-token logits ``[B, T, V]`` for decoder input ``ids`` ``[B, T]`` given ``z``."""
        prefix, added = self._conditioning(z)
        embeds = torch.cat([prefix, self.decoder.get_input_embeddings()(ids) + added], dim=1)
        logits = self.decoder(inputs_embeds=embeds, use_cache=False).logits
        return logits[:, prefix.shape[1] :]

    @torch.no_grad()
    def decode(self, z: torch.Tensor, max_new_tokens: int | None = None) -> list[str]:
        """Latents ``[B, C, L]`` (unscaled) -> texts, by greedy decoding until the stop token."""
        if z.ndim != 3 or tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(f"expected latents [B, {self.latent_shape[0]}, {self.latent_shape[1]}], got {tuple(z.shape)}")
        tok = self.decoder_tokenizer
        stop, pad = stop_token_id(tok), pad_token_id(tok)
        max_new_tokens = max_new_tokens or self.config.max_new_tokens
        z = z.to(self.device, self.dtype)
        prefix, added = self._conditioning(z)
        embed = self.decoder.get_input_embeddings()
        start = torch.full((z.shape[0], 1), start_token_id(tok), dtype=torch.long, device=self.device)
        out = self.decoder(inputs_embeds=torch.cat([prefix, embed(start) + added], dim=1), use_cache=True)
        cache = _cache_of(out)
        done = torch.zeros(z.shape[0], dtype=torch.bool, device=self.device)
        generated = []
        for _ in range(max_new_tokens):
            nxt = out.logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            generated.append(nxt)
            done |= nxt == stop
            if bool(done.all()):
                break
            out = self.decoder(inputs_embeds=embed(nxt[:, None]) + added, use_cache=True, **{_CACHE_ARG: cache})
            cache = _cache_of(out)
        texts = []
        for row in torch.stack(generated, dim=1).tolist():
            row = row[: row.index(stop)] if stop in row else row
            texts.append(tok.decode(row, skip_special_tokens=True).strip())
        return texts

    # -- training ---------------------------------------------------------------------------------
    def loss(self, texts: Sequence[str], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """ELBO terms on a batch of texts.

        ``rec``: token cross-entropy summed over each text, averaged over the batch (nats/text);
        ``kl``: KL(q(z|x) || N(0, I)) summed over latent dimensions, batch mean (nats/text);
        ``loss`` = ``rec + kl_beta * sum_d max(KL_d, kl_free_bits)`` with ``KL_d`` the batch mean
        of dimension ``d`` (Optimus' thresholded KL).
        """
        if not texts:
            raise ValueError("TextVAE.loss needs at least one text")
        dist = self.encode(texts).latent_dist
        z = dist.sample(generator)
        ids, mask = self._decoder_ids(texts)
        logits = self.reconstruction_logits(z, ids[:, :-1])
        target = ids[:, 1:].masked_fill(~mask[:, 1:], -100)
        ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100, reduction="sum")
        rec = ce / len(texts)
        kl_dims = 0.5 * (dist.mean.pow(2) + dist.var - 1.0 - dist.logvar)  # [B, C, L]
        kl = kl_dims.sum(dim=(1, 2)).mean()
        kl_thresholded = kl_dims.mean(0).clamp(min=self.config.kl_free_bits).sum()
        return {"loss": rec + self.config.kl_beta * kl_thresholded, "rec": rec, "kl": kl}

    def forward(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Same as :meth:`loss`."""
        return self.loss(texts)

    # -- folders ----------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Write ``config.json``, ``diffusion_pytorch_model.safetensors`` and the tokenizer(s).

        Weights go through ``safetensors.torch.save_model``, which handles GPT-2's tied input and
        output embeddings (diffusers' default writer refuses shared tensors).
        """
        if kwargs:
            raise TypeError(f"TextVAE.save_pretrained takes no options, got {sorted(kwargs)}")
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.save_config(folder)
        with atomic_path(folder / WEIGHTS_NAME) as tmp:
            save_model(self, str(tmp), metadata={"format": "pt"})
        self.decoder_tokenizer.save_pretrained(str(folder))
        if self.encoder_tokenizer is not self.decoder_tokenizer:
            self.encoder_tokenizer.save_pretrained(str(folder / ENCODER_TOKENIZER_DIR))

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, torch_dtype: torch.dtype | None = None, **kwargs: Any
    ) -> "TextVAE":
        """Load a folder written by :meth:`save_pretrained` (local folders only; strict), in
        ``torch_dtype`` if given."""
        if kwargs:
            raise TypeError(f"TextVAE.from_pretrained takes only torch_dtype, got {sorted(kwargs)}")
        folder = Path(pretrained_model_name_or_path)
        if not (folder / "config.json").is_file() or not (folder / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{folder} is not a text VAE folder: expected config.json and {WEIGHTS_NAME}")
        config = json.loads((folder / "config.json").read_text())
        decoder_tok = load_tokenizer(folder)
        encoder_dir = folder / ENCODER_TOKENIZER_DIR
        encoder_tok = load_tokenizer(encoder_dir) if has_tokenizer(encoder_dir) else decoder_tok
        # Folders saved before the configs were written out hold ``null`` for "the ToyWorld size";
        # its vocabulary is the one of the tokenizer saved with the weights, not today's default.
        if config.get("encoder_config") is None:
            config["encoder_config"] = toyworld_bert_config(len(encoder_tok))
        if config.get("decoder_config") is None:
            config["decoder_config"] = toyworld_gpt2_config(len(decoder_tok))
        model = cls.from_config(config)
        load_model(model, str(folder / WEIGHTS_NAME), strict=True)
        model.set_tokenizers(encoder_tok, decoder_tok)
        if torch_dtype is not None:
            model.to(torch_dtype)
        return model.eval()

    @classmethod
    def from_bert_gpt2(
        cls,
        bert_path: str | os.PathLike,
        gpt2_path: str | os.PathLike,
        latent_channels: int = 4,
        latent_length: int = 8,
        **config: Any,
    ) -> "TextVAE":
        """A text VAE from pretrained transformers folders (Optimus' recipe: e.g. bert-base-cased
        and gpt2 saved with ``save_pretrained``), each with its tokenizer. The latent projections
        are new and need training; ``config`` sets the other :class:`TextVAE` options."""
        bert = BertModel.from_pretrained(str(bert_path), local_files_only=True)
        gpt2 = GPT2LMHeadModel.from_pretrained(str(gpt2_path), local_files_only=True)
        model = cls(
            encoder_config=bert.config.to_diff_dict(), decoder_config=gpt2.config.to_diff_dict(),
            latent_channels=latent_channels, latent_length=latent_length, **config,
        )
        model.encoder.load_state_dict(bert.state_dict(), strict=True)
        model.decoder.load_state_dict(gpt2.state_dict(), strict=True)
        model.set_tokenizers(load_tokenizer(bert_path), load_tokenizer(gpt2_path))
        return model
