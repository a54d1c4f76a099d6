"""Studio's built-in node types, provided through the same ``codi_studio_nodes`` hook as any plugin's."""

from __future__ import annotations

from ...hookspecs import hookimpl


@hookimpl
def codi_studio_nodes() -> list:
    from .compose import Compose
    from .embeddings import TextEmbedding, TextRetrieval
    from .http import HttpJsonService
    from .python_call import PythonCall
    from .speech import SpeechRecognition, SpeechSynthesis
    from .translate import Translation
    from .vision import HaarDetection, TextRecognition

    return [
        Compose,
        PythonCall,
        HttpJsonService,
        SpeechRecognition,
        SpeechSynthesis,
        Translation,
        TextRecognition,
        HaarDetection,
        TextEmbedding,
        TextRetrieval,
    ]
