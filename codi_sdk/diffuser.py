"""`Diffuser`: one modality's latent diffusion model — VAE, denoiser, environment encoder.

The composer only talks to this interface, so a modality's internals (a diffusers
``UNet2DConditionModel``, an inflated video UNet, a 1-D text denoiser, ...) stay in its plugin:

* :meth:`encode` / :meth:`decode` — samples <-> *scaled* latents of shape ``latent_shape``;
* :meth:`denoise` — ε(z_t, t, context, env): cross-attends to the prompt ``context`` ``[B, K, D]``
  and, through joint attention, to ``env`` ``[B, Le, De]`` (``None``: no joint attention);
* :meth:`environment` — V(z_t, t): this stream's environment tokens for the *other* streams.

Subclasses set the attributes ``vae``, ``unet``, ``env_encoder`` and ``joint`` (the joint
attention layers) as submodules, so the training stages can freeze and train them by name.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

#: The default noise schedule (Stable Diffusion's and CoDi's): 1000 steps, betas linear in sqrt.
DEFAULT_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


class Diffuser(nn.Module):
    """Base class of a modality's latent diffusion model."""

    modality: ClassVar[str]
    #: Shape of one sample's latent, without the batch axis.
    latent_shape: tuple[int, ...]
    #: Feature size of the environment tokens this diffuser's joint attention accepts.
    env_dim: int
    vae: nn.Module
    unet: nn.Module
    env_encoder: nn.Module
    joint: nn.Module

    @property
    def scheduler_config(self) -> dict[str, Any]:
        """Config for a diffusers scheduler (``DDIMScheduler.from_config(...)``)."""
        return dict(DEFAULT_SCHEDULER_CONFIG)

    def collate(self, samples: list[Any]) -> Any:
        """Batch canonical samples for :meth:`encode` (default: ``torch.stack``)."""
        return torch.stack([torch.as_tensor(s) for s in samples])

    def encode(self, batch: Any) -> torch.Tensor:  # pragma: no cover - abstract
        """A batch of samples -> scaled latents ``[B, *latent_shape]``."""
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> list[Any]:  # pragma: no cover - abstract
        """Scaled latents -> a list of canonical samples."""
        raise NotImplementedError

    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor, env: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover
        """Predict the noise in ``z_t`` at timestep ``t`` given the prompt ``context`` and ``env``."""
        raise NotImplementedError

    def sample_noise(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
        """Gaussian noise of ``shape`` ``[B, *latent_shape]`` (float32, on the generator's device):
        the start of sampling and the noise of training. Default: i.i.d. ``torch.randn``; a
        modality may correlate it (video: shared across frames), and then trains with it too."""
        return torch.randn(shape, generator=generator, dtype=torch.float32)

    @property
    def latent_scale(self) -> float:
        """The factor :meth:`encode` multiplies VAE latents by (``vae.config.scaling_factor``)."""
        return float(self.vae.config.scaling_factor)

    def set_latent_scale(self, scale: float) -> None:
        """Set :attr:`latent_scale`; training sets it so that latents have unit variance."""
        self.vae.register_to_config(scaling_factor=float(scale))

    def warm_start(self, trained: "dict[str, Diffuser]") -> set[str]:
        """Initialise parts of this (untrained) diffuser from already trained diffusers of other
        modalities, e.g. a video diffuser from the image one. Returns the names of the components
        it initialised and that need no training of their own (``{"vae"}``), default none."""
        return set()

    def vae_loss(self, batch: Any) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        """Training loss of the VAE (and any decoder-side part, e.g. a vocoder) on a batch.

        Returns a dict whose ``"loss"`` entry is minimised; other entries are logged.
        """
        raise NotImplementedError

    def decoder_parts(self) -> dict[str, nn.Module]:
        """Decoder-side components trained *after* the VAE, on its reconstructions (sub-stage
        ``2-decoder-<m>``; e.g. audio's mel inverter), by attribute name. Default: none."""
        return {}

    def decoder_features(self, latents: torch.Tensor) -> Any:
        """What :meth:`decoder_parts` read at decoding time, computed from ``latents`` by the frozen
        VAE (the trainer computes them once per sub-stage)."""
        raise NotImplementedError(f"{type(self).__name__} has no decoder parts")

    def decoder_loss(self, batch: Any, features: Any) -> dict[str, torch.Tensor]:
        """Training loss of :meth:`decoder_parts` on a batch of samples and their :meth:`decoder_features`."""
        raise NotImplementedError(f"{type(self).__name__} has no decoder parts")

    def latent_tokens(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """A latent batch as a token sequence ``[B, N, C]`` for the environment encoder."""
        raise NotImplementedError

    def environment(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """V(z_t, t): environment tokens ``[B, Le, De]`` describing this stream for the others."""
        return self.env_encoder(self.latent_tokens(z_t), t)

    def save_pretrained(self, path) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, path) -> "Diffuser":  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype
