"""codi-text: the text modality plugin for codi-sdk."""
