"""kopf wiring only: importing this package registers every handler."""

from . import evalsuite, finetunejob, indexes, llmmodel, operator, rollout, streams

__all__ = ["evalsuite", "finetunejob", "indexes", "llmmodel", "operator", "rollout", "streams"]
