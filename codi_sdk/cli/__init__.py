"""The ``codi`` command line. Sub-commands live in one module each and import heavy parts lazily."""

from __future__ import annotations

import typer

from ..version import __version__

app = typer.Typer(
    name="codi",
    help="codi-sdk: any-to-any generation by composable diffusion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"codi-sdk {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    """codi-sdk command line."""


from . import plugins as _plugins  # noqa: E402,F401  (registers `codi plugins`)

for _mod in ("toyworld", "evaluate", "generate", "train", "studio", "convert", "new_plugin"):
    try:
        __import__(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _exc:  # sub-command not built yet
        if _exc.name != f"{__name__}.{_mod}":
            raise


def main() -> None:
    """Entry point of the ``codi`` script."""
    app()
