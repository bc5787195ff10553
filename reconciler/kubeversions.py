"""Which Kubernetes version a Job's fields need, and a cluster's version read.

An API server older than a field's feature, or with the feature still off,
drops the field from the Job it stores without a word (or, where the client
asks for strict validation, refuses the Job): a Job that counts on a success
policy would then run to its last index on one spoke and stop early on
another. So a job whose Job sets such a field is kept off spokes too old for
it. The versions are those in which each feature is on by default (beta or
GA), from the Kubernetes release notes. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

Version = tuple[int, int]  # (major, minor)


class Feature(NamedTuple):
    field: str  # where the Job sets it: "spec.successPolicy"
    since: Version  # the first release that serves it by default


def features(job_spec: Mapping[str, Any]) -> tuple[Feature, ...]:
    """The fields of a Job's spec that need a newer Kubernetes than 1.24 (the
    oldest with spec.suspend, which Caspian needs anyway)."""
    found = [
        Feature(f"spec.{field}", since)
        for field, since in (
            ("podFailurePolicy", (1, 26)),
            ("backoffLimitPerIndex", (1, 29)),
            ("maxFailedIndexes", (1, 29)),
            ("podReplacementPolicy", (1, 29)),
            ("successPolicy", (1, 31)),
        )
        if job_spec.get(field) is not None
    ]
    pod = (job_spec.get("template") or {}).get("spec") or {}
    inits = pod.get("initContainers") or []
    for index, init in enumerate(inits):
        if isinstance(init, Mapping) and init.get("restartPolicy") == "Always":
            # A sidecar: an older server drops its restartPolicy, and the Job's
            # pods wait for ever on an init container that never ends.
            where = f"spec.template.spec.initContainers[{index}].restartPolicy"
            found.append(Feature(where, (1, 29)))
            break
    if pod.get("resources") is not None:
        found.append(Feature("spec.template.spec.resources", (1, 34)))
    return tuple(found)


def too_new(wanted: tuple[Feature, ...], version: Version) -> tuple[Feature, ...]:
    """The features a cluster of `version` does not serve."""
    return tuple(feature for feature in wanted if version < feature.since)


def show(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


_VERSION = re.compile(r"v?([0-9]+)\.([0-9]+)(\.[0-9]+)?([-+][0-9A-Za-z.+-]*)?")


def parse(text: str) -> Version:
    """A version as people write one ("1.29", "v1.29.3", "v1.30.2-eks-1a2b"):
    ValueError for anything else."""
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes version: write it as '1.29' or 'v1.29.3'")
    return int(match.group(1)), int(match.group(2))


def served(major: Any, minor: Any) -> Version | None:
    """A cluster's version from its API's /version answer ("1", "29+" on some
    managed clusters); None where it does not read as one."""
    digits = re.match(r"[0-9]+", str(minor or ""))
    if not str(major or "").isdigit() or digits is None:
        return None
    return int(str(major)), int(digits.group())
