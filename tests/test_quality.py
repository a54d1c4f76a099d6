"""Regression guard for the shipped ToyWorld weights: a small fixed-seed sample per task, read by the
probes, must stay above floors set a margin below the figures measured at training time (see
docs/evaluation.md for the full evaluation). Not a timing test."""

from __future__ import annotations

import pytest

from codi_sdk.eval.compose_generators import ComposeGenerator
from codi_sdk.eval.harness import evaluate_task
from codi_sdk.eval.tasks import parse_tasks
from codi_sdk.registry import get_registry

N, STEPS = 12, 20

# task -> (split, floor on attribute accuracy). Measured at release (`codi eval`, 16 scenes, 25
# steps; docs/evaluation.md): text->image 93.8 %, image->text 93.8 %, text->audio 87.5 %,
# audio->image 90.6 %, image->audio 93.8 %, video->image 87.5 %, audio->text 83.3 %, and 94.9 % for
# image + audio from *partial* captions (31 % before partial captions stopped collapsing in the
# text encoder), text->video 93.8 % with motion 93.8 % (25 %, chance, before the session-3 video
# denoiser). Floors sit ~15 points below, the width of the noise of a 12-scene sample.
FLOORS: dict[str, tuple[str, float]] = {
    "text->image": ("seen", 0.75),
    "image->text": ("seen", 0.75),
    "text->audio": ("seen", 0.7),
    "audio->image": ("seen", 0.75),
    "image->audio": ("seen", 0.75),
    "video->image": ("seen", 0.7),
    "audio->text": ("seen", 0.65),
    "text->image+audio": ("seen", 0.75),
    "text->video": ("seen", 0.75),
}
# task -> (attribute, floor): attributes that once sat at chance and must not fall back to it.
ATTRIBUTE_FLOORS: dict[str, tuple[str, float]] = {"text->video": ("motion", 0.65)}


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
    if task in ATTRIBUTE_FLOORS:
        attribute, attr_floor = ATTRIBUTE_FLOORS[task]
        assert result["per_attribute"][attribute] >= attr_floor, (task, attribute, result["per_attribute"])
