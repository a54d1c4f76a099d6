"""Regression guard for the shipped ToyWorld weights: a small fixed-seed sample per task, read by the
probes, must stay above floors set a margin below the figures measured at training time (see
docs/evaluation.md for the full evaluation). Not a timing test."""

from __future__ import annotations

import pytest

from codi_sdk.eval.compose_generators import ComposeGenerator, IndependentGenerator
from codi_sdk.eval.harness import evaluate_task
from codi_sdk.eval.tasks import parse_tasks
from codi_sdk.registry import get_registry

N, STEPS = 12, 20

# task -> (split, floor on attribute accuracy). Floors = measured on this sample minus a margin.
FLOORS: dict[str, tuple[str, float]] = {}
# joint task -> floor on joint coherence
COHERENCE_FLOORS: dict[str, float] = {}


@pytest.fixture(scope="module")
def composer():
    from codi_sdk.composer import Composer

    reg = get_registry()
    missing = [m for m in ("text", "image", "video", "audio") if reg.get(m).default_weights() is None]
    assert not missing, f"shipped ToyWorld weights missing for {missing}: run `codi train toyworld --ship`"
    return Composer(reg)


@pytest.mark.parametrize("task", sorted(FLOORS))
def test_shipped_weights_keep_their_attribute_accuracy(composer, task):
    split, floor = FLOORS[task]
    result = evaluate_task(ComposeGenerator(composer, steps=STEPS), parse_tasks(task)[0], split=split, n=N, seed=0)
    assert result["accuracy"] >= floor, (task, split, result["accuracy"], result["per_attribute"])


@pytest.mark.parametrize("task", sorted(COHERENCE_FLOORS))
def test_joint_generation_is_more_coherent_than_independent_sampling(composer, task):
    t = parse_tasks(task)[0]
    joint = evaluate_task(ComposeGenerator(composer, steps=STEPS), t, split="seen", n=N, seed=0)["coherence"]
    indep = evaluate_task(IndependentGenerator(composer, steps=STEPS), t, split="seen", n=N, seed=0)["coherence"]
    assert joint >= COHERENCE_FLOORS[task], (joint, indep)
    assert joint > indep, (joint, indep)
