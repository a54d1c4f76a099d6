"""`OfficialDiffuser`: the base of the diffusers that run converted official CoDi weights.

The plugins subclass it once per modality (``codi_image.official_diffuser`` and so on); this class
holds what they share: the official schedule and latent scale factor read from the converted
folder, the environment V(z_t, t) computed from the stream's own UNet time embedding (as upstream's
``connecters_out``), and clear errors for what the official weights do not support here
(training, writing them back). The composer's joint wiring needs nothing special: every official
environment is one L2-normalised token ``[B, 1, 1280]``, so ``joint="cross"`` (the mean of the
other streams' tokens — for two streams exactly the other stream's token) and ``joint="self"``
(the stream's own token, as the released inference code) both pass one ``env`` tensor.
"""

from __future__ import annotations

from typing import Any

import torch

from ..diffuser import Diffuser
from ..errors import CodiError, InvalidInputError


class OfficialDiffuser(Diffuser):
    """Shared behaviour of the official image, video, audio and text diffusers.

    Subclasses set ``vae``, ``unet``, ``env_encoder`` and ``joint`` (the last two may be ``None``
    when their folders were not converted: single-stream generation still works) and implement
    :meth:`time_embedding`, :meth:`encode`, :meth:`decode` and :meth:`denoise`.
    """

    def __init__(
        self,
        *,
        latent_shape: tuple[int, ...],
        scale_factor: float,
        scheduler_config: dict[str, Any],
        context_dim: int,
        env_dim: int | None,
    ):
        super().__init__()
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self._latent_scale = float(scale_factor)
        self._scheduler_config = dict(scheduler_config)
        self.context_dim = int(context_dim)
        self.env_dim = int(env_dim) if env_dim is not None else 0

    # -- schedule and scale -----------------------------------------------------------------
    @property
    def scheduler_config(self) -> dict[str, Any]:
        """The official schedule: 1000 steps, betas linear in √β from 0.00085 to 0.012, ε."""
        return dict(self._scheduler_config)

    @property
    def latent_scale(self) -> float:
        """The official latent scale factor (vision 0.18215, audio 0.9228, text 4.3108)."""
        return self._latent_scale

    def set_latent_scale(self, scale: float) -> None:
        self._latent_scale = float(scale)

    # -- joint attention ----------------------------------------------------------------------
    def time_embedding(self, t: torch.Tensor | int, batch: int) -> torch.Tensor:  # pragma: no cover - abstract
        """The UNet's time embedding ``[batch, 4 * model_channels]`` (the environment encoder's input)."""
        raise NotImplementedError

    def environment(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """V(z_t, t): this stream's environment token ``[B, 1, env_dim]`` (unit norm)."""
        if self.env_encoder is None or self.joint is None:
            raise CodiError(
                f"joint generation with {self.modality!r} needs its env_encoder/ and joint/ folders, which this "
                f"converted folder lacks; convert them too, or generate the outputs separately (joint=False)"
            )
        z = z_t.to(self.dtype)
        return self.env_encoder(z, self.time_embedding(t, z.shape[0]))

    def _check(self, context: torch.Tensor, env: torch.Tensor | None) -> None:
        if context.shape[-1] != self.context_dim:
            raise InvalidInputError(
                f"the official {self.modality} denoiser takes {self.context_dim}-d prompt contexts, got {context.shape[-1]}-d: "
                f"load the prompt encoders from the same converted folder (e.g. Composer(weights={{'text': DIR, "
                f"{self.modality!r}: DIR}}) or `codi generate --weights-dir text=DIR --weights-dir {self.modality}=DIR`)"
            )
        if env is not None:
            if self.joint is None:
                raise CodiError(f"an environment was given but the {self.modality} folder has no joint/ layers")
            if env.shape[-1] != self.env_dim:
                raise InvalidInputError(f"the official {self.modality} joint layers take {self.env_dim}-d environments, got {env.shape[-1]}-d")

    # -- what the official weights do not support here ---------------------------------------------
    def latent_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """Not used: the official environment encoders read the latent itself (see :meth:`environment`)."""
        raise NotImplementedError("official CoDi environment encoders read the latent directly; use environment(z_t, t)")

    def vae_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        raise CodiError("training the official CoDi weights is not supported; they are loaded for generation only")

    def save_pretrained(self, path) -> None:
        raise CodiError("official CoDi folders are written by `codi convert-official`, not by save_pretrained")


class OfficialUNet2DDiffuser(OfficialDiffuser):
    """An official diffuser whose denoiser is a ``UNet2DConditionModel`` run by
    :func:`~codi_sdk.official.unet.unet2d_forward` (the image and audio diffusers)."""

    def time_embedding(self, t, batch: int) -> torch.Tensor:
        from .unet import time_embedding

        return time_embedding(self.unet, t, batch, self.dtype, self.device)

    def denoise(self, z_t: torch.Tensor, t, context: torch.Tensor, env: torch.Tensor | None = None) -> torch.Tensor:
        from .unet import unet2d_forward

        self._check(context, env)
        out = unet2d_forward(
            self.unet, z_t.to(self.dtype), t, context.to(self.dtype), env=env, joint=self.joint if env is not None else None
        )
        return out.to(z_t.dtype)
