"""``python -m codi_sdk`` runs the ``codi`` command line."""

from .cli import main

main()
