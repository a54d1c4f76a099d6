"""The training objectives of the three stages, each an ``nn.Module`` whose ``forward`` is the loss.

Wrapping the trainable parts in one module per objective lets ``accelerate`` prepare it once
(DDP syncs gradients through ``forward``) and keeps each loss readable on one screen.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..bridge import LogitScale
from ..diffuser import DEFAULT_SCHEDULER_CONFIG, Diffuser
from ..encoder import Encoder


def multi_positive_info_nce(a: torch.Tensor, b: torch.Tensor, positives: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where row i of ``a`` may match several rows of ``b``.

    ``positives[i, j]`` is True when a_i and b_j describe the same thing (the diagonal always is).
    With a diagonal-only mask this is CLIP's loss. Several renderings of one ToyWorld scene in a
    batch are thus not pushed apart as false negatives.
    """
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = a @ b.t() * logit_scale.clamp(max=math.log(100.0)).exp()
    pos = positives.clone()
    if pos.shape[0] == pos.shape[1]:
        pos |= torch.eye(pos.shape[0], dtype=torch.bool, device=pos.device)  # a pair always matches itself
    pos = pos.float()
    loss_ab = -(torch.logsumexp(logits.masked_fill(pos == 0, -1e4), 1) - torch.logsumexp(logits, 1))
    loss_ba = -(torch.logsumexp(logits.t().masked_fill(pos.t() == 0, -1e4), 1) - torch.logsumexp(logits.t(), 1))
    return 0.5 * (loss_ab.mean() + loss_ba.mean())


def compatible(key_a, key_b) -> bool:
    """True when no attribute named by both keys has different values.

    A key is ``((attr, value), ...)``: what a caption states or a sample shows. Two full keys are
    compatible when equal; a partial caption ("a red thing") is compatible with every full caption
    of a red scene; an image (no motion) with the captions of its colour and shape in any motion.
    """
    b = dict(key_b)
    return all(b.get(a, v) == v for a, v in key_a)


def positives_from_keys(keys_a: list, keys_b: list, device=None) -> torch.Tensor:
    """``[len(a), len(b)]`` mask of :func:`compatible` keys: the pairs InfoNCE must not push apart.

    Contrasting a partial description only with incompatible ones puts its embedding at the
    centroid of what it allows, which is what a condition like "a red thing" should mean.
    """
    return torch.tensor([[compatible(ka, kb) for kb in keys_b] for ka in keys_a], dtype=torch.bool, device=device)


class AlignmentLoss(nn.Module):
    """Stage 1: contrastive alignment of an encoder to the text (bridge) encoder.

    If ``train_text`` the text encoder learns too (the first pair, text–image, and text–text
    paraphrases); otherwise it is frozen and only ``encoder`` moves (bridging alignment), and
    ``partial`` > 0 adds that weight of a second InfoNCE between the encoder's embeddings and the
    items' second captions (``paraphrases``: partial ones such as "something red moving left", or
    other full ones), so that each attribute is also read against captions naming it alone.

    ``pull`` weights a second term, ``1 - cos(C_m(x), C_text(caption))`` with the text side
    detached: InfoNCE alone only orders similarities and leaves a *modality gap* (image embeddings
    in another region of the sphere than text ones), which a denoiser trained on text embeddings
    cannot read. Pulling each embedding onto its caption's closes the gap, so any encoder's output
    is an in-distribution condition.
    """

    def __init__(self, text_encoder: Encoder, encoder: Encoder | None, train_text: bool, pull: float = 1.0, partial: float = 0.0):
        super().__init__()
        if partial and (train_text or encoder is None):
            raise ValueError("partial weights an encoder's term against a frozen text encoder's second captions: "
                             "it needs an encoder and train_text=False")
        self.text_encoder = text_encoder
        self.encoder = encoder
        self.train_text = train_text
        self.pull = pull
        self.partial = partial
        self.logit_scale = LogitScale()
        self.text_encoder.requires_grad_(train_text)

    def forward(self, captions, keys, samples=None, sample_keys=None, paraphrases=None, paraphrase_keys=None):
        """``keys`` say what each caption states, ``sample_keys`` what each sample shows (default:
        ``keys``), ``paraphrase_keys`` what each paraphrase states; compatible keys are positives."""
        logs = {}
        with torch.set_grad_enabled(self.train_text):
            text = self.text_encoder(list(captions)).pooled
        loss = text.new_zeros(())
        if self.encoder is not None:
            emb = self.encoder(samples).pooled
            pos = positives_from_keys(keys if sample_keys is None else sample_keys, keys, text.device)
            logs["nce"] = multi_positive_info_nce(emb, text, pos, self.logit_scale())
            logs["gap"] = 1 - F.cosine_similarity(emb, text.detach(), dim=-1).mean()
            loss = loss + logs["nce"] + self.pull * logs["gap"]
        if paraphrases is not None and self.train_text:
            para = self.text_encoder(list(paraphrases)).pooled
            pos = positives_from_keys(keys, paraphrase_keys, text.device)
            logs["para"] = multi_positive_info_nce(text, para, pos, self.logit_scale())
            loss = loss + logs["para"]
        elif paraphrases is not None and self.partial:
            with torch.no_grad():
                para = self.text_encoder(list(paraphrases)).pooled
            pos = positives_from_keys(keys if sample_keys is None else sample_keys, paraphrase_keys, text.device)
            logs["part"] = multi_positive_info_nce(emb, para, pos, self.logit_scale())
            loss = loss + self.partial * logs["part"]
        logs["loss"] = loss
        return logs


def _noise_like(diffuser, latents: torch.Tensor) -> torch.Tensor:
    """Training noise for ``latents`` from the diffuser's own noise prior (``Diffuser.sample_noise``)."""
    sample = getattr(diffuser, "sample_noise", None)
    if sample is None:
        return torch.randn_like(latents)
    return sample(tuple(latents.shape)).to(latents.device, latents.dtype)


class DiffusionLoss(nn.Module):
    """Stage 2b: ε-prediction loss of one denoiser on precomputed latents and contexts.

    Condition dropout (``uncond`` replaces the context with probability ``p_uncond``) trains the
    unconditional model that classifier-free guidance needs.

    ``high_noise_weight`` (> 1) weights each sample's ε-loss by ``max(1, min(1/SNR(t), w))``: the
    plain ε-loss at low noise, the x0 error (ε-error / SNR) at high noise, capped at ``w``. The
    plain ε-loss weights an x0 error by SNR(t), so it barely trains what is decided at high noise:
    the layout. Motivation, on the ToyWorld video denoiser: its x0 estimates got the motion right
    at t ≤ 700 but no better than chance at t ≥ 850 (see the training guide for what fixed it).
    ``high_noise_share`` of each batch draws its timesteps from where the weight is capped
    (1/SNR ≥ ``high_noise_weight``) rather than from all of them.
    """

    def __init__(
        self,
        diffuser: Diffuser,
        uncond: torch.Tensor,
        p_uncond: float = 0.1,
        high_noise_weight: float = 1.0,
        high_noise_share: float = 0.0,
    ):
        super().__init__()
        from diffusers import DDPMScheduler

        if high_noise_weight < 1:
            raise ValueError(f"high_noise_weight must be >= 1 (1: the plain ε-loss), got {high_noise_weight}")
        self.diffuser = diffuser
        self.register_buffer("uncond", uncond.detach().clone(), persistent=False)
        self.p_uncond = p_uncond
        self.noise = DDPMScheduler.from_config(DEFAULT_SCHEDULER_CONFIG)
        abar = self.noise.alphas_cumprod.float()
        weight = ((1 - abar) / abar).clamp(1.0, float(high_noise_weight))  # max(1, min(1/SNR, w))
        self.register_buffer("t_weight", weight, persistent=False)
        if not 0 <= high_noise_share <= 1:
            raise ValueError(f"high_noise_share must be in [0, 1], got {high_noise_share}")
        self.high_noise_share = high_noise_share
        capped = torch.nonzero((1 - abar) / abar >= high_noise_weight).flatten()
        self.t_high = int(capped[0]) if len(capped) else len(abar) - 1  # first t at the cap (else the last)

    def forward(self, latents: torch.Tensor, contexts: torch.Tensor):
        b = latents.shape[0]
        drop = torch.rand(b, device=latents.device) < self.p_uncond
        ctx = torch.where(drop[:, None, None], self.uncond.expand_as(contexts), contexts)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (b,), device=latents.device)
        if self.high_noise_share > 0:
            high = torch.rand(b, device=latents.device) < self.high_noise_share
            t = torch.where(high, torch.randint_like(t, self.t_high, self.noise.config.num_train_timesteps), t)
        noise = _noise_like(self.diffuser, latents)
        z_t = self.noise.add_noise(latents, noise, t)
        err = (self.diffuser.denoise(z_t, t, ctx).float() - noise.float()).pow(2).flatten(1).mean(dim=1)
        return {"loss": (self.t_weight.to(err.device)[t] * err).mean()}


class VAELoss(nn.Module):
    """Stage 2a: the modality's own VAE objective (``Diffuser.vae_loss``)."""

    def __init__(self, diffuser: Diffuser):
        super().__init__()
        self.diffuser = diffuser

    def forward(self, batch):
        return self.diffuser.vae_loss(batch)


class DecoderLoss(nn.Module):
    """Stage 2, after the VAE: the modality's decoder-side parts (``Diffuser.decoder_loss``)."""

    def __init__(self, diffuser: Diffuser):
        super().__init__()
        self.diffuser = diffuser

    def forward(self, batch, features):
        return self.diffuser.decoder_loss(batch, features)


class JointLoss(nn.Module):
    """Stage 3: two streams (text and m) denoised together, each attending to the other's
    environment, plus a contrastive loss that aligns the two environment encodings.

    The denoisers are frozen; only the environment encoders and the joint-attention layers learn
    (only the other stream's, with ``train_text=False``: a new modality joining a trained bridge).

    ``targets`` (the bridge embeddings of the full captions, ``[B, D]``) add ``pull`` times
    ``1 - cos(env token, target)`` for every environment token of both streams (weighted by ᾱ_t): each environment
    encoder learns to say, from its noisy latent, where its scene lies in the *shared* conditioning
    space. Since every modality's environment is pulled into that one space through text, an image
    stream that learned to read the text stream's environment can read an audio stream's (the two
    never met in training): this is what makes outputs generated together agree.
    """

    def __init__(self, text: Diffuser, other: Diffuser, contrastive_weight: float = 0.1, train_text: bool = True, pull: float = 1.0, same_t: bool = False):
        super().__init__()
        self.pull = pull
        self.same_t = same_t
        self.train_text = train_text
        from diffusers import DDPMScheduler

        self.text, self.other = text, other
        self.logit_scale = LogitScale()
        self.contrastive_weight = contrastive_weight
        self.noise = DDPMScheduler.from_config(DEFAULT_SCHEDULER_CONFIG)
        for d in (text, other) if train_text else (other,):
            d.requires_grad_(False)
            d.env_encoder.requires_grad_(True)
            d.joint.requires_grad_(True)
        if not train_text:  # a new modality learns against the frozen bridge's environment
            text.requires_grad_(False)

    def _pull(self, env: torch.Tensor, target: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``1 - cos(env token, target)`` averaged with weights ᾱ_t: a latent says little about its
        scene at high noise, and asking it to there drowns the cases where it can."""
        w = self.noise.alphas_cumprod.to(env.device, env.dtype)[t]
        per_item = (1 - F.cosine_similarity(env, target.expand_as(env), dim=-1)).mean(1)
        return (per_item * w).sum() / w.sum().clamp_min(1e-8)

    def forward(self, text_latents, other_latents, contexts, keys, targets=None):
        b = text_latents.shape[0]
        t = torch.randint(0, self.noise.config.num_train_timesteps, (b,), device=text_latents.device)
        # each stream at its own noise level (unless ``same_t``): an environment is informative
        # only where its stream is fairly clean, and the other stream needs it most where it is
        # noisy; with one shared t the two rarely coincide and joint attention learns little.
        t_other = t if self.same_t else torch.randint(0, self.noise.config.num_train_timesteps, (b,), device=t.device)
        n_text, n_other = _noise_like(self.text, text_latents), _noise_like(self.other, other_latents)
        zt_text = self.noise.add_noise(text_latents, n_text, t)
        zt_other = self.noise.add_noise(other_latents, n_other, t_other)
        env_text = self.text.environment(zt_text, t)
        env_other = self.other.environment(zt_other, t_other)
        l_text = F.mse_loss(self.text.denoise(zt_text, t, contexts, env_other), n_text)
        l_other = F.mse_loss(self.other.denoise(zt_other, t_other, contexts, env_text), n_other)
        pos = positives_from_keys(keys, keys, text_latents.device)
        l_env = multi_positive_info_nce(env_text.mean(1), env_other.mean(1), pos, self.logit_scale())
        loss = l_text + l_other + self.contrastive_weight * l_env
        logs = {"loss": loss, "text": l_text, "other": l_other, "env": l_env}
        if targets is not None and self.pull:
            target = F.normalize(targets, dim=-1)[:, None, :]
            streams = [(env_other, t_other)] + ([(env_text, t)] if self.train_text else [])
            logs["pull"] = sum(self._pull(e, target, tt) for e, tt in streams)
            logs["loss"] = loss + self.pull * logs["pull"]
        return logs
