"""The tutorial's compose examples, measured with the ToyWorld probes (CI runs this file).

    python docs/tutorial/compose_examples.py --run runs/sketch [--n 48] [--out runs/sketch/examples]

``--run`` is the folder ``codi train toyworld --out`` wrote: one weights folder per modality.
Prints JSON with the accuracies and exits with status 1 when one is below its threshold:
``TUTORIAL_MIN_SKETCH_VIDEO`` (sketch -> video shape accuracy, default 0.85) and
``TUTORIAL_MIN_SKETCH_TEXT_VIDEO`` (sketch + "something {color} moving {motion}" -> video, each
of the three attributes, default 0.80).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from codi_sdk import Composer
from codi_sdk.toyworld import Scene, item_rng, probe_video, scene_at
from codi_sketch.probe import probe_sketch
from codi_sketch.render import render_sketch


def examples(run: Path, out: Path) -> None:
    """The three compositions of the tutorial, once each; the results are saved under ``out``."""
    # --8<-- [start:examples]
    composer = Composer(weights={m: run / m for m in ("text", "video", "sketch")})
    circle = render_sketch(Scene("red", "circle", "left"), np.random.default_rng(0))  # uint8 (32, 32)

    # sketch -> video: the video shows a circle; colour and motion are the model's choice
    video = composer({"sketch": circle}, ["video"], steps=25, guidance=4.0, seed=0)["video"][0]

    # text -> sketch
    triangle = composer({"text": "a triangle"}, ["sketch"], steps=25, guidance=4.0, seed=0)["sketch"][0]

    # sketch + text -> video: shape from the sketch, colour and motion from the words
    inputs = [("sketch", triangle), ("text", "something red moving left")]
    red_triangle = composer(inputs, ["video"], steps=25, guidance=4.0, seed=0)["video"][0]
    # --8<-- [end:examples]
    video.save(out / "sketch_to_video.gif")
    triangle.save(out / "text_to_sketch.png")
    red_triangle.save(out / "sketch_and_text_to_video.gif")


def measure(run: Path, n: int, steps: int, guidance: float, seed: int) -> dict:
    """Accuracies over the first ``n`` items of the ``seen`` split (evaluation seeds)."""
    composer = Composer(weights={m: run / m for m in ("text", "video", "sketch")})
    scenes = [scene_at("seen", i, seed) for i in range(n)]
    sketches = [render_sketch(s, item_rng("seen", i, "generate", seed)) for i, s in enumerate(scenes)]
    options = dict(steps=steps, guidance=guidance, seed=seed, progress=False)

    videos = composer.batch([{"sketch": k} for k in sketches], ["video"], **options)
    shape_ok = [probe_video(v["video"])["shape"] == s.shape for v, s in zip(videos, scenes)]

    drawn = composer.batch([{"text": f"a {s.shape}"} for s in scenes], ["sketch"], **options)
    drawn_ok = [probe_sketch(d["sketch"])["shape"] == s.shape for d, s in zip(drawn, scenes)]

    both = [[("sketch", k), ("text", f"something {s.color} moving {s.motion}")] for k, s in zip(sketches, scenes)]
    videos = composer.batch(both, ["video"], **options)
    read = [probe_video(v["video"]) for v in videos]
    per_attr = {a: float(np.mean([r[a] == getattr(s, a) for r, s in zip(read, scenes)])) for a in ("color", "shape", "motion")}
    return {
        "n": n,
        "sketch->video": {"shape": float(np.mean(shape_ok))},
        "text->sketch": {"shape": float(np.mean(drawn_ok))},
        "sketch+text->video": {**per_attr, "mean": float(np.mean(list(per_attr.values()))), "min": min(per_attr.values())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="folder written by `codi train toyworld --out`")
    parser.add_argument("--n", type=int, default=48, help="seen scenes to measure on")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="where to save the examples (default RUN/examples)")
    args = parser.parse_args(argv)
    t0 = time.time()
    examples(args.run, args.out or args.run / "examples")
    result = measure(args.run, args.n, args.steps, args.guidance, args.seed)
    thresholds = {
        "sketch->video": float(os.environ.get("TUTORIAL_MIN_SKETCH_VIDEO", 0.85)),
        "sketch+text->video": float(os.environ.get("TUTORIAL_MIN_SKETCH_TEXT_VIDEO", 0.80)),
    }
    measured = {"sketch->video": result["sketch->video"]["shape"], "sketch+text->video": result["sketch+text->video"]["min"]}
    result["thresholds"] = thresholds
    result["failed"] = [k for k, v in thresholds.items() if measured[k] < v]
    result["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(result, indent=2))
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
