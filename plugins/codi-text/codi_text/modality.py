"""`TextModality`: text samples (Python ``str``), their validation, ``.txt`` files, and model factories.

Text is CoDi's bridge modality: its prompt encoder (:class:`~codi_text.encoder.TextEncoder`) is
the frozen anchor that every other modality's encoder is aligned to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from codi_sdk.io import atomic_write_text
from codi_sdk.modality import Modality
from codi_sdk.outputs import TextOutput

from .tokenizer import MAX_TOKENS, count_words

#: Longest accepted text, in words and punctuation marks: what fits the models' positions
#: together with ``[BOS]`` and ``[EOS]``.
MAX_WORDS = MAX_TOKENS - 2
#: A ``str`` is read as a file path only if it names an existing ``.txt`` file of at most this length.
_MAX_PATH_CHARS = 4096


class TextModality(Modality):
    """The ``"text"`` modality. A canonical sample is a non-empty, stripped ``str``.

    :meth:`convert` accepts a ``str``, ``bytes`` in UTF-8, a :class:`~codi_sdk.outputs.TextOutput`,
    or the path (``pathlib.Path``, or a ``str`` naming an existing file) of a ``.txt`` file. Case is
    kept; the ToyWorld tokenizer lower-cases. Refused, with an :class:`InvalidInputError`: empty or
    whitespace-only text, text of more than ``MAX_WORDS`` (30) words and punctuation marks, bytes
    that are not UTF-8, and every other type.
    """

    name = "text"
    sample_type = (
        f"a non-empty str of at most {MAX_WORDS} words (or UTF-8 bytes, a TextOutput, or the path of a .txt file)"
    )
    extensions = (".txt",)

    # -- data ---------------------------------------------------------------------------------
    def convert(self, value: Any) -> str:
        """Turn ``value`` into a canonical text sample (see the class docstring)."""
        if isinstance(value, TextOutput):
            return self._checked(value.text)
        if isinstance(value, (bytes, bytearray)):
            try:
                return self._checked(bytes(value).decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise self.invalid(f"bytes are not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        if isinstance(value, os.PathLike):
            return self.load(value)
        if isinstance(value, str):
            if self._names_text_file(value):
                return self.load(value)
            return self._checked(value)
        raise self.invalid(f"cannot use a {type(value).__module__}.{type(value).__qualname__} as text")

    def load(self, path: str | os.PathLike) -> str:
        """Read a UTF-8 ``.txt`` file (surrounding whitespace stripped)."""
        file = Path(path)
        if file.suffix.lower() not in self.extensions:
            raise self.invalid(f"cannot read {file.name!r} as text: only {', '.join(self.extensions)} files are read")
        if not file.is_file():
            raise self.invalid(f"file not found: {file}")
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise self.invalid(f"{file} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        return self._checked(text, f" in {file}")

    def save(self, sample: Any, path: str | os.PathLike) -> Path:
        """Write the text (plus a final newline) to a ``.txt`` file atomically.

        A ``str`` is written as it is, even empty (a generation may be); anything else goes
        through :meth:`convert` first."""
        text = sample if isinstance(sample, str) else self.convert(sample)
        target = Path(path)
        if target.suffix.lower() not in self.extensions:
            raise self.invalid(f"cannot save text as {target.suffix or 'no extension'!r}; use {', '.join(self.extensions)}")
        atomic_write_text(target, text + "\n")
        return target

    def to_output(self, sample: Any) -> TextOutput:
        """Wrap a text (as generated: a ``str``, possibly empty) in a :class:`TextOutput`."""
        return TextOutput(modality=self.name, text=sample if isinstance(sample, str) else self.convert(sample))

    def _checked(self, text: str, where: str = "") -> str:
        text = text.strip()
        if not text:
            raise self.invalid(f"empty or whitespace-only text{where}")
        words = count_words(text)
        if words > MAX_WORDS:
            raise self.invalid(f"text{where} is too long: {words} words and punctuation marks, at most {MAX_WORDS}")
        return text

    def _names_text_file(self, value: str) -> bool:
        return (
            len(value) <= _MAX_PATH_CHARS
            and "\n" not in value
            and Path(value).suffix.lower() in self.extensions
            and Path(value).is_file()
        )

    # -- weights ------------------------------------------------------------------------------
    def load_encoder(self, path: str | os.PathLike | None = None):
        """The prompt encoder from ``path/encoder`` (default: shipped weights), or from ``path``
        itself when it is a CLIP text folder.
        A folder written by ``codi convert-official`` (or its ``text/`` sub-folder) gives the official
        CoDi encoder (``codi_text.official_diffuser``).
        """
        from codi_sdk.official.folder import official_folder

        official = official_folder(path, self.name)
        if official is not None:  # written by `codi convert-official`
            from .official_diffuser import OfficialTextEncoder

            return OfficialTextEncoder.from_official(official)
        from .encoder import TextEncoder

        root = self.resolve_weights(path)
        folder = root / "encoder" if (root / "encoder" / "config.json").is_file() else root
        return TextEncoder.from_pretrained(folder)

    def load_diffuser(self, path: str | os.PathLike | None = None):
        """The diffuser from a folder holding ``vae/``, ``unet/``, ``env_encoder/`` (and ``joint/``).
        A folder written by ``codi convert-official`` (or its ``text/`` sub-folder) gives the official
        CoDi diffuser (``codi_text.official_diffuser``).
        """
        from codi_sdk.official.folder import official_folder

        official = official_folder(path, self.name)
        if official is not None:  # written by `codi convert-official`
            from .official_diffuser import OfficialTextDiffuser

            return OfficialTextDiffuser.from_official(official)
        from .diffuser import TextDiffuser

        return TextDiffuser.from_pretrained(self.resolve_weights(path))

    def init_encoder(self):
        """A new, untrained ToyWorld text encoder (tiny CLIP text transformer)."""
        from .encoder import TextEncoder

        return TextEncoder.toyworld()

    def init_diffuser(self, **options):
        """A new, untrained ToyWorld text diffuser (text VAE, denoiser, environment encoder);
        ``options`` are :class:`~codi_text.vae.TextVAE` options (e.g. ``encoder_pooling="tokens"``)."""
        from .diffuser import TextDiffuser

        return TextDiffuser.toyworld(**options)
