"""codi-audio: the audio modality plugin for codi-sdk."""
