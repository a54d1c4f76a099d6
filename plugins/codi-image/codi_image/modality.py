"""The image modality: validation, conversion, files, and the factories of its components.

Heavy imports (torch, diffusers, transformers) happen inside the methods, so that listing plugins
stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from codi_sdk.errors import InvalidInputError, WeightsNotFoundError
from codi_sdk.modality import Modality

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from codi_sdk.outputs import ImageOutput

    from .diffuser import ImageDiffuser
    from .encoder import ImageEncoder

_CHANNELS = (1, 3, 4)
_RANGE_TOLERANCE = 1e-3


class ImageModality(Modality):
    """RGB images; a canonical sample is a float32 tensor ``[3, size, size]`` in [-1, 1].

    Args:
        size: side in pixels that :meth:`convert` resizes to (32 for ToyWorld, 512 for SD 1.5).
    """

    name = "image"
    sample_type = (
        "an image file path (.png, .jpg, .jpeg, .bmp, .gif, .webp, .tif or .npy), a PIL image, or a numpy "
        "array / torch tensor shaped (H, W), (H, W, 1|3|4) or (1|3|4, H, W), uint8 0..255 or float in [-1, 1] "
        "(alpha is composited on black, grayscale becomes RGB); canonical: float32 tensor [3, S, S] in [-1, 1]"
    )
    extensions = (".png", ".jpg", ".jpeg", ".npy")

    def __init__(self, size: int = 32):
        if int(size) < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size!r}")
        self.size = int(size)

    # -- data ---------------------------------------------------------------------------------
    def convert(self, value: Any) -> "torch.Tensor":
        """Any accepted image value -> float32 tensor ``[3, size, size]`` in [-1, 1].

        * path (``str`` or ``os.PathLike``) of an existing image or ``.npy`` file: read by :meth:`load`;
        * PIL image, any mode: transparency composited on black, grayscale/palette/CMYK to RGB;
        * numpy array or torch tensor: ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` with C in 1, 3, 4.
          numpy prefers channels-last and torch channels-first when both read. Integers are 0..255
          (uint16: 0..65535), floats are in [-1, 1] like a canonical sample.

        Non-square images are resized to ``size``×``size`` without cropping (as diffusers does).
        """
        import torch

        if isinstance(value, (str, os.PathLike)):
            return self._convert_path(value)
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - pillow is a core dependency
            Image = None
        if Image is not None and isinstance(value, Image.Image):
            return self._finish(_pil_to_chw(value))
        if isinstance(value, torch.Tensor):
            return self._finish(self._array_to_chw(value.detach().cpu(), channels_first=True))
        if isinstance(value, np.ndarray):
            return self._finish(self._array_to_chw(value, channels_first=False))
        raise self.invalid(f"cannot convert a {type(value).__name__} to an image")

    def _convert_path(self, value: str | os.PathLike) -> "torch.Tensor":
        text = os.fspath(value)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        if not text.strip():
            raise self.invalid("got an empty string, which names no image file")
        if not Path(text).is_file():
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise self.invalid(
                f"got the string {shown!r}, which is not an existing image file (to condition on words, use the 'text' modality)"
            )
        return self.load(text)

    def _array_to_chw(self, value: Any, channels_first: bool) -> "torch.Tensor":
        """numpy / torch array -> float32 tensor ``[C, H, W]`` in [0, 1], C in 1, 3, 4."""
        import torch

        x = value if isinstance(value, torch.Tensor) else None
        kind = "tensor" if x is not None else "array"
        shape = tuple(value.shape)
        if value.ndim not in (2, 3):
            hint = ""
            if value.ndim == 4:
                hint = " — a batch or a stack of frames? pass one image (e.g. x[0]), or use the 'video' modality for frames"
            raise self.invalid(f"got a {value.ndim}-D {kind} of shape {shape}; an image is 2-D or 3-D{hint}")
        if 0 in shape:
            raise self.invalid(f"got an empty {kind} of shape {shape}")
        if value.ndim == 2:
            layout = "hw"
        else:
            first_ok, last_ok = shape[0] in _CHANNELS, shape[-1] in _CHANNELS
            if first_ok and last_ok:
                layout = "chw" if channels_first else "hwc"
            elif last_ok:
                layout = "hwc"
            elif first_ok:
                layout = "chw"
            else:
                hint = f" — a stack of {shape[0]} frames? use the 'video' modality" if shape[1] > 4 and shape[2] > 4 else ""
                raise self.invalid(
                    f"got a 3-D {kind} of shape {shape}; a 3-D image must be (H, W, 1|3|4) or (1|3|4, H, W){hint}"
                )
        x = _to_float01(self, value, kind)
        if layout == "hw":
            x = x[None]
        elif layout == "hwc":
            x = x.permute(2, 0, 1)
        return x.contiguous()

    def _finish(self, chw: "torch.Tensor") -> "torch.Tensor":
        """``[C, H, W]`` in [0, 1] -> RGB on black, resized, in [-1, 1]."""
        import torch.nn.functional as F

        c = chw.shape[0]
        if c == 4:
            chw = chw[:3] * chw[3:4]
        elif c == 1:
            chw = chw.expand(3, -1, -1)
        if chw.shape[-2:] != (self.size, self.size):
            chw = F.interpolate(chw[None], size=(self.size, self.size), mode="bicubic", antialias=True, align_corners=False)[0]
        return (chw.clamp(0.0, 1.0) * 2.0 - 1.0).float().contiguous()

    def load(self, path: str | os.PathLike) -> "torch.Tensor":
        """Read an image file (anything PIL decodes; first frame of an animation) or a ``.npy`` array."""
        p = Path(path)
        if not p.is_file():
            raise self.invalid(f"image file not found: {p}")
        if p.suffix.lower() == ".npy":
            try:
                array = np.load(p, allow_pickle=False)
            except Exception as exc:
                raise self.invalid(f"cannot read {p} as a numpy array ({exc})") from exc
            return self.convert(array)
        from PIL import Image, ImageOps, UnidentifiedImageError

        try:
            with Image.open(p) as img:
                img.seek(0)
                img = ImageOps.exif_transpose(img)
                img.load()
        except (UnidentifiedImageError, OSError) as exc:
            raise self.invalid(f"cannot decode {p} as an image ({exc})") from exc
        return self._finish(_pil_to_chw(img))

    def save(self, sample: Any, path: str | os.PathLike) -> Path:
        """Write ``sample`` to ``path`` atomically as PNG, JPEG or ``.npy`` (uint8 HWC), by extension."""
        return self.to_output(sample).save(path)

    def to_output(self, sample: Any) -> "ImageOutput":
        """Canonical sample (or anything :meth:`convert` accepts) -> ``ImageOutput`` (uint8 HWC).

        A canonical ``[3, H, W]`` tensor keeps its size; other values are converted first.
        """
        import torch

        from codi_sdk.outputs import ImageOutput

        if not (isinstance(sample, torch.Tensor) and sample.ndim == 3 and sample.shape[0] == 3 and sample.is_floating_point()):
            sample = self.convert(sample)
        x = sample.detach().float().cpu().clamp(-1.0, 1.0)
        array = ((x + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        return ImageOutput(modality=self.name, array=array)

    # -- weights ------------------------------------------------------------------------------
    def load_encoder(self, path: str | os.PathLike | None = None) -> "ImageEncoder":
        """The prompt encoder from ``path``: its ``encoder/`` or ``image_encoder/`` subfolder, or
        ``path`` itself if it is a CLIP folder (e.g. CLIP ViT-L/14). Default: shipped weights.
        A folder written by ``codi convert-official`` (or its ``image/`` sub-folder) gives the official
        CoDi encoder (``codi_image.official_diffuser``).
        """
        from codi_sdk.official.folder import official_folder

        official = official_folder(path, self.name)
        if official is not None:  # written by `codi convert-official`
            from .official_diffuser import OfficialImageEncoder

            return OfficialImageEncoder.from_official(official)
        from .encoder import ImageEncoder

        root = self.resolve_weights(path)
        for folder in (root / "encoder", root / "image_encoder", root):
            if (folder / "config.json").is_file():
                return ImageEncoder.from_pretrained(folder)
        raise WeightsNotFoundError(
            f"no image encoder in {root}: expected encoder/config.json, image_encoder/config.json or a CLIP "
            "folder (config.json + model.safetensors)"
        )

    def load_diffuser(self, path: str | os.PathLike | None = None) -> "ImageDiffuser":
        """The diffuser from ``path`` (our folder, or a diffusers SD 1.5 folder). Default: shipped weights.
        A folder written by ``codi convert-official`` (or its ``image/`` sub-folder) gives the official
        CoDi diffuser (``codi_image.official_diffuser``).
        """
        from codi_sdk.official.folder import official_folder

        official = official_folder(path, self.name)
        if official is not None:  # written by `codi convert-official`
            from .official_diffuser import OfficialImageDiffuser

            return OfficialImageDiffuser.from_official(official)
        from .diffuser import ImageDiffuser

        return ImageDiffuser.from_pretrained(self.resolve_weights(path))

    def init_encoder(self) -> "ImageEncoder":
        from .encoder import ImageEncoder

        return ImageEncoder.toyworld()

    def init_diffuser(self) -> "ImageDiffuser":
        from .diffuser import ImageDiffuser

        return ImageDiffuser.toyworld()


def _pil_to_chw(img: "Image.Image") -> "torch.Tensor":
    """PIL image -> float32 ``[C, H, W]`` in [0, 1] with C = 1 (gray), 3 (RGB) or 4 (RGBA)."""
    import torch

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(img, dtype=np.float32) / 65535.0
    elif mode == "F":
        array = np.asarray(img, dtype=np.float32)
    else:
        if "A" in img.getbands() or "transparency" in img.info:
            target = "RGBA"
        elif mode in ("1", "L"):
            target = "L"
        else:
            target = "RGB"
        array = np.asarray(img.convert(target), dtype=np.float32) / 255.0
    t = torch.from_numpy(np.ascontiguousarray(array)).clamp(0.0, 1.0)
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1)


def _to_float01(modality: ImageModality, value: Any, kind: str) -> "torch.Tensor":
    """Array values -> float32 tensor in [0, 1]: integers are 0..255 (uint16 0..65535), floats [-1, 1]."""
    import torch

    t = value if isinstance(value, torch.Tensor) else None
    if t is None:
        if value.dtype == np.bool_:
            return torch.from_numpy(value.astype(np.float32))
        if value.dtype.kind not in "uif":
            raise modality.invalid(f"got a numpy array of dtype {value.dtype}")
        if value.dtype == np.uint16:
            return torch.from_numpy(value.astype(np.float32) / 65535.0)
        t = torch.from_numpy(np.ascontiguousarray(value))
    if t.dtype == torch.bool:
        return t.float()
    if t.is_complex():
        raise modality.invalid(f"got a complex {kind}")
    if t.is_floating_point():
        t = t.float()
        if not torch.isfinite(t).all():
            raise modality.invalid(f"the {kind} holds NaN or infinite values")
        lo, hi = float(t.min()), float(t.max())
        if lo < -1 - _RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
            raise modality.invalid(
                f"float values must lie in [-1, 1], got [{lo:.3g}, {hi:.3g}] (for 0..1 data pass x * 2 - 1; for 0..255 pass uint8)"
            )
        return (t.clamp(-1.0, 1.0) + 1.0) / 2.0
    if t.dtype == getattr(torch, "uint16", None):
        return t.float() / 65535.0
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi > 255:
        raise modality.invalid(f"integer values must lie in 0..255, got {lo}..{hi}")
    return t.float() / 255.0
