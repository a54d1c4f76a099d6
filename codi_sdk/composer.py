"""`compose(inputs, outputs)`: any-to-any generation with composable conditioning.

```python
from codi_sdk import compose

result = compose({"text": "a red circle moving left"}, ["image", "audio"], seed=0)
result["image"][0].save("out/image.png")
```

A :class:`Composer` keeps loaded encoders and diffusers between calls (like a diffusers
pipeline) and moves them with :meth:`Composer.to`. Everything a call needs is validated before
any sampling starts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import torch

from .bridge import Bridge
from .diffuser import Diffuser
from .encoder import Encoder
from .errors import CodiError, InvalidInputError
from .outputs import Output
from .registry import Registry, get_registry
from .sampling import DEFAULT_ENVIRONMENT_GUIDANCE, ENVIRONMENT_SOURCES, EnvironmentSource, JointMode, StepCallback, joint_sample

SCHEDULERS = ("ddim", "dpm++")

Inputs = Mapping[str, Any] | Sequence[tuple[str, Any]]


@dataclass
class ComposeResult(Mapping[str, list[Output]]):
    """Outputs by modality: ``result["image"]`` is a list of ``num_samples`` outputs.

    ``samples`` holds the canonical samples (tensors / strings) and ``latents`` the final latents.
    """

    outputs: dict[str, list[Output]]
    samples: dict[str, list[Any]] = field(repr=False, default_factory=dict)
    latents: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)

    def __getitem__(self, key: str) -> list[Output]:
        return self.outputs[key]

    def __iter__(self):
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

    def save(self, folder: str | os.PathLike, extensions: Mapping[str, str] | None = None) -> list[str]:
        """Save every output as ``folder/<modality>.<ext>`` (``<modality>_<i>`` for several samples)."""
        from pathlib import Path

        default = {"image": ".png", "video": ".gif", "audio": ".wav", "text": ".txt"}
        default.update(extensions or {})
        written = []
        for m, outs in self.outputs.items():
            ext = default.get(m, ".npy")
            for i, out in enumerate(outs):
                stem = m if len(outs) == 1 else f"{m}_{i}"
                written.append(str(out.save(Path(folder) / f"{stem}{ext}")))
        return written


class Composer:
    """A reusable any-to-any pipeline over the installed modality plugins.

    Args:
        registry: the modality registry (default: the installed plugins).
        weights: per-modality weights folders (default: each plugin's shipped weights).
        device: where the models run (default CPU), as in diffusers.
        dtype: the models' dtype (default float32).
    """

    def __init__(
        self,
        registry: Registry | None = None,
        weights: Mapping[str, str | os.PathLike] | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.registry = registry or get_registry()
        self.weights = dict(weights or {})
        self.device = torch.device(device)
        self.dtype = dtype
        self._encoders: dict[str, Encoder] = {}
        self._diffusers: dict[str, Diffuser] = {}

    # -- components ---------------------------------------------------------------------------------
    def set_components(self, modality: str, encoder: Encoder | None = None, diffuser: Diffuser | None = None) -> "Composer":
        """Use already-built components for ``modality`` (e.g. freshly trained ones)."""
        self.registry.get(modality)
        if encoder is not None:
            self._encoders[modality] = encoder.to(self.device, self.dtype).eval()
        if diffuser is not None:
            self._diffusers[modality] = diffuser.to(self.device, self.dtype).eval()
        return self

    def encoder(self, modality: str) -> Encoder:
        """The prompt encoder of ``modality``, loaded on first use."""
        if modality not in self._encoders:
            m = self.registry.get(modality)
            try:
                enc = m.load_encoder(self.weights.get(modality))
            except CodiError:
                raise
            except Exception as exc:
                raise CodiError(f"cannot load the {modality} prompt encoder: {type(exc).__name__}: {exc}") from exc
            self._encoders[modality] = enc.to(self.device, self.dtype).eval()
        return self._encoders[modality]

    def diffuser(self, modality: str) -> Diffuser:
        """The diffuser of ``modality``, loaded on first use."""
        if modality not in self._diffusers:
            m = self.registry.get(modality)
            try:
                diff = m.load_diffuser(self.weights.get(modality))
            except CodiError:
                raise
            except Exception as exc:
                raise CodiError(f"cannot generate {modality!r}: its diffuser did not load: {type(exc).__name__}: {exc}") from exc
            self._diffusers[modality] = diff.to(self.device, self.dtype).eval()
        return self._diffusers[modality]

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "Composer":
        """Move every loaded (and later loaded) component, like ``DiffusionPipeline.to``."""
        if device is not None:
            self.device = torch.device(device)
        if dtype is not None:
            self.dtype = dtype
        for module in [*self._encoders.values(), *self._diffusers.values()]:
            module.to(self.device, self.dtype)
        return self

    # -- conditioning -------------------------------------------------------------------------------
    def unconditional_context(self, batch: int = 1) -> torch.Tensor:
        """The context of "no condition": the bridge (text) encoder on the empty string."""
        enc = self.encoder("text")
        return enc.encode([""]).tokens.expand(batch, -1, -1)

    def _normalise_inputs(self, inputs: Inputs | None, weights) -> tuple[list[tuple[str, Any]], list[float]]:
        if inputs is None:
            pairs: list[tuple[str, Any]] = []
        elif isinstance(inputs, Mapping):
            pairs = list(inputs.items())
        elif isinstance(inputs, (list, tuple)) and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in inputs):
            pairs = list(inputs)
        else:
            raise InvalidInputError(
                f"inputs must be a dict {{modality: value}} or a list of (modality, value) pairs, got {type(inputs).__name__}"
            )
        if weights is None:
            ws = [1.0] * len(pairs)
        elif isinstance(weights, Mapping):
            unknown = set(weights) - {m for m, _ in pairs}
            if unknown:
                raise InvalidInputError(f"weights given for {sorted(unknown)}, which are not among the inputs {[m for m, _ in pairs]}")
            ws = [weights.get(m, 1.0) for m, _ in pairs]
        else:
            ws = list(weights)
            if len(ws) != len(pairs):
                raise InvalidInputError(f"{len(ws)} weights for {len(pairs)} inputs; accepted: one weight per input")
        if pairs:
            ws = Bridge.normalize_weights(ws)
        return pairs, ws

    def encode_inputs(self, inputs: Inputs | None, weights=None) -> torch.Tensor:
        """Validate, encode and mix the inputs into one conditioning context ``[1, K, D]``.

        No inputs at all gives the unconditional context.
        """
        pairs, ws = self._normalise_inputs(inputs, weights)
        samples = [(m, self.registry.get(m).convert(v)) for m, v in pairs]
        if not samples:
            return self.unconditional_context(1)
        contexts = [self.encoder(m).encode([s]).tokens for m, s in samples]
        return Bridge.mix(contexts, ws)

    # -- generation ---------------------------------------------------------------------------------
    def check_options(self, outputs, steps, guidance, num_samples, scheduler, joint, environment="denoised", guide_environment=True,
                      environment_guidance=None, environment_guidance_end=1.0) -> list[str]:
        """Validate generation options before any work; returns the outputs as a list."""
        if isinstance(outputs, str):
            outputs = [outputs]
        outputs = list(outputs or [])
        if not outputs:
            raise InvalidInputError("no outputs requested; accepted: one or more of " + ", ".join(self.registry.names()))
        if len(set(outputs)) != len(outputs):
            raise InvalidInputError(f"outputs {outputs} repeat a modality; ask for num_samples instead")
        for m in outputs:
            self.registry.get(m)
        if not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0:
            raise InvalidInputError(f"steps={steps!r}; accepted: an integer ≥ 1")
        if not isinstance(guidance, (int, float)) or not math.isfinite(guidance) or guidance < 0:
            raise InvalidInputError(f"guidance={guidance!r}; accepted: a finite number ≥ 0")
        if not isinstance(num_samples, int) or num_samples <= 0:
            raise InvalidInputError(f"num_samples={num_samples!r}; accepted: an integer ≥ 1")
        if not (isinstance(scheduler, str) and scheduler in SCHEDULERS) and not hasattr(scheduler, "from_config"):
            raise InvalidInputError(f"scheduler={scheduler!r}; accepted: {', '.join(SCHEDULERS)} or a diffusers scheduler class")
        if joint not in (None, True, False, "cross", "self"):
            raise InvalidInputError(f"joint={joint!r}; accepted: True/'cross' (other streams), 'self', False/None")
        if environment not in ENVIRONMENT_SOURCES:
            raise InvalidInputError(f"environment={environment!r}; accepted: {', '.join(ENVIRONMENT_SOURCES)}")
        if not isinstance(guide_environment, bool):
            raise InvalidInputError(f"guide_environment={guide_environment!r}; accepted: True or False")
        if environment_guidance is not None:
            if isinstance(environment_guidance, bool) or not isinstance(environment_guidance, (int, float)) \
                    or not math.isfinite(environment_guidance) or environment_guidance < 0:
                raise InvalidInputError(f"environment_guidance={environment_guidance!r}; accepted: None or a finite number ≥ 0")
        if isinstance(environment_guidance_end, bool) or not isinstance(environment_guidance_end, (int, float)) \
                or not 0 <= environment_guidance_end <= 1:
            raise InvalidInputError(f"environment_guidance_end={environment_guidance_end!r}; accepted: a fraction of the steps in [0, 1]")
        return outputs

    def _scheduler(self, scheduler, config: dict, steps: int):
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        if scheduler == "ddim":
            sch = DDIMScheduler.from_config(config)
        elif scheduler == "dpm++":
            sch = DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++")
        else:
            sch = scheduler.from_config(config)
        sch.set_timesteps(steps, device=self.device)
        return sch

    def __call__(
        self,
        inputs: Inputs | None,
        outputs: str | Iterable[str],
        *,
        steps: int = 50,
        guidance: float = 7.5,
        seed: int | None = None,
        scheduler: str | type = "ddim",
        weights: Mapping[str, float] | Sequence[float] | None = None,
        num_samples: int = 1,
        joint: bool | str | None = None,
        environment: EnvironmentSource = "denoised",
        guide_environment: bool = True,
        environment_guidance: float | None = DEFAULT_ENVIRONMENT_GUIDANCE,
        environment_guidance_end: float = 1.0,
        progress: bool = True,
        callback: StepCallback | None = None,
    ) -> ComposeResult:
        """Generate ``outputs`` conditioned on ``inputs``.

        Args:
            inputs: ``{modality: value}`` or ``[(modality, value), ...]`` (several inputs of one
                modality allowed); values are whatever the modality converts (paths, arrays,
                tensors, PIL images, strings). Empty or ``None``: unconditional generation.
            outputs: modality names to generate together.
            steps: scheduler steps (default 50). guidance: classifier-free guidance scale (7.5).
            seed: makes the call deterministic. scheduler: ``"ddim"`` (default) or ``"dpm++"``.
            weights: per-input weights (by modality, or one per input), normalised to sum 1.
            num_samples: samples per output. joint: ``True``/``"cross"`` (default for two or
                more outputs): each stream attends to the others' environments; ``"self"``:
                each to its own (the released CoDi code's wiring); ``False``: independent.
            environment: what a stream shows the others: ``"denoised"`` (default), the clean
                latent it predicted at the previous step; ``"noisy"``, its current noisy latent
                (the paper). guide_environment: the unconditional branch drops the environment
                too, so guidance also strengthens the pull between streams (default ``True``).
                environment_guidance: a guidance scale of its own for that pull (default 8;
                ``None``: the same as ``guidance``, one denoiser pass per step fewer). Ignored
                with ``guide_environment=False`` or a single output. environment_guidance_end:
                the fraction of the steps, from the first, that use it (default 1.0: all).
                See :func:`codi_sdk.sampling.joint_sample`.
            progress: show a progress bar. callback: ``callback(i, t, latents)`` after each
                step; return ``False`` to stop early (the current latents are decoded).
        """
        sampling = dict(environment=environment, guide_environment=guide_environment,
                        environment_guidance=environment_guidance, environment_guidance_end=environment_guidance_end)
        outputs = self.check_options(outputs, steps, guidance, num_samples, scheduler, joint, **sampling)
        context = self.encode_inputs(inputs, weights)
        return self._generate([context] * num_samples, outputs, steps, guidance, seed, scheduler, joint, progress, callback,
                              **sampling)

    def batch(
        self,
        requests: Sequence[Inputs | None],
        outputs: str | Iterable[str],
        *,
        steps: int = 50,
        guidance: float = 7.5,
        seed: int | None = None,
        scheduler: str | type = "ddim",
        joint: bool | str | None = None,
        environment: EnvironmentSource = "denoised",
        guide_environment: bool = True,
        environment_guidance: float | None = DEFAULT_ENVIRONMENT_GUIDANCE,
        environment_guidance_end: float = 1.0,
        progress: bool = True,
    ) -> list[dict[str, Output]]:
        """Generate ``outputs`` for many input sets in one batched sampling loop (one sample each)."""
        sampling = dict(environment=environment, guide_environment=guide_environment,
                        environment_guidance=environment_guidance, environment_guidance_end=environment_guidance_end)
        outputs = self.check_options(outputs, steps, guidance, 1, scheduler, joint, **sampling)
        contexts = [self.encode_inputs(r) for r in requests]
        result = self._generate(contexts, outputs, steps, guidance, seed, scheduler, joint, progress, None, **sampling)
        return [{m: result[m][i] for m in outputs} for i in range(len(contexts))]

    @torch.no_grad()
    def _generate(self, contexts, outputs, steps, guidance, seed, scheduler, joint, progress, callback,
                  **sampling) -> ComposeResult:
        """The sampling loop behind ``__call__`` and ``batch``; ``sampling``: the joint sampler's
        options (``environment`` ...), passed on to :func:`~codi_sdk.sampling.joint_sample`."""
        diffusers = {m: self.diffuser(m) for m in outputs}  # load (and fail) before sampling
        mode: JointMode = None  # one output has no other stream to attend to
        if len(outputs) > 1 and joint is not False:
            mode = "self" if joint == "self" else "cross"
        b = len(contexts)
        cond = torch.cat(contexts).to(self.device, self.dtype)
        uncond = self.unconditional_context(b).to(self.device, self.dtype)
        ctx = torch.cat([uncond, cond])
        gen = torch.Generator("cpu")
        gen.manual_seed(seed if seed is not None else torch.seed())
        latents = {
            m: d.sample_noise((b, *d.latent_shape), generator=gen).to(self.device, self.dtype)
            for m, d in diffusers.items()
        }
        schedulers = {m: self._scheduler(scheduler, d.scheduler_config, steps) for m, d in diffusers.items()}
        latents = {m: z * schedulers[m].init_noise_sigma for m, z in latents.items()}
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = lambda it: tqdm(it, desc=f"compose -> {'+'.join(outputs)}", leave=False)  # noqa: E731
        latents = joint_sample(diffusers, latents, {m: ctx for m in outputs}, schedulers, guidance, mode, callback, bar,
                               **sampling)
        samples = {m: diffusers[m].decode(latents[m]) for m in outputs}
        outs = {m: [self.registry.get(m).to_output(s) for s in samples[m]] for m in outputs}
        return ComposeResult(outs, samples, latents)


_default_composer: Composer | None = None


def compose(inputs: Inputs | None, outputs: str | Iterable[str], **options) -> ComposeResult:
    """Generate ``outputs`` from ``inputs`` with the installed plugins' default weights.

    A module-level :class:`Composer` is created on first call and reused. See
    :meth:`Composer.__call__` for the options.
    """
    global _default_composer
    if _default_composer is None:
        _default_composer = Composer()
    return _default_composer(inputs, outputs, **options)
