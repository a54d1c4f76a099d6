"""The text modality on converted official CoDi weights: :class:`OfficialTextDiffuser` and
:class:`OfficialTextEncoder`, built from a folder written by ``codi convert-official``.

``TextModality.load_diffuser`` / ``load_encoder`` return these when given a converted root (or its
``text/`` sub-folder). Text is generated as the official inference code does: the "0-D" text UNet
denoises a 768-d Optimus latent (scaled by 4.3108), and Optimus' GPT-2 decoder samples at most 30
tokens from ``latent / 4.3108`` (temperature 1); repeated adjacent words and phrases are merged.
The prompt encoder — the bridge — is CLIP ViT-L/14's text tower (one unit 768-d token).

Tokenizers are not part of the checkpoints (see ``docs/official.md``): save them into the converted
folder before use —

* CLIP's (``openai/clip-vit-large-patch14``) in ``text/encoder/`` (or ``text/tokenizer/``);
* GPT-2's with ``<PAD>``, ``<BOS>``, ``<EOS>`` added, in ``text/vae/decoder/``;
* BERT cased (``bert-base-cased``) in ``text/vae/encoder/`` — only to encode text into a latent.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from codi_sdk.encoder import Encoder, EncoderOutput
from codi_sdk.errors import WeightsNotFoundError
from codi_sdk.official.diffuser import OfficialDiffuser
from codi_sdk.official.folder import OfficialFolder

from .encoder import collate_texts
from .official import load_official_component
from .tokenizer import has_tokenizer, load_tokenizer

#: Optimus decoding of the official inference code: at most 30 tokens, temperature 1.
MAX_DECODE_TOKENS = 30


def load_part(folder: OfficialFolder, name: str, dtype: torch.dtype | None = None) -> nn.Module:
    """Component ``name`` of ``folder`` in eval mode (a clear error if it was not converted)."""
    folder.require(name)
    return load_official_component(folder.root, f"{folder.modality}/{name}", dtype=dtype).eval()


def find_tokenizer(candidates: Sequence[Path], what: str):
    """Load the first saved tokenizer among ``candidates``; a clear error naming them otherwise."""
    for folder in candidates:
        if has_tokenizer(folder):
            return load_tokenizer(folder)
    raise WeightsNotFoundError(
        f"no {what} tokenizer: the official checkpoints do not hold tokenizers; save one into "
        f"{candidates[0]} (looked in {', '.join(map(str, candidates))}; see docs/official.md)"
    )


def merge_repeats(text: str) -> str:
    """Drop immediately repeated words and phrases (``"a a dog dog barks a dog barks"`` ->
    ``"a dog barks"``), as the official inference code cleans Optimus' samples."""
    words = text.split()
    changed = True
    while changed:
        changed = False
        for n in range(1, len(words) // 2 + 1):
            for i in range(len(words) - 2 * n + 1):
                if words[i : i + n] == words[i + n : i + 2 * n]:
                    del words[i + n : i + 2 * n]
                    changed = True
                    break
            if changed:
                break
    return " ".join(words)


class OptimusVAE(nn.Module):
    """Optimus' text VAE: the GPT-2 ``decoder`` (latent -> text) and, loaded on first use, the BERT
    ``encoder`` (text -> latent), with their tokenizers."""

    def __init__(self, decoder: nn.Module, decoder_tokenizer, encoder_folder: Path | None = None):
        super().__init__()
        self.decoder = decoder
        self.decoder_tokenizer = decoder_tokenizer
        self.encoder: nn.Module | None = None
        self.encoder_tokenizer = None
        self._encoder_folder = encoder_folder

    def load_encoder(self) -> nn.Module:
        """The BERT encoder, loaded from ``text/vae/encoder`` on first call (109.5 M parameters)."""
        if self.encoder is None:
            if self._encoder_folder is None or not (self._encoder_folder / "config.json").is_file():
                raise WeightsNotFoundError("encoding text into a latent needs the text/vae/encoder folder of the converted weights")
            from .official import OptimusBertEncoder

            ref = self.decoder.transformer.wte.weight
            self.encoder_tokenizer = find_tokenizer([self._encoder_folder, self._encoder_folder / "tokenizer"], "BERT (Optimus encoder)")
            self.encoder = OptimusBertEncoder.from_pretrained(str(self._encoder_folder), local_files_only=True).to(ref.device, ref.dtype).eval()
        return self.encoder


class OfficialTextDiffuser(OfficialDiffuser):
    """Official CoDi text diffusion: Optimus VAE + the "0-D" text UNet (+ environment, joint).

    Latents are ``[B, 768]`` (scaled by 4.3108); ``decode`` returns strings. Sampling the decoder
    uses a generator seeded from each latent's bytes, so one latent always gives one text.
    """

    modality = "text"

    def __init__(
        self,
        vae: OptimusVAE,
        unet: nn.Module,
        env_encoder: nn.Module | None = None,
        joint: nn.Module | None = None,
        *,
        scale_factor: float = 4.3108,
        scheduler_config: dict[str, Any] | None = None,
        max_decode_tokens: int = MAX_DECODE_TOKENS,
        temperature: float = 1.0,
    ):
        from codi_sdk.official.profile import SCHEDULER_CONFIG

        super().__init__(
            latent_shape=(unet.config.in_channels,),
            scale_factor=scale_factor,
            scheduler_config=scheduler_config or SCHEDULER_CONFIG,
            context_dim=unet.config.context_dim,
            env_dim=joint.config.env_dim if joint is not None else None,
        )
        self.vae = vae
        self.unet = unet
        self.env_encoder = env_encoder
        self.joint = joint
        self.max_decode_tokens = int(max_decode_tokens)
        self.temperature = float(temperature)

    @classmethod
    def from_official(cls, folder: OfficialFolder, dtype: torch.dtype | None = None) -> "OfficialTextDiffuser":
        """Load from a converted root's ``text/`` folders (``vae/decoder`` + its GPT-2 tokenizer,
        ``unet``; ``env_encoder`` and ``joint`` when present; ``vae/encoder`` on first ``encode``)."""
        decoder_dir = folder.require("vae/decoder")
        decoder = load_part(folder, "vae/decoder", dtype)
        tokenizer = find_tokenizer([decoder_dir, decoder_dir / "tokenizer"], "GPT-2 (Optimus decoder)")
        decode = folder.info.get("decode") or {}
        return cls(
            OptimusVAE(decoder, tokenizer, folder.component("vae/encoder")),
            load_part(folder, "unet", dtype),
            load_part(folder, "env_encoder", dtype) if folder.has("env_encoder") else None,
            load_part(folder, "joint", dtype) if folder.has("joint") else None,
            scale_factor=folder.info["scale_factor"],
            scheduler_config=folder.scheduler_config,
            max_decode_tokens=decode.get("max_length", MAX_DECODE_TOKENS),
            temperature=decode.get("temperature", 1.0),
        ).eval()

    def time_embedding(self, t, batch: int) -> torch.Tensor:
        return self.unet.time_embed(t, batch, self.dtype, self.device)

    def denoise(self, z_t: torch.Tensor, t, context: torch.Tensor, env: torch.Tensor | None = None) -> torch.Tensor:
        self._check(context, env)
        out = self.unet(z_t.to(self.dtype), t, context.to(self.dtype), env=env, joint=self.joint if env is not None else None)
        return out.to(z_t.dtype)

    def collate(self, samples: list[Any]) -> list[str]:
        return collate_texts(samples, "OfficialTextDiffuser")

    def encode(self, batch: Sequence[str]) -> torch.Tensor:
        """Texts -> scaled latents ``[B, 768]``: lower-cased, BERT-tokenised, Optimus posterior mean × 4.3108."""
        encoder = self.vae.load_encoder()
        tok = self.vae.encoder_tokenizer
        enc = tok([t.lower() for t in batch], padding=True, truncation=True, max_length=512, return_tensors="pt").to(self.device)
        return encoder.latent_mean(enc.input_ids, enc.attention_mask) * self.latent_scale

    def decode(self, latents: torch.Tensor) -> list[str]:
        """Scaled latents ``[B, 768]`` -> texts, sampled as upstream (deterministic per latent)."""
        decoder, tok = self.vae.decoder, self.vae.decoder_tokenizer
        texts = []
        for z in latents:
            z = z.to(self.dtype)[None]
            gen = torch.Generator(device=z.device)
            gen.manual_seed(zlib.crc32(z.detach().float().cpu().numpy().tobytes()))
            ids = decoder.generate_from_latent(
                z / self.latent_scale, max_length=self.max_decode_tokens, temperature=self.temperature, generator=gen
            )[0]
            texts.append(merge_repeats(tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)))
        return texts


class OfficialTextEncoder(Encoder):
    """CoDi's text prompt encoder (the bridge): CLIP ViT-L/14 text tower + projection, L2-normalised.

    ``forward(texts)`` -> ``EncoderOutput(tokens [B, 1, 768], pooled [B, 768])``; texts are padded to
    77 tokens as upstream.
    """

    modality = "text"

    def __init__(self, model: nn.Module, tokenizer):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def from_official(cls, folder: OfficialFolder, dtype: torch.dtype | None = None) -> "OfficialTextEncoder":
        """Load ``<root>/text/encoder`` (CoDiCLIPTextEncoder) and CLIP's tokenizer saved beside it."""
        enc_dir = folder.require("encoder")
        tokenizer = find_tokenizer([enc_dir, enc_dir / "tokenizer", folder.component("tokenizer")], "CLIP")
        return cls(load_part(folder, "encoder", dtype), tokenizer).eval()

    def collate(self, samples) -> list[str]:
        return collate_texts(samples, "OfficialTextEncoder")

    def forward(self, batch: Sequence[str]) -> EncoderOutput:
        length = self.model.config.max_position_embeddings
        ids = self.tokenizer(
            list(batch), padding="max_length", max_length=length, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)
        pooled = self.model.embed(ids)
        return EncoderOutput(tokens=pooled[:, None, :], pooled=pooled)
