"""Start one container: runs as root inside the pod's network namespace and a new mount namespace.

    nsenter --net=/run/netns/<pod> unshare --mount --propagation private --fork -- \\
        python sandbox.py <spec.json>

The container's root is a copy-on-write overlay of the host's root (writes land in a tmpfs and
vanish with the container), with its own /dev, the image's files and the pod's volumes bound at
their mount paths, then chroot and exec. Nothing it mounts or writes outside its volumes is
seen by the host.

spec.json: {"root", "scratch", "workdir", "argv", "env", "mounts": [{"source", "target", "readOnly"}]}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def make_dev(root: Path) -> None:
    dev = root / "dev"
    mount("-t", "tmpfs", "-o", "mode=755,nosuid", "tmpfs", str(dev))
    for name in DEVICES:
        (dev / name).touch()
        mount("--bind", f"/dev/{name}", str(dev / name))
    for name, target in {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1"}.items():
        (dev / name).symlink_to(target)
    (dev / "stderr").symlink_to("/proc/self/fd/2")
    (dev / "shm").mkdir()
    mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", str(dev / "shm"))


def inside(root: Path, path: str, hops: int = 0) -> Path:
    """`path` as the container will see it under `root`: symlinks resolved against root, not the host.

    (/var/run is a symlink to /run: mounting at root/var/run/... unresolved would follow it out of root.)
    """
    current = root
    for part in Path(os.path.normpath(path)).parts[1:]:
        candidate = current / part
        if candidate.is_symlink() and hops < 40:
            link = os.readlink(candidate)
            absolute = link if link.startswith("/") else os.path.join("/", str(current.relative_to(root)), link)
            current = inside(root, absolute, hops + 1)
        else:
            current = candidate
    return current


def bind(source: str, target: Path, read_only: bool) -> None:
    if Path(source).is_dir():
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(exist_ok=True)
    mount("--bind", source, str(target))
    if read_only:
        mount("-o", "remount,bind,ro", str(target))


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    root, scratch = Path(spec["root"]), Path(spec["scratch"])
    mount("--make-rprivate", "/")
    mount("-t", "tmpfs", "-o", "mode=700", "tmpfs", str(scratch))
    (scratch / "upper").mkdir()
    (scratch / "work").mkdir()
    mount("-t", "overlay", "overlay", "-o", f"lowerdir=/,upperdir={scratch}/upper,workdir={scratch}/work", str(root))
    for fs in ("proc", "sys"):
        mount("--rbind", f"/{fs}", str(root / fs))
    make_dev(root)
    for m in spec["mounts"]:
        bind(m["source"], inside(root, m["target"]), bool(m.get("readOnly")))
    os.chroot(root)
    workdir = Path(spec["workdir"] or "/")
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, spec["env"])
    except OSError as error:  # what a runtime reports as "executable file not found"
        print(f"cannot start {argv[0]!r}: {error}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main(sys.argv[1])
