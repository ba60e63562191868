"""Our images, run from the working tree: each image's Dockerfile says how.

A container image is a root filesystem plus a little config (ENTRYPOINT, CMD, ENV, WORKDIR).
Here the root filesystem is the host's own (seen through a copy-on-write overlay, sandbox.py),
the Dockerfile's `COPY <dir> <path>` lines become bind mounts of the same directories from
images/, and what its RUN lines install is this repository's virtualenv. The base images we use
map to what provides them locally: python → the virtualenv's interpreter, the Triton Inference
Server image → the tritonserver that ships in the nvidia-pytriton wheel.

An image that is not one of ours resolves to None; the agent reports it like a kubelet that
cannot pull it (ErrImagePull), so a typo in an image name looks the same as on a real node.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import site
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
VENV_BIN = Path(sys.executable).parent
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Dockerfile:
    """What of a Dockerfile's final stage matters to run it."""

    base: str
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    copies: list[tuple[str, str]] = field(default_factory=list)
    """(source relative to the build context, destination in the image)."""


@dataclass(frozen=True)
class LocalImage:
    name: str
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    workdir: str
    binds: list[tuple[str, str]]
    """(host path, path in the container), read-only."""


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _exec_form(value: str) -> list[str]:
    """["a", "b"] (exec form) or a shell-form string."""
    if value.startswith("["):
        return [str(v) for v in json.loads(value)]
    return ["/bin/sh", "-c", value]


def _env_pairs(value: str) -> dict[str, str]:
    if "=" not in value.split(" ", 1)[0]:  # legacy `ENV KEY value`
        key, _, rest = value.partition(" ")
        return {key: rest.strip()}
    return dict(part.split("=", 1) for part in shlex.split(value))


def parse_dockerfile(text: str) -> Dockerfile:
    """The final stage: its base image, ENTRYPOINT, CMD, ENV, WORKDIR and COPY (not --from) lines."""
    stage: dict = {}
    for word, rest in _instructions(text):
        if word == "FROM":
            stage = {"base": rest.split()[0], "entrypoint": [], "cmd": [], "env": {}, "workdir": "/", "copies": []}
        elif word == "ENTRYPOINT":
            stage["entrypoint"] = _exec_form(rest)
        elif word == "CMD":
            stage["cmd"] = _exec_form(rest)
        elif word == "ENV":
            stage["env"].update(_env_pairs(rest))
        elif word == "WORKDIR":
            stage["workdir"] = rest
        elif word == "COPY" and "--from" not in rest:
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            stage["copies"] += [(src, parts[-1]) for src in parts[:-1]]
    return Dockerfile(**stage)


def repository_name(image: str) -> str:
    """ghcr.io/llmops-dev/builder:0.1.0 → builder; nvcr.io/nvidia/tritonserver:25.10-py3 → tritonserver."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def tritonserver_root(state: Path) -> Path:
    """The wheel's server tree with this interpreter's Python-backend stub in place (made once)."""
    import pytriton

    src = Path(pytriton.__file__).parent / "tritonserver"
    dest = state / "tritonserver"
    if not (dest / "bin" / "tritonserver").exists():
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("python_backend_stubs"), dirs_exist_ok=True)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = src / "python_backend_stubs" / version / "triton_python_backend_stub"
        shutil.copy(stub, dest / "backends" / "python" / "triton_python_backend_stub")
    return dest


TRITON_HOME = "/opt/tritonserver"  # where the upstream image has the server, its backends and libraries


def base_image(base: str, state: Path) -> tuple[dict[str, str], list[tuple[str, str]]] | None:
    """The environment and files a base image provides, or None for a base we cannot provide."""
    name = repository_name(base)
    if name == "python":
        return {"PATH": f"{VENV_BIN}:{SYSTEM_PATH}"}, []
    if name == "tritonserver":
        root = tritonserver_root(state)
        import pytriton

        libs = [
            sysconfig.get_config_var("LIBDIR") or "",
            str(Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"),
        ]
        env = {
            "PATH": f"{TRITON_HOME}/bin:{VENV_BIN}:{SYSTEM_PATH}",
            "LD_LIBRARY_PATH": ":".join(libs),
            # The Python backend's stub embeds this interpreter; what images/serving installs is here.
            "PYTHONPATH": ":".join(site.getsitepackages()),
        }
        return env, [(str(root), TRITON_HOME)]
    return None


def resolve(image: str, state: Path) -> LocalImage | None:
    """The image of ours named by `image` (any registry and tag), or None."""
    name = repository_name(image)
    dockerfile = IMAGES / name / "Dockerfile"
    if name == "tritonserver":  # upstream Triton, as a user may name it in spec.serving.image
        dockerfile = IMAGES / "serving" / "Dockerfile"
    if not dockerfile.is_file():
        return None
    parsed = parse_dockerfile(dockerfile.read_text())
    base = base_image(parsed.base, state)
    if base is None:
        return None
    env, binds = base
    for key, value in parsed.env.items():  # ENV PATH=/opt/llmops/bin:$PATH and the like
        env[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)
    context = REPO if name == "operator" else IMAGES
    binds += [(str(context / src), dest.rstrip("/")) for src, dest in parsed.copies if (context / src).is_dir()]
    return LocalImage(
        name=name,
        entrypoint=parsed.entrypoint,
        cmd=parsed.cmd,
        env=env,
        workdir=parsed.workdir,
        binds=binds,
    )
