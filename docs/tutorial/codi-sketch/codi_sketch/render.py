"""ToyWorld's sketch rendering: the 32×32 outline of the object, with the image rules' geometry.

The rules (documented as an extension of ToyWorld in docs/tutorial.md):

* size parameter ``r`` uniform in [4.5, 6.5] px and equal-area shapes (circle radius r, square side
  r√π, isosceles triangle apex up with base = height = r√(2π)), exactly as ToyWorld images;
* the shape's bounding box lies inside [1, 31] on both axes, its centre otherwise uniform;
* a pixel is *inside* if its centre is inside the shape; the sketch draws the inside pixels that
  have a 4-neighbour outside: a closed, 1-pixel, 8-connected white (255) border on black (0);
* colour and motion are not shown.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from codi_sdk.toyworld.render import IMAGE_RADIUS, IMAGE_SIZE, half_extent, shape_mask
from codi_sdk.toyworld.scenes import Scene

#: The 4-neighbourhood: a pixel stays "interior" only if all four neighbours are inside.
_CROSS = ndimage.generate_binary_structure(2, 1)


def outline(mask: np.ndarray) -> np.ndarray:
    """The 1-pixel inner border of a boolean mask: inside pixels with a 4-neighbour outside."""
    return mask & ~ndimage.binary_erosion(mask, structure=_CROSS, border_value=0)


def render_sketch(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """A sketch of ``scene``: uint8 (32, 32), 255 on the outline, 0 elsewhere."""
    r = rng.uniform(*IMAGE_RADIUS)
    h = half_extent(scene.shape, r)
    cx, cy = rng.uniform(1 + h, IMAGE_SIZE - 1 - h, size=2)
    return outline(shape_mask(scene.shape, cx, cy, r)).astype(np.uint8) * 255
