"""Exceptions raised by codi-sdk. Each says what was wrong and what is accepted."""

from __future__ import annotations


class CodiError(Exception):
    """Base class of every error that codi-sdk raises on purpose."""


class PluginError(CodiError):
    """A plugin could not be loaded or used."""


class IncompatiblePluginError(PluginError):
    """A plugin targets a plugin API version this SDK does not support."""


class DuplicateModalityError(PluginError):
    """Two plugins register the same modality name."""


class UnknownModalityError(CodiError, KeyError):
    """A modality name that no installed plugin provides."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class InvalidInputError(CodiError, ValueError):
    """A user-supplied value (sample, file, argument) that cannot be used."""


class WeightsNotFoundError(CodiError, FileNotFoundError):
    """A weights folder or one of its components is missing."""
