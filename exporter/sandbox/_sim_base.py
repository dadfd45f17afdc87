"""The simulators' shared building blocks, under their first import path.

They live in :mod:`exporter.sandbox.base`; this module re-exports them for code written against it.
"""

from .base import *  # noqa: F403
from .base import __all__  # noqa: F401
