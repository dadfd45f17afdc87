"""``python -m exporter``: the same as the ``exporter`` command."""

from .process import entry

entry()
