"""kopf wiring only: importing this package registers every handler."""

from . import evalsuite, finetunejob, llmmodel, operator, rollout

__all__ = ["evalsuite", "finetunejob", "llmmodel", "operator", "rollout"]
