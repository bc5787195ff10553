"""Checking AppWrappers against the real CRD's OpenAPI schema (packaged copy, see
reconciler/schemas/NOTICE.md), so a file Caspian accepts is one the AppWrapper
API server accepts too."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import yaml

CRD_FILE = "workload.codeflare.dev_appwrappers.yaml"


@cache
def appwrapper_schema(version: str = "v1beta2") -> dict[str, Any]:
    text = (resources.files("reconciler") / "schemas" / CRD_FILE).read_text()
    crd = yaml.safe_load(text)
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return entry["schema"]["openAPIV3Schema"]
    raise LookupError(f"the AppWrapper CRD has no version {version}")


def check_appwrapper(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, reason) for every way `doc` breaks the CRD schema; empty if none."""
    validator = jsonschema.Draft7Validator(appwrapper_schema())
    problems = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path))):
        field = ""
        for part in error.absolute_path:
            field += f"[{part}]" if isinstance(part, int) else ("." if field else "") + part
        problems.append((field or "-", error.message))
    return problems
