"""``codi toyworld``: render a ToyWorld scene to a file, or probe a file back to its attributes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer

from . import app

toyworld_app = typer.Typer(
    help="ToyWorld, the procedural world of the shipped models: render scenes, probe files.",
    no_args_is_help=True,
)
app.add_typer(toyworld_app, name="toyworld")

#: File extensions each modality can be written to / read from.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image": (".png", ".jpg", ".jpeg", ".npy"),
    "video": (".gif", ".mp4", ".npy"),
    "audio": (".wav", ".flac", ".npy"),
    "text": (".txt",),
}
_BY_EXTENSION = {".png": "image", ".jpg": "image", ".jpeg": "image", ".gif": "video", ".mp4": "video", ".wav": "audio", ".flac": "audio", ".txt": "text"}


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _check_modality(modality: str) -> str:
    modality = modality.strip().lower()
    if modality not in EXTENSIONS:
        _fail(f"unknown modality {modality!r}; accepted: {', '.join(EXTENSIONS)}")
    return modality


@toyworld_app.command("render")
def render_cmd(
    modality: str = typer.Option(..., "--modality", "-m", help="image, video, audio or text."),
    color: str = typer.Option(..., "--color", help="red, green, blue or yellow."),
    shape: str = typer.Option(..., "--shape", help="circle, square or triangle."),
    motion: str = typer.Option(..., "--motion", help="left, right, up or down."),
    seed: int = typer.Option(0, "--seed", help="Seed of the rendering (same seed, same file)."),
    keep: Optional[str] = typer.Option(
        None, "--keep", help="Text only: comma-separated attributes a partial caption names, e.g. 'color,shape'."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="File to write; its extension picks the format."),
) -> None:
    """Render one scene: image .png/.jpg/.npy, video .gif/.mp4/.npy, audio .wav/.flac/.npy, text .txt."""
    import numpy as np

    from ..errors import CodiError
    from ..outputs import AudioOutput, ImageOutput, TextOutput, VideoOutput
    from ..toyworld.render import caption, partial_caption, render
    from ..toyworld.scenes import parse_scene

    modality = _check_modality(modality)
    suffix = output.suffix.lower()
    if suffix not in EXTENSIONS[modality]:
        _fail(f"cannot write {modality} as {suffix or 'a file without extension'!r}; accepted: {', '.join(EXTENSIONS[modality])}")
    if keep is not None and modality != "text":
        _fail("--keep applies to text only")
    try:
        scene = parse_scene(color, shape, motion)
        rng = np.random.default_rng(seed)
        if modality == "text":
            if keep is None:
                text = caption(scene, rng)
            else:
                text = partial_caption(scene, rng, keep=[k.strip() for k in keep.split(",") if k.strip()])[0]
            TextOutput("text", text=text).save(output)
        else:
            sample = render(modality, scene, rng)
            if modality == "image":
                ImageOutput("image", array=sample).save(output)
            elif modality == "video":
                VideoOutput("video", array=sample, fps=4.0).save(output)
            else:
                AudioOutput("audio", waveform=sample, sample_rate=16000).save(output)
    except CodiError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write {output}: {exc}")
    typer.echo(str(output))


def load_sample(path: Path, modality: str | None = None) -> tuple[str, Any]:
    """Read a file into ``(modality, raw sample)``; the modality comes from the extension or the shape of a .npy."""
    import numpy as np

    from ..errors import InvalidInputError

    if not path.is_file():
        raise InvalidInputError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if modality is None:
        if suffix == ".npy":
            pass
        elif suffix in _BY_EXTENSION:
            modality = _BY_EXTENSION[suffix]
        else:
            raise InvalidInputError(f"cannot tell the modality of {path.name!r}; pass --modality")
    elif suffix not in EXTENSIONS[modality]:
        raise InvalidInputError(f"{modality} files must end in {', '.join(EXTENSIONS[modality])}; got {path.name!r}")
    try:
        if suffix == ".npy":
            sample = np.load(path, allow_pickle=False)
            if modality is None:
                modality = {1: "audio", 3: "image", 4: "video"}.get(sample.ndim)
                if modality is None:
                    raise InvalidInputError(f"cannot tell the modality of an array of shape {sample.shape}; pass --modality")
        elif modality == "text":
            sample = path.read_text(encoding="utf-8")
        elif modality == "image":
            from PIL import Image

            with Image.open(path) as im:
                sample = np.asarray(im.convert("RGB"))
        elif modality == "video":
            if suffix == ".mp4":
                import imageio.v3 as iio

                sample = np.asarray(iio.imread(path))[..., :3]
            else:
                from PIL import Image, ImageSequence

                with Image.open(path) as im:
                    sample = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
        else:
            import soundfile as sf

            sample, rate = sf.read(str(path), dtype="float32", always_2d=True)
            if rate != 16000:
                raise InvalidInputError(f"{path.name}: sample rate {rate} Hz; ToyWorld audio is 16000 Hz")
            sample = sample.mean(axis=1)
    except InvalidInputError:
        raise
    except ImportError as exc:
        raise InvalidInputError(f"cannot read {path.name}: {exc}") from exc
    except Exception as exc:  # undecodable file: name it and say why
        raise InvalidInputError(f"cannot read {path.name} as {modality or 'an array'}: {exc}") from exc
    return modality, sample


@toyworld_app.command("probe")
def probe_cmd(
    file: Path = typer.Argument(..., help="A rendering or a generated sample (png, gif, wav, txt, npy, ...)."),
    modality: Optional[str] = typer.Option(None, "--modality", "-m", help="image, video, audio or text (default: from the file)."),
) -> None:
    """Read the attributes a file shows and print them as JSON, e.g. {"color": "red", "shape": "circle"}."""
    from ..errors import CodiError
    from ..toyworld.probes import probe

    if modality is not None:
        modality = _check_modality(modality)
    try:
        modality, sample = load_sample(file, modality)
        attributes = probe(modality, sample)
    except CodiError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(attributes))
