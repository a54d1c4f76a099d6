"""Read the shape back from a sketch, without any model (the ToyWorld probe rule for outlines).

The outline is found like the image probe finds an object (pixels clearly brighter than the
background, the largest 8-connected group), its interior is filled
(``scipy.ndimage.binary_fill_holes``), and the filled mask is classified by how much of its bounding
box it fills — square ≈ 1.0, circle ≈ 0.79, triangle ≈ 0.5 — with the triangle's low centroid as a
second cue (:func:`codi_sdk.toyworld.probes.shape_of`). A generated outline with a gap does not
enclose its interior; it is closed with a 3×3 structuring element and filled again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from codi_sdk.errors import InvalidInputError
from codi_sdk.toyworld.probes import MIN_CONTRAST, shape_features, shape_of

_EIGHT = np.ones((3, 3), dtype=bool)


def as_gray(sample: Any) -> np.ndarray:
    """A sketch as float (H, W) in 0..255: a canonical tensor ``[1, H, W]`` in [-1, 1], a uint8
    (H, W) array, or an ``ImageOutput`` / (H, W, 3) array (its channel mean)."""
    x = getattr(sample, "array", sample)
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating):
        x = (np.clip(np.nan_to_num(x), -1.0, 1.0) + 1.0) * 127.5
    x = x.astype(np.float64)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    elif x.ndim == 3 and x.shape[-1] in (1, 3):
        x = x.mean(axis=-1)
    if x.ndim != 2 or x.size == 0:
        raise InvalidInputError(f"a sketch is (H, W), (H, W, 1|3) or [1, H, W]; got shape {x.shape}")
    return x


def filled_shape(sample: Any) -> np.ndarray | None:
    """Boolean (H, W) mask of the sketched object with its interior filled, or None if blank."""
    gray = as_gray(sample)
    ranked = np.sort(gray, axis=None)
    background, peak = ranked[len(ranked) // 2], ranked[int(0.995 * (len(ranked) - 1))]
    if peak - background < MIN_CONTRAST:
        return None
    lines = gray > (background + peak) / 2
    labels, count = ndimage.label(lines, structure=_EIGHT)
    if count > 1:
        lines = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    filled = ndimage.binary_fill_holes(lines)
    if filled.sum() < 1.3 * lines.sum():  # nothing enclosed: a gap in the outline
        filled = ndimage.binary_fill_holes(ndimage.binary_closing(lines, structure=_EIGHT, border_value=0))
    return filled


def probe_sketch(sample: Any) -> dict[str, str | None]:
    """``{"shape": "circle" | "square" | "triangle" | None}`` read from a sketch."""
    filled = filled_shape(sample)
    if filled is None:
        return {"shape": None}
    return {"shape": shape_of(*shape_features(filled))}
