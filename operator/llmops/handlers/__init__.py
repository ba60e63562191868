"""kopf wiring only: importing this package registers every handler."""

from . import finetunejob, llmmodel, operator

__all__ = ["finetunejob", "llmmodel", "operator"]
