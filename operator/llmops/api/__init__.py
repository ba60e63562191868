"""The API: pydantic models of every spec and status, the single source of truth for crds/."""

from .common import API_VERSION, CATEGORY, GROUP, VERSION, Condition, Resource
from .evalsuite import EvalSuite
from .finetunejob import FineTuneJob
from .llmmodel import LLMModel
from .rollout import Rollout

KINDS: tuple[type[Resource], ...] = (LLMModel, FineTuneJob, EvalSuite, Rollout)

__all__ = [
    "API_VERSION", "CATEGORY", "GROUP", "KINDS", "VERSION",
    "Condition", "EvalSuite", "FineTuneJob", "LLMModel", "Resource", "Rollout",
]  # fmt: skip
