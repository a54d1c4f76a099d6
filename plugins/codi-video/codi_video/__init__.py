"""codi-video: the video modality plugin for codi-sdk."""
