"""Re-create the example inputs in ``inputs/`` (they are committed; run this to rebuild them).

* ``hello_en.wav``: English speech synthesised by espeak-ng (needs the Debian package espeak-ng).
* ``grace_hopper_sign.jpg``: matplotlib's sample photo of Grace Hopper with a caption drawn under it.
* ``red_circle_right.gif``: a ToyWorld video, a red circle moving right (8 frames, 32x32).

    python examples/studio/make_inputs.py
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).parent / "inputs"
SENTENCE = "The cat is sleeping on the table in the kitchen."


def speech() -> None:
    import soundfile as sf

    from codi_sdk.studio.types import resample

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), SENTENCE], check=True)
        wave, rate = sf.read(wav, dtype="float32")
    sf.write(HERE / "hello_en.wav", resample(wave, rate, 16000), 16000, subtype="PCM_16")
    (HERE / "hello_en.txt").write_text(SENTENCE + "\n")


def photo() -> None:
    import matplotlib.cbook as cbook

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        im = im.convert("RGB")
    canvas = Image.new("RGB", (im.width, im.height + 80), "white")
    canvas.paste(im, (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((20, im.height + 18), "GRACE HOPPER 1984", fill="black", font=ImageFont.load_default(size=40))
    canvas.save(HERE / "grace_hopper_sign.jpg", quality=85)


def toyworld_video() -> None:
    """A ToyWorld video (shared/TOYWORLD.md rules): a red circle moving right, 8 frames of 32x32."""
    from codi_sdk.toyworld import Scene, render_video

    frames = render_video(Scene("red", "circle", "right"), np.random.default_rng(0))
    images = [Image.fromarray(f) for f in frames]
    images[0].save(HERE / "red_circle_right.gif", save_all=True, append_images=images[1:], duration=250, loop=0)


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    speech()
    photo()
    toyworld_video()
    print(f"wrote {', '.join(sorted(p.name for p in HERE.iterdir()))}")
