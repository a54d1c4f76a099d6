"""Generators that the evaluation harness measures, and their registry.

A generator is any object with a ``name`` and a ``generate`` method (:class:`Generator`). Inputs and
outputs are raw ToyWorld renderings: image uint8 ``(32, 32, 3)``, video uint8 ``(8, 32, 32, 3)``,
audio float32 ``(16000,)`` at 16 kHz, text ``str``.

Ground truth: a generator whose class sets ``wants_scenes = True`` is also given the true scenes,
as ``generate(inputs, outputs, seed, scenes=[Scene, ...])``; only reference generators such as
:class:`OracleGenerator` should. Every other generator is called without ``scenes``.

To add a generator, register a factory (``**kwargs -> Generator``)::

    GENERATORS["compose"] = ComposeGenerator
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from ..errors import InvalidInputError
from ..toyworld.render import caption, check_modality, render
from ..toyworld.scenes import ALL_SCENES, Scene


@runtime_checkable
class Generator(Protocol):
    """Generates output modalities for a batch of inputs.

    ``inputs[i]`` maps each input modality to a raw rendering; the result's ``[i]`` must map every
    name in ``outputs`` to a raw sample of that modality (same kinds as the inputs). ``outputs``
    with two or more names are to be generated jointly. ``seed`` makes the call deterministic.
    """

    name: str

    def generate(self, inputs: list[dict[str, Any]], outputs: list[str], seed: int) -> list[dict[str, Any]]: ...


def generator_options(generator: Any) -> dict[str, Any]:
    """The sampling options a generator reports in its ``options`` attribute (none: ``{}``), which
    ``codi eval`` writes next to its figures so a run can be repeated."""
    return dict(getattr(generator, "options", None) or {})


def _render_output(modality: str, scene: Scene, rng: np.random.Generator) -> Any:
    return caption(scene, rng) if modality == "text" else render(modality, scene, rng)


class OracleGenerator:
    """Renders the true scene in every output: the ceiling (probe accuracy) of every task.

    Needs the scenes: ``generate(inputs, outputs, seed, scenes=...)`` (the harness passes them
    because ``wants_scenes`` is True).
    """

    name = "oracle"
    wants_scenes = True

    def generate(
        self, inputs: list[dict[str, Any]], outputs: list[str], seed: int, scenes: list[Scene] | None = None
    ) -> list[dict[str, Any]]:
        if scenes is None or len(scenes) != len(inputs):
            raise InvalidInputError("the oracle generator needs one true scene per input: generate(..., scenes=[...])")
        for m in outputs:
            check_modality(m)
        rng = np.random.default_rng(seed)
        return [{m: _render_output(m, scene, rng) for m in outputs} for scene in scenes]


class ChanceGenerator:
    """Renders an independent uniformly random scene for each output: the floor of every task.

    Its attribute accuracy is chance (1/4 colour and motion, 1/3 shape) and so is its joint
    coherence.
    """

    name = "chance"

    def generate(self, inputs: list[dict[str, Any]], outputs: list[str], seed: int) -> list[dict[str, Any]]:
        for m in outputs:
            check_modality(m)
        rng = np.random.default_rng(seed)
        results = []
        for _ in inputs:
            results.append({m: _render_output(m, ALL_SCENES[int(rng.integers(len(ALL_SCENES)))], rng) for m in outputs})
        return results


def _composer_backed(name: str) -> Callable[..., Generator]:
    def factory(**kwargs: Any) -> Generator:
        from . import compose_generators as cg

        cls = {"compose": cg.ComposeGenerator, "independent": cg.IndependentGenerator, "cascade": cg.CascadeGenerator,
               "autoencode": cg.AutoencodeGenerator}[name]
        return cls(**kwargs)

    return factory


#: Generator factories by name. The harness and ``codi eval --generator NAME`` look names up here.
GENERATORS: dict[str, Callable[..., Generator]] = {
    "oracle": OracleGenerator,
    "chance": ChanceGenerator,
    "compose": _composer_backed("compose"),
    "independent": _composer_backed("independent"),
    "cascade": _composer_backed("cascade"),
    "autoencode": _composer_backed("autoencode"),
}


def get_generator(name: str, **kwargs: Any) -> Generator:
    """Build the generator registered as ``name``; an unknown name raises InvalidInputError."""
    if name not in GENERATORS:
        raise InvalidInputError(f"unknown generator {name!r}; available: {', '.join(sorted(GENERATORS))}")
    return GENERATORS[name](**kwargs)
