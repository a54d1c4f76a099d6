"""The video modality: validation, conversion, files, and the factories of its components.

A canonical video is a float32 tensor ``[T, 3, S, S]`` in [-1, 1] (ToyWorld: 8 frames of 32×32 RGB,
4 fps as metadata). Each frame follows the image modality's rules (``codi_image``): integers are
0..255, floats are in [-1, 1], alpha is composited on black, grayscale becomes RGB, frames are
resized to S×S (bicubic, antialiased, no crop). A video with another number of frames is resampled
uniformly in time (nearest frame) to T frames.

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

    from codi_sdk.outputs import VideoOutput

    from .diffuser import VideoDiffuser
    from .encoder import VideoEncoder

_CHANNELS = (1, 3, 4)
#: Extensions :meth:`VideoModality.load` reads through imageio (needs ``imageio`` + ``imageio-ffmpeg``).
_IMAGEIO_EXTENSIONS = (".mp4", ".webm", ".mov", ".avi", ".mkv")
#: Extensions read through PIL as animations.
_PIL_EXTENSIONS = (".gif", ".png", ".apng", ".webp")


def resample_indices(num_in: int, num_out: int) -> np.ndarray:
    """Indices of ``num_out`` frames spread uniformly over ``num_in`` (first and last kept).

    >>> resample_indices(16, 8).tolist()
    [0, 2, 4, 6, 9, 11, 13, 15]
    """
    return np.floor(np.linspace(0, num_in - 1, num_out) + 0.5).astype(np.int64)


class VideoModality(Modality):
    """RGB videos; a canonical sample is a float32 tensor ``[num_frames, 3, size, size]`` in [-1, 1].

    Args:
        num_frames: frames per video that :meth:`convert` resamples to (8 in ToyWorld).
        size: frame side in pixels that :meth:`convert` resizes to (32 in ToyWorld).
        fps: frame rate written to files and outputs (metadata only; 4 in ToyWorld).
    """

    name = "video"
    sample_type = (
        "a video file path (.gif, .npy, or .mp4 with imageio-ffmpeg), a multi-frame PIL image, a list of frames "
        "(PIL images, (H, W[, C]) arrays or (C, H, W) tensors), or a numpy array / torch tensor shaped "
        "(T, H, W, 1|3|4), (T, 1|3|4, H, W) or (T, H, W) grayscale, with T >= 2 frames, uint8 0..255 or float "
        "in [-1, 1]; canonical: float32 tensor [8, 3, 32, 32] in [-1, 1]"
    )
    extensions = (".gif", ".npy", ".mp4")

    def __init__(self, num_frames: int = 8, size: int = 32, fps: float = 4.0):
        if int(num_frames) < 2:
            raise ValueError(f"num_frames must be at least 2, got {num_frames!r}")
        if int(size) < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size!r}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.num_frames = int(num_frames)
        self.size = int(size)
        self.fps = float(fps)

    # -- data ---------------------------------------------------------------------------------
    def convert(self, value: Any) -> "torch.Tensor":
        """Any accepted video value -> float32 tensor ``[num_frames, 3, size, size]`` in [-1, 1].

        * path (``str`` or ``os.PathLike``) of an existing video file: read by :meth:`load`;
        * a PIL image with several frames (an opened GIF);
        * a list or tuple of frames, each anything the image modality accepts;
        * numpy array or torch tensor ``(T, H, W, C)``, ``(T, C, H, W)`` (C in 1, 3, 4) or ``(T, H, W)``;
          numpy prefers channels-last and torch channels-first when both read.

        Single images, one-frame videos, empty values, NaN/infinite values and other ranks are
        refused with an :class:`~codi_sdk.errors.InvalidInputError`.
        """
        import torch

        if isinstance(value, (str, os.PathLike)):
            return self._convert_path(value)
        from PIL import Image

        if isinstance(value, Image.Image):
            return self._convert_frames(_pil_frames(self, value), "PIL image")
        if isinstance(value, (list, tuple)):
            return self._convert_frames(list(value), "list")
        if isinstance(value, torch.Tensor):
            return self._convert_array(value.detach().cpu(), channels_first=True)
        if isinstance(value, np.ndarray):
            return self._convert_array(value, channels_first=False)
        raise self.invalid(f"cannot convert a {type(value).__name__} to a video")

    def _convert_path(self, value: str | os.PathLike) -> "torch.Tensor":
        text = os.fspath(value)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        if not text.strip():
            raise self.invalid("got an empty string, which names no video file")
        if not Path(text).is_file():
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise self.invalid(
                f"got the string {shown!r}, which is not an existing video file (to condition on words, use the 'text' modality)"
            )
        return self.load(text)

    def _convert_array(self, value: Any, channels_first: bool) -> "torch.Tensor":
        """A whole video as one numpy array / torch tensor -> canonical sample."""
        import torch

        kind = "tensor" if isinstance(value, torch.Tensor) else "array"
        shape = tuple(value.shape)
        if value.ndim == 2:
            raise self.invalid(f"got a 2-D {kind} of shape {shape}, a single grayscale image; use the 'image' modality for images")
        if value.ndim == 5:
            raise self.invalid(f"got a 5-D {kind} of shape {shape}; pass one video at a time (e.g. x[0])")
        if value.ndim not in (3, 4):
            raise self.invalid(f"got a {value.ndim}-D {kind} of shape {shape}; a video is 3-D (T, H, W) or 4-D")
        if 0 in shape:
            raise self.invalid(f"got an empty {kind} of shape {shape}")
        if value.ndim == 3:
            if shape[-1] in _CHANNELS or shape[0] in _CHANNELS:
                raise self.invalid(
                    f"got a 3-D {kind} of shape {shape}, which reads as a single image (H, W, C) or (C, H, W); use the "
                    "'image' modality for images, or pass a grayscale video as (T, H, W, 1)"
                )
            layout = "thw"
        else:
            second_ok, last_ok = shape[1] in _CHANNELS, shape[-1] in _CHANNELS
            if second_ok and last_ok:
                layout = "tchw" if channels_first else "thwc"
            elif last_ok:
                layout = "thwc"
            elif second_ok:
                layout = "tchw"
            else:
                raise self.invalid(f"got a 4-D {kind} of shape {shape}; a 4-D video must be (T, H, W, 1|3|4) or (T, 1|3|4, H, W)")
        _check_values(self, value, kind)
        if shape[0] < 2:
            raise self.invalid(f"got a {kind} of shape {shape} with a single frame; use the 'image' modality for one image")
        # Pick the frames first (a long clip costs only num_frames conversions), then convert each
        # one as the image modality would, as a channels-first tensor so its layout is unambiguous.
        frames = []
        for i in resample_indices(shape[0], self.num_frames):
            frame = value[int(i)]
            frame = frame if isinstance(frame, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frame))
            if layout == "thwc":
                frame = frame.permute(2, 0, 1)
            frames.append(frame)
        return self._stack(frames, kind)

    def _convert_frames(self, frames: list, kind: str) -> "torch.Tensor":
        """A list of per-frame values -> canonical sample (each frame through the image modality)."""
        if len(frames) == 0:
            raise self.invalid(f"got an empty {kind} (no frames)")
        if len(frames) == 1:
            raise self.invalid(f"got a {kind} with a single frame; use the 'image' modality for one image")
        picked = [frames[int(i)] for i in resample_indices(len(frames), self.num_frames)]
        return self._stack(picked, kind)

    def _stack(self, frames: list, kind: str) -> "torch.Tensor":
        import torch
        from codi_image.modality import ImageModality

        image = ImageModality(size=self.size)
        out = []
        for i, frame in enumerate(frames):
            try:
                out.append(image.convert(frame))
            except InvalidInputError as exc:
                reason = str(exc).split("; accepted:")[0].removeprefix("image: ")
                raise self.invalid(f"a frame of the {kind} cannot be converted ({reason})") from exc
        return torch.stack(out).contiguous()

    def load(self, path: str | os.PathLike) -> "torch.Tensor":
        """Read a video file: ``.npy`` (an array :meth:`convert` accepts), an animated ``.gif``
        (``.png``/``.webp`` animations too) through PIL, or ``.mp4`` (and other containers)
        through imageio when ``imageio`` and ``imageio-ffmpeg`` are installed."""
        p = Path(path)
        if not p.is_file():
            raise self.invalid(f"video file not found: {p}")
        suffix = p.suffix.lower()
        if suffix == ".npy":
            try:
                array = np.load(p, allow_pickle=False)
            except Exception as exc:
                raise self.invalid(f"cannot read {p} as a numpy array ({exc})") from exc
            return self.convert(array)
        if suffix in _PIL_EXTENSIONS:
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(p) as img:
                    frames = _pil_frames(self, img)
            except (UnidentifiedImageError, OSError) as exc:
                raise self.invalid(f"cannot decode {p} as an animation ({exc})") from exc
            return self._convert_frames(frames, f"file {p.name}")
        if suffix in _IMAGEIO_EXTENSIONS:
            try:
                import imageio.v3 as iio
            except ImportError as exc:
                raise self.invalid(
                    f"reading {suffix} needs imageio and imageio-ffmpeg (`pip install imageio imageio-ffmpeg`); "
                    "or convert the clip to .gif or .npy"
                ) from exc
            try:
                array = np.asarray(iio.imread(p))
            except Exception as exc:
                raise self.invalid(f"cannot decode {p} as a video ({exc})") from exc
            return self.convert(array)
        raise self.invalid(
            f"cannot read files of type {suffix or '(no extension)'!r}: {p}; readable: "
            f"{', '.join(('.npy',) + _PIL_EXTENSIONS + _IMAGEIO_EXTENSIONS)}"
        )

    def save(self, sample: Any, path: str | os.PathLike) -> Path:
        """Write ``sample`` to ``path`` atomically as an animated GIF, ``.npy`` (uint8 THWC) or
        ``.mp4`` (needs imageio-ffmpeg), by extension."""
        return self.to_output(sample).save(path)

    def to_output(self, sample: Any) -> "VideoOutput":
        """Canonical sample (or anything :meth:`convert` accepts) -> ``VideoOutput`` (uint8 THWC, ``fps``).

        A canonical ``[T, 3, H, W]`` float tensor keeps its frames and size; other values are converted first.
        """
        import torch

        from codi_sdk.outputs import VideoOutput

        canonical = isinstance(sample, torch.Tensor) and sample.ndim == 4 and sample.shape[1] == 3 and sample.is_floating_point()
        if not canonical:
            sample = self.convert(sample)
        elif not torch.isfinite(sample).all():
            raise self.invalid("the video holds NaN or infinite values")
        x = sample.detach().float().cpu().clamp(-1.0, 1.0)
        array = ((x + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        return VideoOutput(modality=self.name, array=array, fps=self.fps)

    # -- weights ------------------------------------------------------------------------------
    def default_weights(self) -> Path | None:
        """``codi_video/weights/toyworld`` inside the package, if the package ships it."""
        folder = Path(__file__).parent / "weights" / "toyworld"
        return folder if folder.is_dir() else None

    def load_encoder(self, path: str | os.PathLike | None = None) -> "VideoEncoder":
        """The prompt encoder from ``path/encoder`` (default: shipped weights).
        A folder written by ``codi convert-official`` (or its ``video/`` sub-folder) gives the official
        CoDi encoder (``codi_video.official_diffuser``).
        """
        from codi_sdk.official.folder import official_folder

        official = official_folder(path, self.name)
        if official is not None:  # written by `codi convert-official`
            from .official_diffuser import OfficialVideoEncoder

            return OfficialVideoEncoder.from_official(official)
        from .encoder import VideoEncoder

        root = self.resolve_weights(path)
        if not (root / "encoder" / "config.json").is_file():
            raise WeightsNotFoundError(
                f"no video encoder in {root}: expected encoder/config.json (a CLIP vision folder) and encoder/temporal/"
            )
        return VideoEncoder.from_pretrained(root / "encoder")

    def load_diffuser(self, path: str | os.PathLike | None = None) -> "VideoDiffuser":
        """The diffuser from ``path`` (``vae/``, ``unet/`` + ``unet/temporal/``, ``env_encoder/``,
        ``joint/``). Default: shipped weights. To inflate an image folder use
        ``VideoDiffuser.from_image_pretrained``.
        A folder written by ``codi convert-official`` (or its ``video/`` sub-folder) gives the official
        CoDi diffuser (``codi_video.official_diffuser``).
        """
        from codi_sdk.official.folder import official_folder

        official = official_folder(path, self.name)
        if official is not None:  # written by `codi convert-official`
            from .official_diffuser import OfficialVideoDiffuser

            return OfficialVideoDiffuser.from_official(official)
        from .diffuser import VideoDiffuser

        return VideoDiffuser.from_pretrained(self.resolve_weights(path))

    def init_encoder(self) -> "VideoEncoder":
        from .encoder import VideoEncoder

        return VideoEncoder.toyworld()

    def init_diffuser(self) -> "VideoDiffuser":
        from .diffuser import VideoDiffuser

        return VideoDiffuser.toyworld()


def _check_values(modality: VideoModality, value: Any, kind: str) -> None:
    """Refuse dtypes no frame can have and NaN/infinite values anywhere in the video."""
    import torch

    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise modality.invalid(f"got a complex {kind}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise modality.invalid(f"the {kind} holds NaN or infinite values")
        return
    if value.dtype.kind not in "uifb":
        raise modality.invalid(f"got a numpy array of dtype {value.dtype}")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise modality.invalid(f"the {kind} holds NaN or infinite values")


def _pil_frames(modality: VideoModality, img: Any) -> list:
    """All frames of a PIL image (copies, so the file may be closed)."""
    from PIL import ImageSequence

    frames = [frame.copy() for frame in ImageSequence.Iterator(img)]
    if len(frames) < 2:
        raise modality.invalid(
            f"got a still image ({img.format or 'PIL'}, {len(frames)} frame); use the 'image' modality for images"
        )
    return frames
