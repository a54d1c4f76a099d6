"""Pictures of a graph: Mermaid flowchart text, and a PNG drawn with matplotlib."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..io import atomic_path
from .graph import Graph
from .validate import ValidatedGraph


def _structure(graph: Graph, validated: ValidatedGraph | None):
    """(edges as (src id, dst id, label), graph outputs as name -> (node, port)) for drawing."""
    edges: list[tuple[str, str, str]] = []
    source = validated.edges if validated is not None else graph.edges()
    for e in source:
        if e.from_graph_input:
            edges.append((f"in:{e.source}", f"node:{e.target}", e.target_port))
        else:
            label = e.source_port if e.source_port in ("", e.target_port) else f"{e.source_port} → {e.target_port}"
            edges.append((f"node:{e.source}", f"node:{e.target}", label or e.target_port))
    if validated is not None:
        outputs = dict(validated.outputs)
    else:
        outputs = {}
        for name, ref in graph.outputs.items():
            node, _, port = ref.partition(".")
            outputs[name] = (node, port)
    for name, (node, port) in outputs.items():
        edges.append((f"node:{node}", f"out:{name}", port))
    return edges, outputs


def _mid(uid: str) -> str:
    kind, _, name = uid.partition(":")
    return f"{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"


def to_mermaid(graph: Graph, validated: ValidatedGraph | None = None) -> str:
    """A Mermaid ``flowchart LR`` of the graph: inputs as stadiums, nodes as boxes, outputs as parallelograms."""
    edges, outputs = _structure(graph, validated)
    lines = ["flowchart LR"]
    for name, gi in graph.inputs.items():
        lines.append(f'  {_mid("in:" + name)}(["{name}: {gi.type}"])')
    for name, spec in graph.nodes.items():
        lines.append(f'  {_mid("node:" + name)}["{name}<br/><small>{spec.type}</small>"]')
    for name in outputs:
        lines.append(f'  {_mid("out:" + name)}[/"{name}"/]')
    for src, dst, label in edges:
        lines.append(f"  {_mid(src)} -->|{label}| {_mid(dst)}" if label else f"  {_mid(src)} --> {_mid(dst)}")
    return "\n".join(lines) + "\n"


def _layers(graph: Graph, edges: list[tuple[str, str, str]], outputs: dict) -> list[list[str]]:
    ids = [f"in:{n}" for n in graph.inputs] + [f"node:{n}" for n in graph.nodes]
    preds: dict[str, list[str]] = {i: [] for i in ids}
    for src, dst, _ in edges:
        if dst in preds and src in preds:
            preds[dst].append(src)
    depth: dict[str, int] = {}

    def d(i: str, seen: tuple = ()) -> int:
        if i in depth:
            return depth[i]
        if i in seen:  # a cycle (invalid graph): cut it for drawing
            return 0
        depth[i] = 0 if i.startswith("in:") else 1 + max((d(p, seen + (i,)) for p in preds[i]), default=0)
        return depth[i]

    for i in ids:
        d(i)
    for i in ids:  # a graph input sits just before its first consumer, not always at the far left
        if i.startswith("in:"):
            consumers = [depth[t] for s, t, _ in edges if s == i and t in depth]
            depth[i] = max(0, min(consumers, default=1) - 1)
    for name, (node, _) in outputs.items():  # an output sits just after the node that makes it
        depth[f"out:{name}"] = depth.get(f"node:{node}", 0) + 1
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=0) + 1)]
    for i, k in depth.items():
        layers[k].append(i)
    # order each layer by the mean position of its predecessors, to keep edges from crossing
    pos: dict[str, float] = {}
    all_preds = {dst: [s for s, t, _ in edges if t == dst] for _, dst, _ in edges}
    for layer in layers:
        layer.sort(key=lambda i: sum(pos.get(p, 0) for p in all_preds.get(i, [])) / max(1, len(all_preds.get(i, []))))
        for k, i in enumerate(layer):
            pos[i] = k - (len(layer) - 1) / 2
    return [layer for layer in layers if layer]


def draw_png(graph: Graph, path: str | os.PathLike, validated: ValidatedGraph | None = None, dpi: int = 120) -> Path:
    """Draw the graph left to right into a PNG at ``path`` (written atomically); returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    edges, outputs = _structure(graph, validated)
    layers = _layers(graph, edges, outputs)
    height = max(len(layer) for layer in layers) if layers else 1
    fig, ax = plt.subplots(figsize=(max(4.0, 2.6 * len(layers)), max(2.0, 1.3 * height)))
    ax.set_axis_off()
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ax.set_ylim(-height / 2 - 0.2, height / 2 + 0.2)
    style = {
        "in": dict(boxstyle="round,pad=0.5", fc="#dbeafe", ec="#1d4ed8"),
        "node": dict(boxstyle="square,pad=0.5", fc="#fef3c7", ec="#b45309"),
        "out": dict(boxstyle="sawtooth,pad=0.5", fc="#dcfce7", ec="#15803d"),
    }
    texts = {}
    for x, layer in enumerate(layers):
        for k, uid in enumerate(layer):
            y = (len(layer) - 1) / 2 - k
            kind, _, name = uid.partition(":")
            if kind == "in":
                label = f"{name}\n({graph.inputs[name].type})"
            elif kind == "node":
                label = f"{name}\n{graph.nodes[name].type}" if name in graph.nodes else name
            else:
                label = name
            texts[uid] = ax.text(x, y, label, ha="center", va="center", fontsize=9, bbox=style[kind], zorder=3)
    for src, dst, label in edges:
        if src not in texts or dst not in texts:
            continue
        a, b = texts[src], texts[dst]
        ax.annotate(
            "", xy=b.get_position(), xytext=a.get_position(), zorder=2,
            arrowprops=dict(arrowstyle="-|>", color="#374151", patchA=a.get_bbox_patch(), patchB=b.get_bbox_patch(), shrinkA=2, shrinkB=2),
        )
        (x0, y0), (x1, y1) = a.get_position(), b.get_position()
        if label:
            f = 0.38  # nearer the source than the middle: labels of edges into one node stay apart
            ax.text(x0 + f * (x1 - x0), y0 + f * (y1 - y0) + 0.08, label, ha="center", va="bottom", fontsize=7, color="#374151", zorder=4)
    ax.set_title(graph.name, fontsize=11)
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", metadata={"Software": None})  # same graph, same bytes
    plt.close(fig)
    return target
