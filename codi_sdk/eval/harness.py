"""The any-to-any evaluation: render inputs, generate, probe the outputs, score.

For each task and item ``i`` of the split, the scene is ``scene_at(split, i, seed)`` and each
input is rendered from the evaluation seed stream of that item (disjoint from training). Text
inputs are full captions, except in joint tasks conditioned on text, which get partial captions
so that joint coherence can be measured on the attributes the caption leaves open.
"""

from __future__ import annotations

import zlib
from collections import Counter
from typing import Any, Callable

import numpy as np

from ..errors import CodiError, InvalidInputError
from ..toyworld.probes import probe, probe_text
from ..toyworld.render import caption, partial_caption, render
from ..toyworld.scenes import ATTRIBUTES, TOYWORLD_VERSION, Scene, check_split, item_rng, scene_at
from .generators import Generator, generator_options
from .metrics import (
    accuracy_counts,
    chance_accuracy,
    chance_coherence,
    coherence_counts,
    observable_in_inputs,
    per_attribute,
    ratio,
)
from .tasks import Task

ROW_ORDER: tuple[str, ...] = ("text", "image", "video", "audio")


def render_inputs(task: Task, split: str, index: int, seed: int = 0) -> tuple[Scene, dict[str, Any]]:
    """The scene of item ``index`` and the raw input renderings a task gives the generator."""
    scene = scene_at(split, index, seed)
    inputs: dict[str, Any] = {}
    for m in task.inputs:
        if m == "text":
            rng = item_rng(split, index, "partial" if task.partial else "caption", seed)
            inputs[m] = partial_caption(scene, rng)[0] if task.partial else caption(scene, rng)
        else:
            inputs[m] = render(m, scene, item_rng(split, index, m, seed))
    return scene, inputs


def _call(generator: Generator, inputs: list[dict[str, Any]], outputs: list[str], seed: int, scenes: list[Scene]):
    if getattr(generator, "wants_scenes", False):
        return generator.generate(inputs, outputs, seed, scenes=scenes)
    return generator.generate(inputs, outputs, seed)


def _batch_seed(seed: int, task: Task, batch: int) -> int:
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(zlib.crc32(task.name.encode()), batch))
    return int(ss.generate_state(1)[0])


def evaluate_task(
    generator: Generator,
    task: Task,
    split: str = "seen",
    n: int = 48,
    seed: int = 0,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Generate and score ``n`` items of one task; returns the task's JSON-ready result."""
    name = getattr(generator, "name", type(generator).__name__)
    acc: dict[str, Counter] = {m: Counter() for m in task.outputs}
    coh: Counter = Counter()
    items: list[dict[str, Any]] = []
    for b, start in enumerate(range(0, n, batch_size)):
        idx = range(start, min(n, start + batch_size))
        scenes, inputs = zip(*(render_inputs(task, split, i, seed) for i in idx))
        results = _call(generator, list(inputs), list(task.outputs), _batch_seed(seed, task, b), list(scenes))
        if not isinstance(results, (list, tuple)) or len(results) != len(idx):
            got = len(results) if isinstance(results, (list, tuple)) else type(results).__name__
            raise CodiError(f"generator {name!r} returned {got} results for {len(idx)} inputs on task {task}")
        for scene, given, result in zip(scenes, inputs, results):
            missing = [m for m in task.outputs if not isinstance(result, dict) or m not in result]
            if missing:
                raise CodiError(f"generator {name!r} gave no {', '.join(missing)} output on task {task}")
            readings_in = {m: (probe_text(v) if m == "text" else {}) for m, v in given.items()}
            input_attrs = observable_in_inputs(readings_in)
            readings_out = {}
            for m in task.outputs:
                try:
                    readings_out[m] = probe(m, result[m])
                except InvalidInputError as exc:
                    raise CodiError(f"generator {name!r} returned an unreadable {m} on task {task}: {exc}") from exc
                acc[m] += accuracy_counts(scene, input_attrs, m, readings_out[m])
            if task.joint:
                coh += coherence_counts(input_attrs, readings_out)
            items.append(
                {
                    "scene": scene.as_dict(),
                    "text_input": given.get("text"),
                    "outputs": readings_out,
                }
            )
        if on_batch is not None:
            on_batch(len(idx))
    total: Counter = sum(acc.values(), Counter())
    result: dict[str, Any] = {
        "task": task.name,
        "inputs": list(task.inputs),
        "outputs": list(task.outputs),
        "joint": task.joint,
        "partial_captions": task.partial,
        "n": n,
        "accuracy": ratio(total, "correct"),
        "chance_accuracy": chance_accuracy(total),
        "counted": sum(total[f"counted:{a}"] for a in ATTRIBUTES),
        "per_attribute": per_attribute(total, "correct"),
        "per_output": {
            m: {"accuracy": ratio(c, "correct"), "counted": sum(c[f"counted:{a}"] for a in ATTRIBUTES), "per_attribute": per_attribute(c, "correct")}
            for m, c in acc.items()
        },
        "coherence": None,
        "chance_coherence": None,
        "coherence_counted": 0,
        "coherence_per_attribute": {},
    }
    if task.joint:
        result.update(
            coherence=ratio(coh, "agree"),
            chance_coherence=chance_coherence(coh, len(task.outputs)),
            coherence_counted=sum(coh[f"counted:{a}"] for a in ATTRIBUTES),
            coherence_per_attribute=per_attribute(coh, "agree"),
        )
    result["items"] = items
    return result


def accuracy_matrix(task_results: list[dict[str, Any]]) -> dict[str, Any]:
    """Input-modality rows × output-modality columns, from the single-input single-output tasks."""
    cells = {(r["inputs"][0], r["outputs"][0]): r["accuracy"] for r in task_results if len(r["inputs"]) == 1 and len(r["outputs"]) == 1}
    rows = [m for m in ROW_ORDER if any(k[0] == m for k in cells)]
    cols = [m for m in ROW_ORDER if any(k[1] == m for k in cells)]
    return {"rows": rows, "cols": cols, "accuracy": [[cells.get((r, c)) for c in cols] for r in rows]}


def evaluate(
    generator: Generator,
    tasks: list[Task],
    split: str = "seen",
    n: int = 48,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, Any]:
    """Run every task; returns the JSON-ready results (see :func:`codi_sdk.eval.report.write_results`).

    ``split`` is ``"seen"`` or ``"heldout"`` (``"train"`` is refused: evaluation must not reuse
    training renderings). ``n`` items per task cycle through the split's scenes in a seeded order.
    """
    check_split(split)
    if split == "train":
        raise InvalidInputError("evaluate on 'seen' or 'heldout'; the 'train' split is for training only")
    if n < 1:
        raise InvalidInputError(f"n must be >= 1 scene per task; got {n}")
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be >= 1; got {batch_size}")
    if not tasks:
        raise InvalidInputError("no tasks to evaluate")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n * len(tasks), desc="eval", unit="item")
    try:
        results = [
            evaluate_task(generator, t, split, n, seed, batch_size, on_batch=bar.update if bar else None) for t in tasks
        ]
    finally:
        if bar is not None:
            bar.close()
    return {
        "toyworld": TOYWORLD_VERSION,
        "generator": getattr(generator, "name", type(generator).__name__),
        "split": split,
        "n": n,
        "seed": seed,
        "options": generator_options(generator),
        "tasks": results,
        "matrix": accuracy_matrix(results),
    }
