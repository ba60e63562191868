"""JSONL datasets: one {"prompt": ..., "completion": ...} object per line."""

from __future__ import annotations

import json
from pathlib import Path

from .uri import ConfigError, local_path


def load_jsonl(uri: str) -> list[dict[str, str]]:
    path = local_path(uri)
    if path.is_dir():
        raise ConfigError(f"dataset {uri!r} is a directory, expected a JSONL file")
    return parse_cases(Path(path).read_text(encoding="utf-8").splitlines(), str(uri))


def parse_cases(lines: list[str], where: str = "dataset") -> list[dict[str, str]]:
    cases = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}:{n}: not JSON: {e}") from e
        cases.append(check_case(obj, f"{where}:{n}"))
    if not cases:
        raise ConfigError(f"{where}: no cases")
    return cases


def check_case(obj: object, where: str) -> dict[str, str]:
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected an object with prompt and completion")
    prompt, completion = obj.get("prompt"), obj.get("completion")
    if not isinstance(prompt, str) or not isinstance(completion, str):
        raise ConfigError(f"{where}: 'prompt' and 'completion' must be strings")
    return {"prompt": prompt, "completion": completion}
