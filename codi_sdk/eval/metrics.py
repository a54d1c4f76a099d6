"""The two measures of shared/TOYWORLD.md 'Measuring': attribute accuracy and joint coherence.

Both work on probe readings (``{"color": "red", ...}``), one item at a time, and are summed over
items as counts, so a task's score is correct / counted over all its items.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping

from ..toyworld.probes import SHOWS
from ..toyworld.scenes import ATTRIBUTES, VALUES, Scene

Reading = Mapping[str, "str | None"]


def observable_in_inputs(readings: Mapping[str, Reading]) -> set[str]:
    """Attributes some input shows: every attribute its modality shows, for text those it names."""
    shown: set[str] = set()
    for modality, reading in readings.items():
        shown |= set(reading) if modality == "text" else set(SHOWS[modality])
    return shown


def accuracy_counts(scene: Scene, input_attrs: set[str], output_modality: str, reading: Reading) -> Counter:
    """Counts ``counted:<attr>`` and ``correct:<attr>`` for one output of one item.

    An attribute counts if an input shows it and the output modality shows it (text shows all three,
    so a text output must name them); it is correct if the probe reads the scene's value.
    """
    counts: Counter = Counter()
    truth = scene.as_dict()
    for attr in ATTRIBUTES:
        if attr in input_attrs and attr in SHOWS[output_modality]:
            counts[f"counted:{attr}"] += 1
            counts[f"correct:{attr}"] += int(reading.get(attr) == truth[attr])
    return counts


def coherence_counts(input_attrs: set[str], readings: Mapping[str, Reading]) -> Counter:
    """Counts ``counted:<attr>`` and ``agree:<attr>`` of joint coherence for one item.

    An attribute counts if no input shows it (the caption leaves it open) and every output shows
    it; the outputs agree if all their probes read the same, non-missing value.
    """
    counts: Counter = Counter()
    for attr in ATTRIBUTES:
        if attr in input_attrs or not all(attr in SHOWS[m] for m in readings):
            continue
        values = [r.get(attr) for r in readings.values()]
        counts[f"counted:{attr}"] += 1
        counts[f"agree:{attr}"] += int(values[0] is not None and all(v == values[0] for v in values))
    return counts


def chance_accuracy(counts: Counter) -> float | None:
    """Expected accuracy of uniform guessing over the same counted attributes."""
    total = sum(counts[f"counted:{a}"] for a in ATTRIBUTES)
    if not total:
        return None
    return sum(counts[f"counted:{a}"] / len(VALUES[a]) for a in ATTRIBUTES) / total


def chance_coherence(counts: Counter, num_outputs: int) -> float | None:
    """Expected agreement of ``num_outputs`` independent uniform guesses: 1/k^(outputs-1) per attribute."""
    total = sum(counts[f"counted:{a}"] for a in ATTRIBUTES)
    if not total:
        return None
    return sum(counts[f"counted:{a}"] / len(VALUES[a]) ** (num_outputs - 1) for a in ATTRIBUTES) / total


def ratio(counts: Counter, hit: str, attrs: tuple[str, ...] = ATTRIBUTES) -> float | None:
    """``sum(hit:<a>) / sum(counted:<a>)`` over ``attrs``, or None when nothing was counted."""
    total = sum(counts[f"counted:{a}"] for a in attrs)
    return sum(counts[f"{hit}:{a}"] for a in attrs) / total if total else None


def per_attribute(counts: Counter, hit: str) -> dict[str, float]:
    """``{attr: ratio}`` for the attributes that were counted at least once."""
    return {a: counts[f"{hit}:{a}"] / counts[f"counted:{a}"] for a in ATTRIBUTES if counts[f"counted:{a}"]}
