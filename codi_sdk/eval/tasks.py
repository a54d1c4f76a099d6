"""Evaluation tasks: which modalities go in and which come out, e.g. ``text->image+audio``."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidInputError
from ..toyworld.render import MODALITIES


@dataclass(frozen=True)
class Task:
    """Input modalities -> output modalities. Two or more outputs are generated jointly."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{'+'.join(self.inputs)}->{'+'.join(self.outputs)}"

    @property
    def joint(self) -> bool:
        """Whether several outputs are generated together (joint coherence is measured)."""
        return len(self.outputs) >= 2

    @property
    def partial(self) -> bool:
        """Joint tasks conditioned on text get partial captions, which leave attributes open."""
        return self.joint and "text" in self.inputs

    def __str__(self) -> str:
        return self.name


def _side(text: str, what: str, spec: str) -> tuple[str, ...]:
    names = tuple(p.strip().lower() for p in text.split("+"))
    if not names or any(not p for p in names):
        raise InvalidInputError(f"task {spec!r} has an empty {what} modality; write e.g. 'text->image+audio'")
    for m in names:
        if m not in MODALITIES:
            raise InvalidInputError(f"task {spec!r}: unknown modality {m!r}; accepted: {', '.join(MODALITIES)}")
    if len(set(names)) != len(names):
        raise InvalidInputError(f"task {spec!r} names a modality twice among its {what}s")
    return names


def parse_task(spec: str) -> Task:
    """``"image+audio->video"`` -> Task(("image", "audio"), ("video",)). Raises InvalidInputError."""
    parts = spec.split("->")
    if len(parts) != 2:
        raise InvalidInputError(f"task {spec!r} must look like 'INPUT[+INPUT]->OUTPUT[+OUTPUT]', e.g. 'text->image+audio'")
    return Task(_side(parts[0], "input", spec), _side(parts[1], "output", spec))


def parse_tasks(specs: str | list[str] | None) -> list[Task]:
    """Comma-separated task specs (or a list) -> tasks; ``None`` or empty -> :data:`DEFAULT_TASKS`."""
    if specs is None:
        return list(DEFAULT_TASKS)
    items = specs.split(",") if isinstance(specs, str) else list(specs)
    items = [s.strip() for s in items if s.strip()]
    if not items:
        return list(DEFAULT_TASKS)
    tasks = [parse_task(s) for s in items]
    seen: set[str] = set()
    for t in tasks:
        if t.name in seen:
            raise InvalidInputError(f"task {t.name!r} is listed twice")
        seen.add(t.name)
    return tasks


#: Every single-input single-output pair among the four modalities (the any-to-any matrix), one
#: composed-input task and three joint tasks.
DEFAULT_TASKS: tuple[Task, ...] = (
    *(Task((a,), (b,)) for a in MODALITIES for b in MODALITIES if a != b),
    Task(("image", "audio"), ("video",)),
    Task(("text",), ("image", "audio")),
    Task(("text",), ("video", "audio")),
    Task(("image",), ("text", "audio")),
)
