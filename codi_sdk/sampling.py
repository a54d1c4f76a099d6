"""The joint sampling loop of CoDi, as one function you can read next to the paper.

At each step every output stream runs its denoiser once on a batch ``[uncond, cond]``
(classifier-free guidance). With joint attention, stream m also attends to the environment
tokens V_n(z_t^n) of the *other* streams n ≠ m at this step (``joint="cross"``, the paper's
design); ``joint="self"`` feeds each stream its own environment, as CoDi's released inference
code does (no cross-modal signal); ``joint=None`` uses no environment at all.
"""

from __future__ import annotations

from typing import Callable, Literal, Mapping

import torch

from .diffuser import Diffuser

JointMode = Literal["cross", "self"] | None
StepCallback = Callable[[int, int, Mapping[str, torch.Tensor]], bool | None]


def joint_sample(
    diffusers: Mapping[str, Diffuser],
    latents: dict[str, torch.Tensor],
    contexts: Mapping[str, torch.Tensor],
    schedulers: Mapping[str, object],
    guidance: float,
    joint: JointMode = "cross",
    callback: StepCallback | None = None,
    progress: Callable | None = None,
) -> dict[str, torch.Tensor]:
    """Denoise ``latents`` (one ``[B, ...]`` tensor per stream) from pure noise to z_0.

    ``contexts[m]`` is ``[2B, K, D]``: the unconditional half first, then the conditional one.
    ``schedulers[m]`` are diffusers schedulers with ``set_timesteps`` already called (one per
    stream, since multistep solvers keep per-stream history). ``callback(i, t, latents)`` runs
    after each step; returning ``False`` stops the loop early.
    """
    names = list(latents)
    timesteps = schedulers[names[0]].timesteps
    steps = progress(timesteps) if progress else timesteps
    for i, t in enumerate(steps):
        envs: dict[str, torch.Tensor] = {}
        if joint is not None and len(names) > 1:
            envs = {m: diffusers[m].environment(latents[m], t) for m in names}
        for m in names:
            z = latents[m]
            if joint == "cross" and envs:
                others = [envs[n] for n in names if n != m]
                env = torch.stack(others).mean(0)  # interpolation in the aligned environment space
            elif joint == "self" and envs:
                env = envs[m]
            else:
                env = None
            z_in = schedulers[m].scale_model_input(torch.cat([z, z]), t)
            env_in = torch.cat([env, env]) if env is not None else None
            eps_uncond, eps_cond = diffusers[m].denoise(z_in, t, contexts[m], env_in).chunk(2)
            eps = eps_uncond + guidance * (eps_cond - eps_uncond)
            latents[m] = schedulers[m].step(eps, t, z).prev_sample
        if callback is not None and callback(i, int(t), latents) is False:
            break
    return latents
