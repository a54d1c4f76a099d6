"""Test-suite wide settings: tiny models run fastest on one thread, and results stay reproducible."""

import torch

torch.set_num_threads(1)
