"""mkdocs hook: draws the ToyWorld figures of docs/toyworld.md from the renderers themselves.

``on_pre_build`` writes, under ``<docs_dir>/assets/generated/``:

* ``toyworld_grid.png`` — an image of every colour × shape (held-out pairs outlined);
* ``video_strip.png`` — the 8 frames of one video per motion;
* ``spectrogram.png`` — spectrograms of the three timbres and the four loudness envelopes.

A file is only rewritten when its bytes change, so ``mkdocs serve`` does not rebuild in a loop.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    data = buf.getvalue()
    if path.exists() and path.read_bytes() == data:
        return
    from codi_sdk.io import atomic_write_bytes

    atomic_write_bytes(path, data)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def image_grid(path: Path) -> None:
    from codi_sdk.toyworld import COLORS, HELDOUT, SHAPES, Scene, render_image

    fig = _figure(6.4, 5.0)
    for i, color in enumerate(COLORS):
        for j, shape in enumerate(SHAPES):
            ax = fig.add_subplot(len(SHAPES), len(COLORS), j * len(COLORS) + i + 1)
            ax.imshow(render_image(Scene(color, shape, "left"), np.random.default_rng([i, j])), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            held = (color, shape) in HELDOUT
            for spine in ax.spines.values():
                spine.set_color("tab:orange" if held else "0.7")
                spine.set_linewidth(3 if held else 1)
            if j == 0:
                ax.set_title(color)
            if i == 0:
                ax.set_ylabel(shape)
    fig.suptitle("ToyWorld images (orange: held-out colour–shape pairs)", fontsize="medium")
    fig.tight_layout()
    _save(fig, path)


def video_strip(path: Path) -> None:
    from codi_sdk.toyworld import MOTIONS, Scene, render_video

    scenes = [Scene("yellow", "triangle", "left"), Scene("blue", "square", "right"), Scene("green", "circle", "up"), Scene("red", "square", "down")]
    assert [s.motion for s in scenes] == list(MOTIONS)
    fig = _figure(8.0, 4.4)
    for row, scene in enumerate(scenes):
        video = render_video(scene, np.random.default_rng(row))
        for t, frame in enumerate(video):
            ax = fig.add_subplot(len(scenes), len(video), row * len(video) + t + 1)
            ax.imshow(frame, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if t == 0:
                ax.set_ylabel(scene.motion)
            if row == 0:
                ax.set_title(f"t={t}", fontsize="small")
    fig.suptitle("ToyWorld videos: 8 frames, 2 px per frame", fontsize="medium")
    fig.tight_layout()
    _save(fig, path)


def spectrogram(path: Path) -> None:
    from codi_sdk.toyworld import MOTIONS, SHAPES, Scene, render_audio

    fig = _figure(9.0, 5.0)
    timbre = {"circle": "sine", "square": "odd harmonics", "triangle": "sawtooth"}
    for i, shape in enumerate(SHAPES):
        ax = fig.add_subplot(2, 4, i + 1)
        x = render_audio(Scene("red", shape, "down"), np.random.default_rng(i))
        ax.specgram(x, NFFT=512, Fs=16000, noverlap=384, cmap="magma", vmin=-120)
        ax.set_ylim(0, 8000)
        ax.set_title(f"red {shape}: {timbre[shape]}", fontsize="small")
        ax.set_xlabel("s")
        if i == 0:
            ax.set_ylabel("Hz")
    ax = fig.add_subplot(2, 4, 4)
    ax.axis("off")
    ax.text(0, 0.5, "pitch by colour\nred 261.63 Hz\ngreen 329.63 Hz\nblue 392.00 Hz\nyellow 523.25 Hz", va="center", fontsize="small")
    t = np.arange(16000) / 16000
    for i, motion in enumerate(MOTIONS):
        ax = fig.add_subplot(2, 4, 5 + i)
        ax.plot(t, render_audio(Scene("blue", "circle", motion), np.random.default_rng(i)), lw=0.3)
        ax.set_ylim(-0.7, 0.7)
        ax.set_title(f"{motion}", fontsize="small")
        ax.set_xlabel("s")
    fig.suptitle("ToyWorld audio: timbre by shape (top), loudness envelope by motion (bottom)", fontsize="medium")
    fig.tight_layout()
    _save(fig, path)


def on_pre_build(config, **kwargs) -> None:
    docs_dir = Path(config["docs_dir"]) if config is not None else Path(__file__).resolve().parents[1]
    out = docs_dir / "assets" / "generated"
    out.mkdir(parents=True, exist_ok=True)
    image_grid(out / "toyworld_grid.png")
    video_strip(out / "video_strip.png")
    spectrogram(out / "spectrogram.png")
