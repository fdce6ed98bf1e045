"""``python -m farthing`` runs the ``farthing`` command line."""

from farthing.cli import entrypoint

entrypoint()
