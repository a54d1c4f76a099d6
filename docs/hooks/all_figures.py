"""mkdocs hook: runs the figure generators of the docs before each build.

Each generator lives in its own ``docs/hooks/*_figures.py`` module with an ``on_pre_build(config)``
function; this hook runs them all so ``make docs`` regenerates every picture.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def on_pre_build(config, **kwargs) -> None:
    for path in sorted(Path(__file__).parent.glob("*_figures.py")):
        if path.name == Path(__file__).name:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.on_pre_build(config)
