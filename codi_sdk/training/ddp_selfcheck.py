"""A few data-parallel training steps whose parameters every rank writes out, so a test can check
that DDP kept the replicas identical. Run with ``torchrun --nproc_per_node 2 -m
codi_sdk.training.ddp_selfcheck OUT``."""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def main(out: str, steps: int = 3) -> None:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed
    from safetensors.torch import save_file

    from ..registry import get_registry
    from .data import render_pairs
    from .loop import LossLog, fit, sample_indices
    from .losses import AlignmentLoss

    acc = Accelerator(cpu=True, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    set_seed(0)  # same initial weights on every rank (DDP also broadcasts them)
    reg = get_registry()
    text, image = reg.get("text").init_encoder(), reg.get("image").init_encoder()
    pairs = render_pairs("image", 32, progress=False)
    seen: list[int] = []

    def batches(step):
        idx = sample_indices(len(pairs), 8, 0, step, acc.process_index)
        seen.extend(idx.tolist())
        return {"captions": [pairs.captions[i] for i in idx], "keys": [pairs.keys[i] for i in idx], "samples": pairs.samples[idx]}

    objective = AlignmentLoss(text, image, train_text=True)
    fit(objective, batches, steps, 1e-3, acc, "ddp-selfcheck", LossLog(Path(out) / "losses.csv", enabled=False))
    state = {k: v.detach().contiguous() for k, v in objective.state_dict().items()}
    state["seen_indices"] = torch.tensor(seen)
    save_file(state, str(Path(out) / f"rank{acc.process_index}.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
