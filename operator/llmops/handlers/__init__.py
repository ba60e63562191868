"""kopf wiring only: importing this package registers every handler."""

from . import llmmodel, operator

__all__ = ["llmmodel", "operator"]
