"""``codi.compose``: CoDi any-to-any generation as a node (the composer of this SDK)."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...outputs import AudioOutput, ImageOutput, Output, TextOutput, VideoOutput
from ..errors import ServiceUnavailableError
from ..node import NodeType, Port
from ._service import cached, import_module, lock_for

def _to_composer(value: Any) -> Any:
    if isinstance(value, ImageOutput):
        return value.array
    if isinstance(value, VideoOutput):
        return value.array
    if isinstance(value, AudioOutput):  # the audio modality resamples a (waveform, rate) pair itself
        return (np.asarray(value.waveform, np.float32), value.sample_rate)
    if isinstance(value, TextOutput):
        return value.text
    return value


def _from_composer(value: Any) -> Any:
    return value.text if isinstance(value, TextOutput) else value


class Compose(NodeType):
    """Generate the ``outputs`` modalities from the ``inputs`` modalities with the CoDi composer.

    One input port and one output port per modality, named after it (``image``, ``text``, ...).
    Several outputs are generated jointly, as in the paper. Each output port carries the first
    sample that the composer returns for that modality.
    """

    name = "codi.compose"
    description = "Any-to-any generation by composable diffusion (CoDi)."

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        inputs: list[str] = Field(min_length=1, description="input modalities, e.g. [image] or [text, audio]")
        outputs: list[str] = Field(min_length=1, description="modalities to generate, e.g. [text] or [video, audio]")
        steps: int | None = Field(None, ge=1, description="denoising steps (default: the composer's)")
        guidance: float | None = Field(None, ge=0, description="classifier-free guidance scale (default: the composer's)")
        seed: int | None = Field(0, description="random seed; null for a random draw")
        weights: dict[str, str] = Field(default_factory=dict, description="weights folder per modality (default: each plugin's shipped ToyWorld weights)")

        @field_validator("inputs", "outputs")
        @classmethod
        def _unique(cls, names: list[str]) -> list[str]:
            if len(set(names)) != len(names):
                raise ValueError(f"modalities listed twice in {names}")
            return names

    def input_ports(self) -> dict[str, Port]:
        return {m: Port(m) for m in self.params.inputs}

    def output_ports(self) -> dict[str, Port]:
        return {m: Port(m) for m in self.params.outputs}

    def check(self) -> None:
        if importlib.util.find_spec("codi_sdk.composer") is None:
            raise ServiceUnavailableError(
                "codi.compose needs codi_sdk.composer, which this codi-sdk installation lacks; install a codi-sdk release that ships it"
            )
        from ...registry import get_registry

        registry = get_registry()
        installed = registry.names()
        missing = [m for m in (*self.params.inputs, *self.params.outputs) if m not in installed]
        if missing:
            raise ServiceUnavailableError(
                f"codi.compose: modality {', '.join(map(repr, missing))} is not installed (installed: {', '.join(installed) or 'none'}); "
                f"install its plugin, e.g. `pip install codi-{missing[0]}`"
            )
        needs = {m: {"encoder"} for m in self.params.inputs}
        for m in self.params.outputs:
            needs.setdefault(m, set()).update(c for c in registry.get(m).components if c != "encoder")
        for m, components in needs.items():
            folder = self.params.weights.get(m)
            modality = registry.get(m)
            lacking = sorted(components - set(modality.weights_found(folder)))
            if lacking:
                shipped = modality.default_weights()
                if folder:
                    where = f"component(s) {', '.join(lacking)} not found in {folder}"
                elif shipped:
                    where = f"component(s) {', '.join(lacking)} not found in the shipped weights {shipped}"
                else:
                    where = f"its plugin ships no trained weights yet (needed: {', '.join(lacking)})"
                raise ServiceUnavailableError(f"codi.compose: modality {m!r}: {where}; pass a weights folder with params.weights.{m}")

    def _composer(self) -> Any:
        """The process-wide composer for these weights, built on first use."""
        key = tuple(sorted(self.params.weights.items()))

        def load() -> Any:
            Composer = import_module("codi_sdk.composer").Composer
            return Composer(weights=dict(self.params.weights) or None)

        return cached(("codi-composer", key), load)

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        composer = self._composer()
        kwargs = {k: v for k, v in (("steps", self.params.steps), ("guidance", self.params.guidance), ("seed", self.params.seed)) if v is not None}
        with lock_for("codi-composer"):  # one generation at a time: the models are shared
            result = composer({m: _to_composer(v) for m, v in inputs.items()}, list(self.params.outputs), progress=False, **kwargs)
        out = {}
        for m in self.params.outputs:
            samples = result[m]
            if not samples:
                raise RuntimeError(f"the composer returned no {m} sample")
            first = samples[0]
            out[m] = _from_composer(first) if isinstance(first, Output) else first
        return out
