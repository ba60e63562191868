"""Loading models and tokenizers from any supported URI with from_pretrained."""

from __future__ import annotations

from typing import Any

from .uri import ConfigError, resolve


def load_causal_lm(uri: str, **kwargs: Any) -> tuple[Any, Any]:
    """Return (model, tokenizer). A local path that is not a model is a config error;
    a hub failure may be transient (network), so it stays a runtime error."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    res = resolve(uri)
    try:
        # A hub model loads at its pinned revision (hf://org/name@<commit>); local paths have none.
        tokenizer = AutoTokenizer.from_pretrained(res.location, revision=res.revision)
        model = AutoModelForCausalLM.from_pretrained(res.location, revision=res.revision, **kwargs)
    except (OSError, ValueError) as e:
        if res.is_hub:
            raise RuntimeError(f"cannot load {uri!r} from the hub: {e}") from e
        raise ConfigError(f"{uri!r} is not a loadable model: {e}") from e
    if tokenizer.pad_token is None:
        # Causal LMs often ship without a pad token; eos is the usual stand-in.
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
