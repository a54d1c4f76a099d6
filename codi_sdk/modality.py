"""`Modality`: what a kind of data is, how it is validated, converted, read and written.

A plugin subclasses :class:`Modality` once per modality it adds and returns an instance from its
``codi_modalities`` hook. Besides describing the data, a modality knows how to build its two
learned parts, the prompt :class:`~codi_sdk.encoder.Encoder` and the
:class:`~codi_sdk.diffuser.Diffuser`, from a ``save_pretrained``-style folder.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import InvalidInputError, WeightsNotFoundError

if TYPE_CHECKING:
    from .diffuser import Diffuser
    from .encoder import Encoder
    from .outputs import Output

#: Component folders that every complete modality ships (see ``codi plugins``).
COMPONENTS: tuple[str, ...] = ("vae", "unet", "env_encoder", "joint", "encoder")


class Modality(ABC):
    """A modality: its name, its samples, and the factories of its learned components.

    Class attributes a subclass sets:

    * ``name`` — the registry key, e.g. ``"image"``.
    * ``sample_type`` — one line saying what a canonical sample is, shown in errors and docs.
    * ``extensions`` — file extensions :meth:`load` reads and :meth:`save` writes, first is default.
    * ``components`` — the component folders a weights folder holds.
    """

    name: ClassVar[str]
    sample_type: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]] = ()
    components: ClassVar[tuple[str, ...]] = COMPONENTS

    # -- data ---------------------------------------------------------------------------------
    @abstractmethod
    def convert(self, value: Any) -> Any:
        """Turn a user value (path, array, tensor, PIL image, string, ...) into a canonical sample.

        Raises :class:`~codi_sdk.errors.InvalidInputError` naming what was wrong and what is
        accepted when the value cannot be converted.
        """

    @abstractmethod
    def load(self, path: str | os.PathLike) -> Any:
        """Read a file into a canonical sample; a missing or undecodable file is an InvalidInputError."""

    @abstractmethod
    def save(self, sample: Any, path: str | os.PathLike) -> Path:
        """Write a canonical sample to ``path`` atomically and return the path written."""

    @abstractmethod
    def to_output(self, sample: Any) -> "Output":
        """Wrap a canonical sample in the typed output object that ``compose`` returns."""

    # -- weights ------------------------------------------------------------------------------
    def shipped_weights_dir(self) -> Path:
        """Where this plugin's shipped ToyWorld weights live: ``<package>/weights/toyworld``."""
        import importlib

        package = importlib.import_module(type(self).__module__.split(".")[0])
        return Path(package.__file__).parent / "weights" / "toyworld"

    def default_weights(self) -> Path | None:
        """The weights folder shipped with the plugin, or ``None`` if it ships none."""
        folder = self.shipped_weights_dir()
        return folder if folder.is_dir() else None

    def resolve_weights(self, path: str | os.PathLike | None = None) -> Path:
        """The folder to load from: ``path`` if given, else the shipped default."""
        folder = Path(path) if path is not None else self.default_weights()
        if folder is None:
            raise WeightsNotFoundError(
                f"modality {self.name!r} ships no default weights; pass a folder holding "
                f"{', '.join(self.components)} (each with config.json + *.safetensors)"
            )
        if not folder.is_dir():
            raise WeightsNotFoundError(f"weights folder for modality {self.name!r} not found: {folder}")
        return folder

    def weights_found(self, path: str | os.PathLike | None = None) -> list[str]:
        """Names of the components present in ``path`` (or the shipped default folder)."""
        folder = Path(path) if path is not None else self.default_weights()
        if folder is None or not folder.is_dir():
            return []
        return [c for c in self.components if (folder / c / "config.json").is_file()]

    @abstractmethod
    def load_encoder(self, path: str | os.PathLike | None = None) -> "Encoder":
        """Build the prompt encoder from ``path``/``encoder`` (default: shipped weights)."""

    @abstractmethod
    def load_diffuser(self, path: str | os.PathLike | None = None) -> "Diffuser":
        """Build the diffuser (VAE, denoiser, environment encoder) from ``path`` (default: shipped)."""

    @abstractmethod
    def init_encoder(self) -> "Encoder":
        """A new, untrained prompt encoder in the ToyWorld configuration (for training)."""

    @abstractmethod
    def init_diffuser(self, **options) -> "Diffuser":
        """A new, untrained diffuser in the ToyWorld configuration (for training). ``options``: the
        training recipe's ``diffuser_options`` for this modality, if any; a plugin that takes none
        may define ``init_diffuser(self)`` (the trainer then refuses options for it)."""

    #: The ToyWorld attributes a rendering of this modality shows (``None``: all three). Training
    #: treats a sample as matching every caption that agrees on these, e.g. a sketch shows only
    #: ``("shape",)``, so it is not asked to tell "red" from "blue".
    toyworld_shows: tuple[str, ...] | None = None

    def render_toyworld(self, scene, rng) -> Any:
        """A canonical sample of a ToyWorld ``scene`` (``rng``: a numpy Generator).

        Only modalities that ToyWorld does not render itself need this: ``codi train toyworld``
        uses it to make (text, m) training pairs for a new modality.
        """
        raise NotImplementedError(f"modality {self.name!r} has no ToyWorld renderer (Modality.render_toyworld)")

    # -- helpers for subclasses -----------------------------------------------------------------
    def invalid(self, what: str) -> InvalidInputError:
        """An InvalidInputError that names this modality and what it accepts."""
        return InvalidInputError(f"{self.name}: {what}; accepted: {self.sample_type}")

    def __repr__(self) -> str:
        return f"<Modality {self.name!r}>"
