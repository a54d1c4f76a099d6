"""codi-sketch: a fifth modality for codi-sdk, built in the plugin-author tutorial (docs/tutorial.md).

A sketch is the 32×32 grayscale outline of the ToyWorld object (1-pixel white border on black); it
shows the object's shape only.
"""

__version__ = "0.1.0"
