"""kopf wiring only: importing this package registers every handler."""

from . import children, evalsuite, finetunejob, indexes, llmmodel, operator, rollout

__all__ = ["children", "evalsuite", "finetunejob", "indexes", "llmmodel", "operator", "rollout"]
