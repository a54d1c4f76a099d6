"""One training loop for every stage: accelerate, a progress bar, a loss log, checkpoints."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn


class LossLog:
    """Appends ``stage, step, name, value`` rows to a CSV file (main process only)."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if enabled and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("stage,step,name,value\n")

    def write(self, stage: str, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as fh:
            w = csv.writer(fh)
            for k, v in values.items():
                w.writerow([stage, step, k, f"{v:.6g}"])

    def last(self, stage: str) -> dict[str, float]:
        """The last logged value of every quantity of ``stage``."""
        out: dict[str, float] = {}
        if self.path.exists():
            with open(self.path) as fh:
                for row in csv.DictReader(fh):
                    if row["stage"] == stage:
                        out[row["name"]] = float(row["value"])
        return out


def fit(
    objective: nn.Module,
    batches: Callable[[int], dict],
    steps: int,
    lr: float,
    accelerator,
    stage: str,
    log: LossLog,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 0,
    log_every: int = 25,
    lr_schedule: str = "constant",
    position: int | None = None,
) -> dict[str, float]:
    """Minimise ``objective(**batches(step))["loss"]`` for ``steps`` steps with AdamW.

    ``batches(step)`` must be a deterministic function of the step (and of the process rank, for
    data parallelism). With ``checkpoint_dir`` the run saves its state every
    ``checkpoint_every`` steps and resumes from the last saved step when started again.
    ``lr_schedule`` is a diffusers schedule name (``constant``, ``linear``: to zero at the last
    step, ``cosine``, ...). ``position``: the progress bar's line (one per parallel lane). Returns the last logged losses.
    """
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    params = [p for p in objective.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"stage {stage}: nothing to train")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = get_scheduler(lr_schedule, optimizer, num_warmup_steps=0, num_training_steps=steps)
    model, optimizer, schedule = accelerator.prepare(objective, optimizer, schedule)
    start = 0
    marker = checkpoint_dir / "step.json" if checkpoint_dir else None
    if marker is not None and marker.exists():
        accelerator.load_state(str(checkpoint_dir))
        start = json.loads(marker.read_text())["step"]
    last: dict[str, float] = {}
    bar = tqdm(range(start, steps), desc=stage, disable=not accelerator.is_main_process, leave=False, position=position)
    for step in bar:
        out = model(**batches(step))
        accelerator.backward(out["loss"])
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % log_every == 0 or step == steps - 1:
            last = {k: float(v.detach()) for k, v in out.items()}
            bar.set_postfix(loss=f"{last['loss']:.4f}")
            if accelerator.is_main_process:
                log.write(stage, step, last)
        if marker is not None and checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            accelerator.save_state(str(checkpoint_dir))
            if accelerator.is_main_process:
                tmp = marker.with_suffix(".tmp")
                tmp.write_text(json.dumps({"step": step + 1}))
                os.replace(tmp, marker)
    accelerator.wait_for_everyone()
    # forget this stage's model and optimiser: accelerate's save_state writes every prepared model,
    # so without this a later stage's checkpoint would hold (and on resume, misload) earlier ones
    accelerator.free_memory(model, optimizer, schedule)
    return last


def sample_indices(n: int, batch: int, seed: int, step: int, rank: int = 0) -> torch.Tensor:
    """Deterministic batch indices for ``step`` on process ``rank``."""
    g = torch.Generator().manual_seed(hash((seed, step, rank)) % (2**63))
    return torch.randint(0, n, (batch,), generator=g)
