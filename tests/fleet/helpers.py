from __future__ import annotations

import textwrap
from typing import Any

import yaml

from reconciler import crd
from reconciler.fleet import Fleet
from reconciler.loading import load_fleet
from reconciler.templates import template_files


def fleet_with(**changes: str | None) -> Fleet:
    """The template fleet with files replaced (str), added, or removed (None).
    Keyword names use '__' for '/' and '_' for '-': jobs__x -> jobs/x.yaml."""
    files = template_files()
    for key, text in changes.items():
        path = key.replace("__", "/").replace("_", "-") + ".yaml"
        if text is None:
            files.pop(path)
        else:
            files[path] = textwrap.dedent(text).encode()
    return load_fleet(files, appwrapper_schema=crd.check_appwrapper)


def problems_of(fleet: Fleet) -> list[str]:
    return [p.line() for p in fleet.problems]


def appwrapper_doc(
    name: str = "extra",
    *,
    annotations: dict[str, str] | None = None,
    job_spec: dict[str, Any] | None = None,
    pod_spec: dict[str, Any] | None = None,
    resources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "workload.codeflare.dev/v1beta2",
        "kind": "AppWrapper",
        "metadata": {
            "name": name,
            "annotations": {"caspian.dev/duration": "1h", **(annotations or {})},
        },
        "spec": {
            "components": [
                {
                    "template": {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "spec": {
                            **(job_spec or {}),
                            "template": {
                                "spec": {
                                    "restartPolicy": "Never",
                                    **(pod_spec or {}),
                                    "containers": [
                                        {
                                            "name": "main",
                                            "image": "busybox",
                                            "resources": resources
                                            or {"requests": {"cpu": "2", "memory": "1Gi"}},
                                        }
                                    ],
                                }
                            },
                        },
                    }
                }
            ]
        },
    }


def appwrapper(name: str = "extra", **kwargs: Any) -> str:
    return yaml.safe_dump(appwrapper_doc(name, **kwargs), sort_keys=False)
