"""mkdocs hook: draws the Studio example graphs of docs/studio.md with ``codi_sdk.studio`` itself.

``on_pre_build`` writes, under ``<docs_dir>/assets/generated/``, for each ``examples/studio/*.yaml``:
``studio_<name>.png`` (matplotlib) and ``studio_<name>.mmd`` (Mermaid text, included in the page).
A file is only rewritten when its bytes change, so ``mkdocs serve`` does not rebuild in a loop.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def on_pre_build(config, **kwargs) -> None:
    from codi_sdk.io import atomic_write_bytes
    from codi_sdk.studio import Graph, GraphValidationError, NodeCatalog, draw_png, to_mermaid, validate_graph

    docs = Path(config["docs_dir"])
    out = docs / "assets" / "generated"
    out.mkdir(parents=True, exist_ok=True)
    catalog = NodeCatalog.load()
    for path in sorted((docs.parent / "examples" / "studio").glob("*.yaml")):
        graph = Graph.load(path)
        try:
            validated = validate_graph(graph, catalog, check_services=False)
        except GraphValidationError:
            validated = None
        with tempfile.TemporaryDirectory() as tmp:
            png = draw_png(graph, Path(tmp) / "g.png", validated).read_bytes()
        files = {out / f"studio_{path.stem}.png": png, out / f"studio_{path.stem}.mmd": to_mermaid(graph, validated).encode()}
        for target, data in files.items():
            if not target.exists() or target.read_bytes() != data:
                atomic_write_bytes(target, data)
