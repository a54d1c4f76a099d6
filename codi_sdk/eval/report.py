"""Write evaluation results: ``results.json``, ``results.md`` and ``heatmap.png``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..io import atomic_path, atomic_write_text


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def markdown_table(results: dict[str, Any]) -> str:
    """The results as a markdown table, one row per task, with chance levels for reference."""
    head = (
        f"ToyWorld {results['toyworld']} · generator **{results['generator']}** · split `{results['split']}` · "
        f"{results['n']} scenes per task · seed {results['seed']}\n\n"
    )
    if results.get("options"):
        head += "Options: " + ", ".join(f"`{k}={v}`" for k, v in results["options"].items()) + "\n\n"
    if results.get("note"):  # e.g. where rows of several evaluations were put together
        head += f"{results['note']}\n\n"
    lines = [
        "| task | accuracy | chance | colour | shape | motion | joint coherence | chance |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["tasks"]:
        pa = r["per_attribute"]
        lines.append(
            f"| `{r['task']}`{' (partial captions)' if r['partial_captions'] else ''} | {_pct(r['accuracy'])} | "
            f"{_pct(r['chance_accuracy'])} | {_pct(pa.get('color'))} | {_pct(pa.get('shape'))} | "
            f"{_pct(pa.get('motion'))} | {_pct(r['coherence'])} | {_pct(r['chance_coherence'])} |"
        )
    return head + "\n".join(lines) + "\n"


def save_heatmap(results: dict[str, Any], path: str | os.PathLike) -> Path:
    """The any-to-any accuracy matrix (input rows × output columns) as a PNG, plus joint coherence bars."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = results["matrix"]
    joint = [r for r in results["tasks"] if r["coherence"] is not None]
    fig = Figure(figsize=(8.5 if joint else 4.8, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2 if joint else 1, 1)
    rows, cols = matrix["rows"], matrix["cols"]
    if rows and cols:
        values = np.array([[np.nan if v is None else v for v in row] for row in matrix["accuracy"]], dtype=float)
        im = ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(cols)), cols)
        ax.set_yticks(range(len(rows)), rows)
        for i in range(len(rows)):
            for j in range(len(cols)):
                if not np.isnan(values[i, j]):
                    v = values[i, j]
                    ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", color="black" if v > 0.6 else "white")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attribute accuracy")
        ax.set_xlabel("output")
        ax.set_ylabel("input")
    else:
        ax.text(0.5, 0.5, "no single-input\nsingle-output tasks", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title(f"{results['generator']} · {results['split']}")
    if joint:
        bx = fig.add_subplot(1, 2, 2)
        names = [r["task"] for r in joint]
        y = np.arange(len(joint))
        bx.barh(y, [r["coherence"] for r in joint], color="tab:blue", label="coherence")
        bx.scatter([r["chance_coherence"] for r in joint], y, color="tab:red", marker="|", s=300, label="chance", zorder=3)
        bx.set_yticks(y, names)
        bx.set_xlim(0, 1)
        bx.invert_yaxis()
        bx.set_title("joint coherence")
        bx.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def write_results(results: dict[str, Any], out: str | os.PathLike) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``heatmap.png`` into ``out``; returns their paths."""
    out = Path(out)
    paths = {"json": out / "results.json", "markdown": out / "results.md", "heatmap": out / "heatmap.png"}
    atomic_write_text(paths["json"], json.dumps(results, indent=2) + "\n")
    atomic_write_text(paths["markdown"], markdown_table(results))
    save_heatmap(results, paths["heatmap"])
    return paths
