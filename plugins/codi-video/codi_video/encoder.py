"""The video prompt encoder C_video: the image CLIP vision encoder per frame + a temporal transformer.

Each frame goes through the image plugin's :class:`~codi_image.encoder.ImageEncoder` (a
transformers ``CLIPVisionModelWithProjection``), giving unit-norm frame embeddings ``[B, T, P]``.
A small transformer with frame position embeddings (:class:`TemporalPooler`) reads them in order,
so motion — how the frames change — is visible; the result is pooled over time:

    pooled = normalize(mean_t(frames) + proj(mean_t(transformer(frames))))

``proj`` starts at zero, so a new pooler gives the normalised mean of the frame embeddings: an
encoder inflated from a trained image encoder starts by encoding a still video as its image.
``tokens = pooled[:, None]`` (the shared-space contract).

A frame embedding aligned to captions that never say *where* the object is keeps little of its
position, so the pooler can barely see motion in it. With ``keypoints=K`` the pooler also reads
each frame's patch tokens through ``K`` learned spatial soft-argmaxes (softmax over patches of a
linear score, then the expected patch coordinates; Levine et al., 2016): ``2K`` coordinates per
frame, added to the transformer's input through a zero-initialised projection.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from codi_image.encoder import ImageEncoder
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from codi_sdk.encoder import Encoder, EncoderOutput
from codi_sdk.errors import WeightsNotFoundError

logger = logging.getLogger(__name__)

#: Sub-folder of ``encoder/`` that holds the temporal pooler (the rest is a CLIP vision folder).
TEMPORAL_FOLDER = "temporal"
#: Keypoints of the ToyWorld encoder's temporal pooler (see :class:`TemporalPooler`).
TOYWORLD_KEYPOINTS = 4


class TemporalPooler(ModelMixin, ConfigMixin):
    """Frame embeddings ``[B, T, dim]`` -> one embedding ``[B, dim]`` (not normalised).

    Args:
        dim: width of the frame embeddings and of the output.
        width, depth, heads: the temporal transformer.
        max_frames: length of the learned frame position embedding.
        keypoints: spatial soft-argmaxes over each frame's patch tokens (0: none, as before).
        patch_dim: width of the patch tokens (the frame encoder's hidden size); needed with keypoints.
    """

    @register_to_config
    def __init__(
        self, dim: int = 64, width: int = 64, depth: int = 2, heads: int = 4, max_frames: int = 8,
        keypoints: int = 0, patch_dim: int = 0,
    ):
        super().__init__()
        if keypoints and patch_dim <= 0:
            raise ValueError(f"keypoints={keypoints} needs patch_dim (the frame encoder's hidden size), got {patch_dim}")
        if keypoints:
            self.keypoint_scores = nn.Linear(patch_dim, keypoints)
            self.proj_keypoints = nn.Linear(2 * keypoints, width)
            nn.init.zeros_(self.proj_keypoints.weight)
            nn.init.zeros_(self.proj_keypoints.bias)
        self.proj_in = nn.Linear(dim, width)
        self.pos = nn.Parameter(torch.randn(1, max_frames, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, dim)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, frames: torch.Tensor, patches: torch.Tensor | None = None) -> torch.Tensor:
        """``frames [B, T, dim]`` (and, with keypoints, ``patches [B, T, P, patch_dim]`` on a square
        grid) -> ``[B, dim]``."""
        b, t, _ = frames.shape
        if t > self.config.max_frames:
            raise ValueError(f"{t} frames exceed the temporal pooler's max_frames={self.config.max_frames}")
        x = self.proj_in(frames) + self.pos[:, :t]
        if self.config.keypoints:
            if patches is None:
                raise ValueError("this temporal pooler reads keypoints: pass the frames' patch tokens [B, T, P, patch_dim]")
            x = x + self.proj_keypoints(self.keypoint_coordinates(patches).flatten(2))
        x = self.blocks(x)
        return frames.mean(1) + self.proj_out(self.norm(x.mean(1)))

    def keypoint_coordinates(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch tokens ``[B, T, P, patch_dim]`` -> ``[B, T, K, 2]``: each keypoint's expected (x, y)
        in [-1, 1] under the softmax of its scores over the ``P`` patches (a √P × √P grid, row-major)."""
        side = round(patches.shape[2] ** 0.5)
        if side * side != patches.shape[2]:
            raise ValueError(f"patch tokens must form a square grid; got {patches.shape[2]} patches")
        axis = torch.linspace(-1.0, 1.0, side, device=patches.device, dtype=patches.dtype)
        grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)  # (x, y) per patch
        weights = self.keypoint_scores(patches).softmax(dim=2)  # [B, T, P, K]
        return torch.einsum("btpk,pc->btkc", weights, grid)


class VideoEncoder(Encoder):
    """Prompt encoder of videos: ``forward(videos [B, T, 3, H, W] in [-1, 1])`` -> ``EncoderOutput``
    with ``pooled`` ``[B, dim]`` (unit norm) and ``tokens = pooled[:, None]``.

    Args:
        frames: the per-frame image encoder.
        temporal: the pooler over frames (default: new, ``dim`` = the image encoder's width).
    """

    modality = "video"

    def __init__(self, frames: ImageEncoder, temporal: TemporalPooler | None = None):
        super().__init__()
        if temporal is None:
            temporal = TemporalPooler(dim=frames.dim)
        elif temporal.config.dim != frames.dim:
            raise ValueError(f"temporal pooler dim={temporal.config.dim} differs from the frame encoder's {frames.dim}")
        hidden = int(frames.model.config.hidden_size)
        if temporal.config.keypoints and temporal.config.patch_dim != hidden:
            raise ValueError(f"temporal pooler patch_dim={temporal.config.patch_dim} differs from the frame encoder's hidden size {hidden}")
        self.frames = frames
        self.temporal = temporal

    @classmethod
    def toyworld(cls) -> "VideoEncoder":
        """A new, untrained encoder in the ToyWorld configuration (tiny CLIP per frame, 64-d, with
        4 keypoints so the pooler sees where the object is in each frame)."""
        frames = ImageEncoder.toyworld()
        hidden = int(frames.model.config.hidden_size)
        return cls(frames, TemporalPooler(dim=frames.dim, keypoints=TOYWORLD_KEYPOINTS, patch_dim=hidden))

    @classmethod
    def from_image_encoder(cls, image: ImageEncoder) -> "VideoEncoder":
        """A video encoder whose frame encoder is a copy of ``image`` and whose pooler is new."""
        copy = ImageEncoder(type(image.model)(image.model.config))
        copy.model.load_state_dict(image.model.state_dict())
        return cls(copy.to(device=image.device, dtype=image.dtype)).train(image.training)

    @classmethod
    def from_image_pretrained(cls, path: str | os.PathLike) -> "VideoEncoder":
        """Inflate an image encoder folder (a CLIP vision folder): new temporal pooler."""
        return cls(ImageEncoder.from_pretrained(path)).eval()

    def warm_start(self, trained: dict[str, Encoder]) -> set[str]:
        """Copy a trained image encoder (``trained["image"]``) into the frame encoder; the temporal
        pooler stays as it is. Returns ``{"frames"}``, or an empty set when there is no image
        encoder or its weights' shapes differ from the frame encoder's (a warning says so)."""
        image = trained.get("image")
        if image is None:
            return set()
        shapes = lambda model: {k: tuple(v.shape) for k, v in model.state_dict().items()}  # noqa: E731
        if not isinstance(image, ImageEncoder) or shapes(image.model) != shapes(self.frames.model):
            logger.warning("video encoder warm start skipped: the image encoder does not have the frame encoder's shapes")
            return set()
        with torch.no_grad():
            self.frames.model.load_state_dict(image.model.state_dict(), strict=True)
        return {"frames"}

    @property
    def dim(self) -> int:
        return self.frames.dim

    def forward(self, batch: torch.Tensor) -> EncoderOutput:
        if batch.ndim != 5 or batch.shape[2] != 3:
            raise ValueError(f"expected videos [B, T, 3, H, W] in [-1, 1], got shape {tuple(batch.shape)}")
        b, t = batch.shape[:2]
        # one pass of the vision tower gives both; a pooler without keypoints ignores the patches
        frames, patches = (x.unflatten(0, (b, t)) for x in self.frames.features(batch.flatten(0, 1)))
        pooled = F.normalize(self.temporal(frames, patches), dim=-1)
        return EncoderOutput(tokens=pooled[:, None, :], pooled=pooled)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the CLIP vision model as a transformers folder at ``path`` (``config.json`` +
        ``model.safetensors``) and the temporal pooler at ``path/temporal``."""
        self.frames.save_pretrained(path)
        self.temporal.save_pretrained(Path(path) / TEMPORAL_FOLDER, safe_serialization=True)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, torch_dtype: torch.dtype | None = None) -> "VideoEncoder":
        """Load a folder written by :meth:`save_pretrained`. Only safetensors weights are read.

        For an image encoder folder (no ``temporal/``) use :meth:`from_image_pretrained`.
        """
        folder = Path(path)
        if not (folder / TEMPORAL_FOLDER / "config.json").is_file():
            raise WeightsNotFoundError(
                f"{folder} has no {TEMPORAL_FOLDER}/config.json; a video encoder folder is a CLIP vision folder "
                "(config.json + model.safetensors) plus temporal/ (an image encoder folder? use VideoEncoder.from_image_pretrained)"
            )
        frames = ImageEncoder.from_pretrained(folder, torch_dtype=torch_dtype)
        kw = {"use_safetensors": True}
        if torch_dtype is not None:
            kw["torch_dtype"] = torch_dtype
        temporal = TemporalPooler.from_pretrained(folder / TEMPORAL_FOLDER, **kw)
        return cls(frames, temporal).eval()
