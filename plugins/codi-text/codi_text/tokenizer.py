"""The ToyWorld word-level tokenizer, and loading of tokenizers from component folders.

ToyWorld text is a few dozen lower-case words (../shared/TOYWORLD.md), so a word-level tokenizer is
exact and tiny: one id per word, no sub-words. It is a `tokenizers` ``WordLevel`` model with an
NFKC + lower-case normaliser and a whitespace/punctuation pre-tokenizer, and a post-processor that
wraps every text as ``[BOS] ... [EOS]``. It is wrapped as a transformers fast tokenizer, so the text
VAE and the prompt encoder use it exactly as they would use ``bert-base-cased``, ``gpt2`` or CLIP's
tokenizer loaded from a real folder.

Unknown words map to ``[UNK]``. The vocabulary order is part of the trained weights: append new
words at the end, never reorder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

if TYPE_CHECKING:  # transformers is imported on use, so that plugin discovery stays fast
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

#: Special tokens, in id order. ``[EOS]`` must not have id 2: transformers' CLIP text model treats
#: ``eos_token_id == 2`` as a legacy config and would pool at the highest id instead of at ``[EOS]``.
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
PAD, UNK, BOS, EOS = SPECIAL_TOKENS

COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
MOTIONS: tuple[str, ...] = ("left", "right", "up", "down")
#: The words of ToyWorld's full and partial caption templates besides the attribute names.
TEMPLATE_WORDS: tuple[str, ...] = (
    "a", "the", "is", "and", "that", "moves", "moving", "goes", "heading", "something", "thing",
)
#: A few generic words, so that slightly different phrasings do not all collapse to ``[UNK]``.
GENERIC_WORDS: tuple[str, ...] = (
    "an", "it", "this", "of", "with", "to", "in", "on", "object", "shape", "color", "colour",
    "move", "go", "going", "heads", "small", "big", "there", "image", "video", "sound", ".", ",",
)
#: Training-only colour words (``codi_sdk.toyworld.scenes.AUXILIARY_COLORS``), appended last so that
#: the ids of every other word stay those of the weights trained before them.
AUXILIARY_COLORS: tuple[str, ...] = ("orange", "cyan", "purple", "pink")
VOCABULARY: tuple[str, ...] = SPECIAL_TOKENS + TEMPLATE_WORDS + COLORS + SHAPES + MOTIONS + GENERIC_WORDS + AUXILIARY_COLORS

#: Longest text, in tokens including ``[BOS]`` and ``[EOS]``, that the ToyWorld models accept.
MAX_TOKENS = 32


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Whitespace()  # words (\w+) and runs of punctuation


def count_words(text: str) -> int:
    """Words and punctuation marks in ``text``, as the ToyWorld tokenizer splits it."""
    return len(_pre_tokenizer().pre_tokenize_str(text))


def build_toyworld_tokenizer(max_length: int = MAX_TOKENS) -> "PreTrainedTokenizerFast":
    """A new ToyWorld word-level tokenizer (``[PAD]`` = 0, ``[UNK]`` = 1, ``[BOS]`` = 2, ``[EOS]`` = 3).

    Example:
        >>> tok = build_toyworld_tokenizer()
        >>> tok("A red circle moving left").input_ids
        [2, 4, 15, 19, 10, 22, 3]
    """
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(VOCABULARY)}
    if len(vocab) != len(VOCABULARY):
        raise AssertionError("duplicate word in the ToyWorld vocabulary")
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(), normalizers.Strip()])
    backend.pre_tokenizer = _pre_tokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words, glues "." and ","
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=max_length,
    )


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """Load a tokenizer saved with ``save_pretrained`` in a local folder (never from the Hub).

    Works for the ToyWorld tokenizer (``tokenizer.json`` + ``tokenizer_config.json``) and for real
    ones (bert-base-cased, gpt2, CLIP) through ``AutoTokenizer``.
    """
    from transformers import AutoTokenizer

    folder = Path(path)
    if not has_tokenizer(folder):
        raise FileNotFoundError(
            f"no tokenizer in {folder}: expected tokenizer.json, or vocab.txt (BERT), or vocab.json + merges.txt (GPT-2, CLIP)"
        )
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def has_tokenizer(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds the files of a saved tokenizer."""
    folder = Path(path)
    return (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file() or (
        (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    )


def start_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id a decoder starts generating from: ``[BOS]``, or ``<|endoftext|>`` for GPT-2."""
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.cls_token_id):
        if tid is not None:
            return tid
    raise ValueError(f"tokenizer {type(tokenizer).__name__} has no bos, eos or cls token to start decoding from")


def stop_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id that ends a generated text: ``[EOS]`` (or ``[SEP]`` for a BERT-style tokenizer)."""
    for tid in (tokenizer.eos_token_id, tokenizer.sep_token_id):
        if tid is not None:
            return tid
    raise ValueError(f"tokenizer {type(tokenizer).__name__} has no eos or sep token to stop decoding at")


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The padding id (GPT-2 has none: its ``<|endoftext|>`` is used, as is customary)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_token_id(tokenizer)
