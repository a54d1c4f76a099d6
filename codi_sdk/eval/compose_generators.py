"""Generators for ``codi eval`` backed by the composer: ``compose``, ``independent``, ``cascade``,
``autoencode``.

They follow the :class:`~codi_sdk.eval.generators.Generator` protocol: raw ToyWorld renderings
in (uint8 images/videos, float32 audio, strings), raw samples of the same kinds out.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..outputs import AudioOutput, ImageOutput, Output, TextOutput, VideoOutput
from ..sampling import DEFAULT_ENVIRONMENT_GUIDANCE


def to_raw(output: Output) -> Any:
    """The raw sample inside a typed output (what the probes read)."""
    if isinstance(output, (ImageOutput, VideoOutput)):
        return output.array
    if isinstance(output, AudioOutput):
        return output.waveform
    if isinstance(output, TextOutput):
        return output.text
    raise TypeError(f"unsupported output {type(output).__name__}")


class ComposeGenerator:
    """Any-to-any generation with ``Composer.batch`` (joint attention across outputs by default)."""

    name = "compose"

    def __init__(self, composer=None, steps: int = 50, guidance: float = 4.0, joint: str | bool = "cross", chunk: int = 48,
                 environment: str = "denoised", guide_environment: bool = True,
                 environment_guidance: float | None = DEFAULT_ENVIRONMENT_GUIDANCE, environment_guidance_end: float = 1.0):
        from ..composer import Composer

        self.composer = composer or Composer()
        self.steps, self.guidance, self.joint, self.chunk = steps, guidance, joint, chunk
        self.sampling = dict(environment=environment, guide_environment=guide_environment,
                             environment_guidance=environment_guidance, environment_guidance_end=environment_guidance_end)

    @property
    def options(self) -> dict[str, Any]:
        """The sampling options, as ``codi eval`` records them in ``results.json``."""
        return {"steps": self.steps, "guidance": self.guidance, "joint": self.joint, **self.sampling}

    def _run(self, inputs: Sequence[dict[str, Any]], outputs: list[str], seed: int) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for start in range(0, len(inputs), self.chunk):
            part = inputs[start : start + self.chunk]
            outs = self.composer.batch(list(part), outputs, steps=self.steps, guidance=self.guidance,
                                       seed=seed + start, joint=self.joint, progress=False, **self.sampling)
            results += [{m: to_raw(o) for m, o in r.items()} for r in outs]
        return results

    def generate(self, inputs: list[dict[str, Any]], outputs: list[str], seed: int, **_: Any) -> list[dict[str, Any]]:
        return self._run(inputs, outputs, seed)


class IndependentGenerator(ComposeGenerator):
    """Each output sampled on its own (no joint attention): the baseline for joint coherence."""

    name = "independent"

    def __init__(self, composer=None, **kw):
        super().__init__(composer, joint=False, **kw)


class CascadeGenerator(ComposeGenerator):
    """A -> text -> B: generate a caption from the inputs, then the outputs from that caption."""

    name = "cascade"

    def generate(self, inputs: list[dict[str, Any]], outputs: list[str], seed: int, **_: Any) -> list[dict[str, Any]]:
        if all(set(i) == {"text"} for i in inputs):
            return self._run(inputs, outputs, seed)
        captions = self._run(inputs, ["text"], seed)
        rest = [m for m in outputs if m != "text"]
        results = self._run([{"text": c["text"]} for c in captions], rest, seed + 1) if rest else [{} for _ in captions]
        for r, c in zip(results, captions):
            if "text" in outputs:
                r["text"] = c["text"]
        return results


class AutoencodeGenerator:
    """The true outputs sent through each output's own latent round trip: ``decode(encode(x))``.

    The ceiling of latent diffusion with these weights: a denoiser that found the exact latent of
    the true sample would still be read this well, because the VAE (and, for audio, the vocoder or
    Griffin-Lim) stands between latent and probe. ``codi eval -g autoencode`` next to ``compose``
    separates what the denoisers miss from what the decoders lose.
    """

    name = "autoencode"
    wants_scenes = True

    def __init__(self, composer=None, **_: Any):
        from ..composer import Composer
        from .generators import OracleGenerator

        self.composer = composer or Composer()
        self.oracle = OracleGenerator()

    @torch.no_grad()
    def generate(self, inputs: list[dict[str, Any]], outputs: list[str], seed: int, scenes=None, **_: Any) -> list[dict[str, Any]]:
        truth = self.oracle.generate(inputs, outputs, seed, scenes=scenes)
        results: list[dict[str, Any]] = [{} for _ in truth]
        for m in outputs:
            modality, d = self.composer.registry.get(m), self.composer.diffuser(m)
            batch = d.collate([modality.convert(t[m]) for t in truth])
            if isinstance(batch, torch.Tensor):
                batch = batch.to(self.composer.device, self.composer.dtype)
            for r, sample in zip(results, d.decode(d.encode(batch))):
                r[m] = to_raw(modality.to_output(sample))
        return results
