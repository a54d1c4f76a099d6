"""codi-image: the image modality plugin for codi-sdk."""
