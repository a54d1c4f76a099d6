"""`SketchModality`: what a sketch is, how user values become one, files, and component factories.

A canonical sketch is a float32 tensor ``[1, 32, 32]`` in [-1, 1]: -1 is the black background,
+1 the white outline. Heavy imports (torch, diffusers, transformers) happen inside the methods,
so that ``codi plugins`` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from codi_sdk.errors import WeightsNotFoundError
from codi_sdk.modality import Modality

if TYPE_CHECKING:
    import torch

    from codi_sdk.outputs import ImageOutput

    from .diffuser import SketchDiffuser
    from .encoder import SketchEncoder

#: Side of a sketch in pixels.
SIZE = 32


class SketchModality(Modality):
    """The ``"sketch"`` modality: 32×32 grayscale outlines (white on black)."""

    name = "sketch"
    sample_type = (
        "a .png path, a PIL image, an ImageOutput, or a numpy array / torch tensor shaped (H, W), (H, W, 1) "
        "or (1, H, W), uint8 0..255 or float in [-1, 1]; canonical: float32 tensor [1, 32, 32] in [-1, 1]"
    )
    extensions = (".png",)
    #: A sketch shows shape only: training matches it to every caption of its shape.
    toyworld_shows = ("shape",)

    # -- data ---------------------------------------------------------------------------------
    def convert(self, value: Any) -> "torch.Tensor":
        """Any accepted value -> float32 ``[1, 32, 32]`` in [-1, 1] (other sizes are resized)."""
        import torch
        from PIL import Image

        from codi_sdk.outputs import ImageOutput

        if isinstance(value, (str, os.PathLike)):
            if not Path(value).is_file():
                raise self.invalid(f"{str(value)[:80]!r} is not an existing file (for words, use the 'text' modality)")
            return self.load(value)
        if isinstance(value, ImageOutput):  # e.g. a generated sketch: its RGB channels are equal
            value = value.array.mean(axis=-1).astype(np.float32) / 127.5 - 1.0
        if isinstance(value, Image.Image):
            value = np.asarray(value.convert("L"))
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise self.invalid(f"got a numpy array of dtype {value.dtype}")
            value = torch.from_numpy(np.array(value))  # a copy: the input may be read-only
        if not isinstance(value, torch.Tensor):
            raise self.invalid(f"cannot convert a {type(value).__name__} to a sketch")
        x = value.detach().cpu()
        if x.ndim == 3 and x.shape[-1] == 1:
            x = x[..., 0]
        elif x.ndim == 3 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 2 or x.numel() == 0:
            raise self.invalid(f"got shape {tuple(value.shape)}; a sketch is one grayscale picture")
        if x.dtype == torch.bool:
            x = x.float() * 2 - 1
        elif x.is_floating_point():
            x = x.float()
            if not torch.isfinite(x).all() or x.min() < -1.001 or x.max() > 1.001:
                raise self.invalid("float values must be finite and lie in [-1, 1] (for 0..255 pass uint8)")
        elif not x.is_complex() and 0 <= x.min() and x.max() <= 255:
            x = x.float() / 127.5 - 1
        else:
            raise self.invalid(f"integers must lie in 0..255 (got dtype {x.dtype})")
        if x.shape != (SIZE, SIZE):
            x = torch.nn.functional.interpolate(x[None, None], size=(SIZE, SIZE), mode="bilinear", antialias=True)[0, 0]
        return x.clamp(-1, 1)[None].contiguous()

    def load(self, path: str | os.PathLike) -> "torch.Tensor":
        """Read a PNG (any image PIL decodes) as a sketch; colour is reduced to gray."""
        from PIL import Image, UnidentifiedImageError

        p = Path(path)
        if not p.is_file():
            raise self.invalid(f"sketch file not found: {p}")
        try:
            with Image.open(p) as img:
                return self.convert(img.convert("L"))
        except (UnidentifiedImageError, OSError) as exc:
            raise self.invalid(f"cannot decode {p} as an image ({exc})") from exc

    def save(self, sample: Any, path: str | os.PathLike) -> Path:
        """Write a sketch to ``path`` (``.png``) atomically."""
        if Path(path).suffix.lower() != ".png":
            raise self.invalid(f"cannot save a sketch as {Path(path).suffix or 'no extension'!r}; accepted: .png")
        return self.to_output(sample).save(path)

    def to_output(self, sample: Any) -> "ImageOutput":
        """A sketch as an :class:`~codi_sdk.outputs.ImageOutput` (uint8 RGB, gray in every channel)."""
        from codi_sdk.outputs import ImageOutput

        gray = ((self.convert(sample)[0].numpy() + 1.0) * 127.5).round().astype(np.uint8)
        return ImageOutput(modality=self.name, array=np.repeat(gray[:, :, None], 3, axis=2))

    def render_toyworld(self, scene, rng: np.random.Generator) -> "torch.Tensor":
        """A canonical sketch of a ToyWorld scene; ``codi train toyworld`` makes its pairs with it."""
        from .render import render_sketch

        return self.convert(render_sketch(scene, rng))

    # -- components ---------------------------------------------------------------------------
    def load_encoder(self, path: str | os.PathLike | None = None) -> "SketchEncoder":
        """The prompt encoder from ``<path>/encoder`` (default: the shipped weights)."""
        from .encoder import SketchEncoder

        folder = self.resolve_weights(path) / "encoder"
        if not (folder / "config.json").is_file():
            raise WeightsNotFoundError(f"no sketch encoder in {folder.parent}: expected encoder/config.json")
        return SketchEncoder.from_pretrained(folder)

    def load_diffuser(self, path: str | os.PathLike | None = None) -> "SketchDiffuser":
        """VAE, denoiser, environment encoder and joint layers from ``path`` (default: shipped)."""
        from .diffuser import SketchDiffuser

        return SketchDiffuser.from_pretrained(self.resolve_weights(path))

    def init_encoder(self) -> "SketchEncoder":
        from .encoder import SketchEncoder

        return SketchEncoder.toyworld()

    def init_diffuser(self) -> "SketchDiffuser":
        from .diffuser import SketchDiffuser

        return SketchDiffuser.toyworld()
