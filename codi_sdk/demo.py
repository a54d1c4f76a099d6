"""The main job of ``make demo``: generate every modality from a text prompt with the shipped
ToyWorld weights, plus one never-paired example (audio -> image), and print what the probes read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def main(out: str = "out", steps: int = 25, guidance: float = 4.0, seed: int = 0) -> dict:
    from .composer import Composer
    from .eval.compose_generators import to_raw
    from .toyworld import probes
    from .toyworld.render import render_audio
    from .toyworld.scenes import Scene, item_rng

    composer = Composer()
    folder = Path(out)
    prompt = "a red circle moving left"
    report: dict = {"prompt": prompt, "outputs": {}}
    result = composer({"text": prompt}, ["image", "video", "audio", "text"], steps=steps, guidance=guidance, seed=seed)
    for path in result.save(folder / "from_text"):
        print("wrote", path)
    for m, outs in result.items():
        report["outputs"][f"text->{m}"] = probes.probe(m, to_raw(outs[0]))
    scene = Scene("blue", "square", "up")
    audio = render_audio(scene, item_rng("seen", 0, "audio"))
    (folder / "audio_to_image").mkdir(parents=True, exist_ok=True)
    from .outputs import AudioOutput

    AudioOutput("audio", waveform=np.asarray(audio, np.float32)).save(folder / "audio_to_image" / "input.wav")
    res = composer({"audio": (audio, 16000)}, ["image"], steps=steps, guidance=guidance, seed=seed)
    for path in res.save(folder / "audio_to_image"):
        print("wrote", path)
    report["outputs"]["audio(blue square up)->image"] = probes.probe("image", to_raw(res["image"][0]))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
