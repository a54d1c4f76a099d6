"""The ToyWorld recipe: every size, step count and learning rate of the shipped weights."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ToyWorldRecipe(BaseModel):
    """Hyper-parameters of ``codi train toyworld``; ``scale`` multiplies every step count."""

    # a misspelt field in a recipe file is an error, not a silently ignored setting
    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    scale: float = Field(1.0, gt=0, description="multiplies every step count (tests use tiny values)")
    n_pairs: dict[str, int] = {"text": 3000, "image": 4000, "video": 1200, "audio": 2000}
    auxiliary_colors: float | dict[str, float] = Field(
        {"text": 0.25, "image": 0.25, "audio": 0.25}, description="share of training items drawn in a training-only colour "
        "(orange, cyan, purple, pink: toyworld.scenes.AUXILIARY_COLORS), in every shape, so that shape is learned apart "
        "from colour; one share for every modality or a share per modality (absent: 0), e.g. {\"text\": 0.25}. "
        "ToyWorld's held-out pairs stay out of the data (ToyWorld's own renderers only). Default: text, image and "
        "audio (on audio's harmonic latent, held-out text -> audio 81.2 -> 86.8 % on 48 scenes; a quarter of video's "
        "items cost seen text -> video; docs/training.md)",
    )
    unnamed_colors: float = Field(
        0.4, ge=0, lt=1, description="stage 1 only: share of each image, video and audio alignment batch drawn in a "
        "colour without a name (any hue and pitch away from ToyWorld's: toyworld.scenes.unnamed_color_scene) and "
        "captioned by shape and motion alone, so that the encoders read shape whatever the colour (ToyWorld's own "
        "renderers only; the denoisers never see these items). Default 0.4; 0: none",
    )
    unnamed_colors_exclusive: list[str] = Field(
        ["audio"], description="stage 1: modalities whose unnamed-colour items are negatives of every caption that names "
        "a colour (they show none of the named colours), not only positives of their colour-less captions. Default "
        "[\"audio\"]: with auxiliary_colors_align, held-out audio -> image 58.3 -> 75.0 % (docs/training.md)",
    )
    unnamed_colors_vae: float | dict[str, float] = Field(
        {"audio": 0.5}, description="share of each batch of the VAE and decoder sub-stages (2-vae-<m>, "
        "2-decoder-<m>: the audio mel inverter) of image, video and audio drawn from the same unnamed-colour "
        "items: they need no caption, and an autoencoder or inverter that only saw ToyWorld's pitch-timbre "
        "pairs cannot reproduce a held-out one. One share for all or a share per modality (absent: 0), "
        "default {\"audio\": 0.5}; 0: none",
    )
    unnamed_colors_unet: float | dict[str, float] = Field(
        0.0, description="share of each batch of the denoiser sub-stages (2-unet-<m>, 2-refine-<m>) of image, video "
        "and audio drawn from the same unnamed-colour items, with their captions (shape, and motion or not; never a "
        "colour), so that a denoiser learns to draw a shape whatever the colour. One share for all or a share per "
        "modality (absent: 0); default 0: none",
    )
    diffuser_options: dict[str, dict[str, Any]] = Field(
        {"text": {"encoder_pooling": "tokens"},
         "audio": {"latent": "harmonic", "pitch_step": 2.0, "f_min": 200.0, "f_max": 700.0}},
        description="per modality: keyword options of its plugin's init_diffuser() for a new diffuser. Default: "
        "{\"text\": {\"encoder_pooling\": \"tokens\"}, \"audio\": {\"latent\": \"harmonic\", \"pitch_step\": 2.0, "
        "\"f_min\": 200.0, \"f_max\": 700.0}}: a latent token per word for text, and for audio pitch, loudness and "
        "harmonics in channels of their own (no VAE or mel inverter to train), the pitch as a bump over 11 bins "
        "2 semitones apart, so that a note the prompt leaves open ends on a note, not between two (docs/training.md); "
        "{\"audio\": {\"latent\": \"mel\"}} is AudioLDM's mel VAE",
    )
    # Stage 1: bridging alignment — text + first encoder together, then each encoder to frozen text.
    bridge_steps: int = 1000
    align_steps: dict[str, int] = {"image": 300, "video": 900, "audio": 400}
    align_batch: dict[str, int] | int = {"image": 64, "video": 32, "audio": 64}
    align_lr: dict[str, float] | float = {"image": 1e-3, "video": 2e-3, "audio": 1e-3}
    align_warm_start: list[str] = Field(
        ["video"], description="modalities whose new encoder starts from the encoders aligned before it (the "
        "bridge's, then in modality order; Encoder.warm_start: video copies the image encoder into its frame "
        "encoder) before its alignment; default [\"video\"]",
    )
    align_frozen: dict[str, list[str]] = Field(
        {"video": ["frames"]}, description="per modality: parts of its encoder (attribute names) kept fixed during "
        "its alignment, e.g. the frame encoder that align_warm_start copied; default {\"video\": [\"frames\"]}: "
        "only the temporal pooler learns, so a video reads colour and shape as the image encoder does",
    )
    # Stage 2: VAE then denoiser, per modality.
    vae_steps: dict[str, int] = {"text": 800, "image": 1000, "video": 0, "audio": 1200}
    vae_batch: dict[str, int] = {"text": 64, "image": 32, "video": 4, "audio": 8}
    vae_lr: float = 1e-3
    vocoder: bool = Field(False, description="also train audio's HiFi-GAN vocoder (else Griffin-Lim decodes)")
    decoder_steps: dict[str, Annotated[int, Field(ge=0)]] = Field(
        {"audio": 800}, description="per modality: steps of sub-stage 2-decoder-<m>, which trains the diffuser's "
        "decoder-side parts on its frozen VAE's reconstructions (audio: the mel inverter in front of Griffin-Lim); "
        "absent or 0: none (audio then inverts the mel with the filterbank's pseudo-inverse). A diffuser without "
        "decoder-side parts (audio's harmonic latent, the default) has no such sub-stage whatever this says",
    )
    decoder_batch: dict[str, int] = {"audio": 16}
    decoder_lr: float = Field(1e-3, gt=0, description="peak learning rate of 2-decoder-<m> (cosine schedule to zero)")
    unet_steps: dict[str, int] = {"text": 3600, "image": 1800, "video": 2800, "audio": 3000}
    unet_batch: dict[str, int] = {"text": 128, "image": 64, "video": 8, "audio": 32}
    unet_lr: float = 1e-3
    p_uncond: float = 0.1
    p_partial: float = 0.3
    context_noise: dict[str, Annotated[float, Field(ge=0)]] = Field(
        {"text": 0.06}, description="per modality: standard deviation of Gaussian noise added to each coordinate of "
        "the denoiser's conditioning context in its sub-stages (2-unet-<m>, 2-refine-<m>), which is then put back on "
        "the unit sphere (CapDec, Nukrai et al. 2022): the denoiser, trained on text embeddings only, learns to "
        "decode the nearby embeddings that the other modalities' encoders give. Default {\"text\": 0.06}: held-out "
        "image / video / audio -> text 86.0 / 88.3 / 76.9 -> 91.0 / 92.1 / 84.9 % (docs/training.md); absent or 0: none",
    )
    unet_high_noise_weight: dict[str, Annotated[float, Field(ge=1)]] = Field(
        {"video": 20.0, "audio": 20.0},
        description="per modality: weight the ε-loss by max(1, min(1/SNR(t), w)) — the x0 error at high "
        "noise, where a video's layout (where the object starts, which way it goes) and a sound's pitch on the "
        "harmonic latent are decided; absent: plain ε-loss",
    )
    unet_high_noise_share: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        {"video": 0.5, "audio": 0.5}, description="per modality: share of each batch whose timesteps come from where that weight is capped"
    )
    unet_refine_steps: dict[str, Annotated[int, Field(ge=0)]] = Field(
        {"text": 1200, "image": 600, "video": 600, "audio": 600},
        description="per modality: steps of the plain ε-loss after the denoiser's main run (sub-stage "
        "2-refine-<m>: a fresh optimiser, by default a learning rate falling to zero). After video's "
        "high-noise-weighted run it trains the low-noise steps that draw edges and corners, which the "
        "weighting starves; for the others it ends the run at a low learning rate. Absent or 0: none",
    )
    unet_refine_lr: float = Field(1e-3, gt=0, description="learning rate of the refine sub-stage")
    unet_refine_lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "linear", description="its schedule (diffusers names; linear and cosine end at zero)"
    )
    # Stage 3: joint generation, per (text, m) pair.
    # audio 3000: the harmonic latent's joint layers at 1000 steps gave image + audio a joint coherence of 62.5 %,
    # at 3000 76-83 % (48 scenes; docs/training.md)
    joint_steps: dict[str, int] = {"image": 1000, "video": 200, "audio": 3000}
    joint_batch: dict[str, int] = {"image": 48, "video": 8, "audio": 24}
    joint_lr: float = 5e-4
    joint_same_t: bool = Field(False, description="stage 3: one timestep for both streams (CoDi) instead of one each")
    joint_pull: float = Field(1.0, ge=0, description="weight pulling environments onto the bridge embedding")
    checkpoint_every: int = 200
    auxiliary_colors_align: dict[str, float] = Field(
        {"audio": 0.25}, description="stage 1 only: per modality, the share of its alignment items in a training-only "
        "colour, instead of its auxiliary_colors share (absent: that share). Default {\"audio\": 0.25}: the audio "
        "encoder learns pitch from every timbre, while audio's VAE and denoiser keep ToyWorld's colours only",
    )
    unnamed_subharmonics: dict[str, float] = Field(
        {"audio": 0.3}, description="stage 1 only: per modality, the share of its unnamed-colour alignment items "
        "pitched at a ToyWorld pitch divided by 2 to 5, with the unnamed pitch range widened down to 95 Hz "
        "(toyworld.scenes.unnamed_color_scene): their harmonics fall on named pitches, so the encoder learns that a "
        "named pitch heard above a lower fundamental is a harmonic, not that colour (a held-out red sawtooth's "
        "second harmonic is yellow's pitch). The VAE and denoiser sub-stages keep the plain unnamed colours. "
        "Default {\"audio\": 0.3}; absent: 0",
    )
    align_partial: dict[str, Annotated[float, Field(ge=0)]] = Field(
        {"audio": 1.0}, description="stage 1, encoders aligned to the frozen text encoder: per modality, the weight "
        "of a second InfoNCE term between the encoder's embeddings and a second caption of each item (odd items "
        "a partial caption such as \"something red moving left\", even items another full caption), positives by "
        "compatible keys: each attribute is then read against captions that name it alone. Default "
        "{\"audio\": 1.0}; absent or 0: none",
    )
    side_lane: list[str] = Field(
        ["image", "video"], description="with `codi train --jobs 2`: modalities whose stage 2 runs in a second "
        "process (in this order), beside the main one that runs the alignments, the other modalities and the joint stages",
    )

    @field_validator("auxiliary_colors", "auxiliary_colors_align", "unnamed_colors_vae", "unnamed_colors_unet", "unnamed_subharmonics")
    @classmethod
    def _share(cls, v: float | dict[str, float]) -> float | dict[str, float]:
        bad = {k: x for k, x in (v.items() if isinstance(v, dict) else [("all", v)]) if not 0 <= x < 1}
        if bad:
            raise ValueError(f"each share must be in [0, 1): {bad}")
        return v

    @field_validator("n_pairs", "align_batch", "vae_batch", "decoder_batch", "unet_batch", "joint_batch")
    @classmethod
    def _positive(cls, v: dict[str, int] | int) -> dict[str, int] | int:
        bad = {k: n for k, n in (v.items() if isinstance(v, dict) else [("all", v)]) if n <= 0}
        if bad:
            raise ValueError(f"must be > 0: {bad}")
        return v

    @staticmethod
    def per(value: dict | int | float, modality: str, default):
        """A per-modality setting: ``value[modality]`` (else ``default``), or ``value`` for all."""
        return value.get(modality, default) if isinstance(value, dict) else value

    def steps(self, table: dict[str, int], modality: str, default: int = 0) -> int:
        n = table.get(modality, default)
        return 0 if n == 0 else max(1, round(n * self.scale))
