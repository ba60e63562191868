"""Print the PersistentVolumeClaims the examples mount (and, with --static-volumes, pre-bound PVs).

The local control plane has no storage provisioner, so each claim gets a hostPath volume bound
to it up front; on kind the default StorageClass provisions them.
"""

from __future__ import annotations

import argparse
import sys

import yaml

CLAIMS = ("models", "datasets", "model-repositories", "training-checkpoints")


def manifests(namespace: str, static_volumes: bool) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for claim in CLAIMS:
        volume = f"{namespace}-{claim}"
        spec: dict[str, object] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
        if static_volumes:
            spec.update(storageClassName="", volumeName=volume)
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": volume},
                    "spec": {
                        "capacity": {"storage": "10Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "hostPath": {"path": f"/tmp/llmops-pv/{volume}"},
                        "claimRef": {"namespace": namespace, "name": claim},
                    },
                }
            )
        out.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": namespace},
                "spec": spec,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("namespace")
    parser.add_argument("--static-volumes", action="store_true")
    args = parser.parse_args()
    yaml.safe_dump_all(manifests(args.namespace, args.static_volumes), sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
