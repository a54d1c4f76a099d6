"""Machine translation with Apertium (Debian packages ``apertium`` and ``apertium-<pair>``)."""

from __future__ import annotations

import subprocess
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ServiceUnavailableError
from ..node import NodeType, Port
from ._service import require_program


def installed_pairs(program: str = "apertium") -> list[str]:
    """The Apertium language pairs (modes) installed, e.g. ``['eng-spa', 'spa-eng']``."""
    proc = subprocess.run([program, "-l"], capture_output=True, text=True, timeout=30)
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


class Translation(NodeType):
    """Rule-based machine translation with Apertium, fully offline."""

    name = "text.translate"
    description = "Translate text with Apertium (e.g. pair eng-spa)."
    inputs = {"text": Port("text")}
    outputs = {"text": Port("text", description="the translation")}

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        pair: str = Field("eng-spa", description="an Apertium mode, e.g. eng-spa (package apertium-eng-spa)")
        mark_unknown: bool = Field(False, description="keep Apertium's '*' before words it does not know")

    def _package(self) -> str:
        src, _, dst = self.params.pair.partition("-")
        return f"apertium-{src}-{dst.split('_')[0]}"

    def check(self) -> None:
        program = require_program("apertium", self.name, "Apertium", f"apertium {self._package()}")
        pairs = installed_pairs(program)
        if self.params.pair not in pairs:
            raise ServiceUnavailableError(
                f"{self.name}: Apertium has no pair {self.params.pair!r} (installed: {', '.join(pairs) or 'none'}); "
                f"install it with: apt-get install {self._package()} (or the reverse pair's package)"
            )

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        program = require_program("apertium", self.name, "Apertium", f"apertium {self._package()}")
        args = [program] + ([] if self.params.mark_unknown else ["-u"]) + [self.params.pair]
        proc = subprocess.run(args, input=inputs["text"], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"apertium {self.params.pair} failed: {proc.stderr.strip()}")
        return {"text": proc.stdout.strip()}
