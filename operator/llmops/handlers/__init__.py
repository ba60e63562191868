"""The wiring only: importing this package registers every handler, with our streams and with kopf."""

from . import evalsuite, finetunejob, indexes, llmmodel, operator, rollout, streams

__all__ = ["evalsuite", "finetunejob", "indexes", "llmmodel", "operator", "rollout", "streams"]
