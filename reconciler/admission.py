"""Whether a spoke's API server would admit a Job's pods: its LimitRanges and
ResourceQuotas, applied to a pod as the LimitRanger and ResourceQuota admission
plugins apply them.

LimitRanger first fills in, for each container, the default request and limit
of every resource it sets none of; then it refuses a pod whose containers, or
the pod as a whole, limit or request more than an item's `max`, request less
than its `min`, or limit too far above what they request. ResourceQuota then
refuses a pod with a container that sets no cpu or memory request or limit
that a quota of the namespace counts. The Job itself is admitted; only its pods
are refused, so a Job sent to such a spoke waits there creating none. Caspian
checks its jobs against each spoke before it sends them, and sends them where
they are admitted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

from reconciler.pods import InitContainer, effective_request

# The resources LimitRanges bound that Caspian reads, by their Kubernetes names.
KEYS = ("cpu", "memory", "ephemeral-storage", "nvidia.com/gpu")
BYTES = ("memory", "ephemeral-storage")
# What a ResourceQuota that counts it makes every container set: a request
# (cpu, requests.cpu) or a limit (limits.cpu) of cpu or memory.
QUOTA_NEEDS = frozenset(
    {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
)
# How a value that an item refuses is named: (part, key, value) -> words.
Told = Callable[[str, str, float], str]
# A value a LimitRange's default filled in: (container, part, key).
Fill = tuple[str, str, str]


class ContainerResources(BaseModel):
    """What one container sets, as the API server holds it: a request it does
    not set is its limit's (Kubernetes defaults it so before admission)."""

    model_config = ConfigDict(frozen=True)

    where: str  # as the pod's spec names it: "containers[0]"
    requests: dict[str, float] = {}
    limits: dict[str, float] = {}
    init: bool = False
    sidecar: bool = False  # an init container with restartPolicy: Always


class PodResources(BaseModel):
    """What a Job's pod sets, container by container (empty where not known),
    and what a ResourceQuota's scopes read of it."""

    model_config = ConfigDict(frozen=True)

    containers: tuple[ContainerResources, ...] = ()
    priority_class: str = ""  # its priorityClassName
    terminating: bool = False  # it sets activeDeadlineSeconds (its own, not the Job's)


class QuotaScope(BaseModel):
    """One scope a ResourceQuota counts pods by: in `scopes` (operator Exists
    for PriorityClass), or a scopeSelector's expression."""

    model_config = ConfigDict(frozen=True)

    scope: str  # Terminating, NotTerminating, BestEffort, NotBestEffort, PriorityClass, ...
    operator: str = "Exists"
    values: tuple[str, ...] = ()


class ScopedQuota(BaseModel):
    """A ResourceQuota that counts only the pods its scopes match: the most it
    lets them request in all (cpu, memory, gpu) and how many of them it lets be
    (pods), a figure it does not limit absent; and what it makes each of their
    containers set."""

    model_config = ConfigDict(frozen=True)

    name: str  # namespace/name
    scopes: tuple[QuotaScope, ...]
    most: dict[str, float] = {}
    needs: frozenset[str] = frozenset()


def counts(
    quota: ScopedQuota, pod: PodResources, *, limit_ranges: Iterable[LimitRangeItem]
) -> bool:
    """Whether the quota counts the pod: every one of its scopes matches it.
    Whether a pod is BestEffort (no cpu or memory request or limit in any
    container) is read after the LimitRanges' defaults. A scope Caspian does not
    know (CrossNamespacePodAffinity: Caspian's pods have no such terms) does not."""
    filled, _ = _with_defaults(pod, list(limit_ranges))
    best_effort = not any(
        key in part
        for container in filled.containers
        for part in (container.requests, container.limits)
        for key in ("cpu", "memory")
    )
    facts = {
        "Terminating": pod.terminating,
        "NotTerminating": not pod.terminating,
        "BestEffort": best_effort,
        "NotBestEffort": not best_effort,
    }
    for scope in quota.scopes:
        if scope.scope == "PriorityClass":
            name = pod.priority_class
            matched = {
                "In": name in scope.values,
                "NotIn": name not in scope.values,
                "Exists": name != "",
                "DoesNotExist": name == "",
            }.get(scope.operator, False)
        else:
            matched = facts.get(scope.scope, False)
        if not matched:
            return False
    return True


class LimitRangeItem(BaseModel):
    """One entry of a LimitRange's spec.limits, for containers or whole pods."""

    model_config = ConfigDict(frozen=True)

    limit_range: str  # namespace/name of the LimitRange it is in
    type: Literal["Container", "Pod"]
    max: dict[str, float] = {}
    min: dict[str, float] = {}
    default: dict[str, float] = {}
    default_request: dict[str, float] = {}
    max_limit_request_ratio: dict[str, float] = {}

    def with_api_defaults(self) -> LimitRangeItem:
        """As the API server stores a Container item: a `max` without a default
        limit is the default limit; a default limit without a default request,
        or a `min` without one, is the default request. (The API applies these
        on creation: a copy read from a cluster already has them.)"""
        if self.type != "Container":
            return self
        default = {**self.max, **self.default}
        default_request = {**self.min, **default, **self.default_request}
        return self.model_copy(update={"default": default, "default_request": default_request})


def refusal(
    pod: PodResources,
    *,
    limit_ranges: Iterable[LimitRangeItem] = (),
    quota_needs: frozenset[str] = frozenset(),
) -> str | None:
    """Why the namespace's LimitRanges (their items in the API's order), or its
    ResourceQuotas (the QUOTA_NEEDS they count), would refuse the pod; None
    where it would be admitted."""
    items = list(limit_ranges)
    if not pod.containers or not (items or quota_needs):
        return None
    filled, filled_by = _with_defaults(pod, items)
    return _refused_by_limit_ranges(filled, items, filled_by) or _unset_for_quota(
        filled, quota_needs, defaults=bool(items)
    )


def _refused_by_limit_ranges(
    filled: PodResources, items: list[LimitRangeItem], filled_by: Mapping[Fill, str]
) -> str | None:
    """Why the LimitRanges refuse the pod, its defaults filled in (`filled_by`
    names the LimitRange that filled each value)."""

    def told(where: str, part: str, key: str, value: float) -> str:
        source = filled_by.get((where, part, key))
        default = f" (the default of LimitRange {source})" if source else ""
        return f"{where} {part} {_amount(key, value)}{default}"

    for container in filled.containers:
        for key, request in sorted(container.requests.items()):
            limit = container.limits.get(key)
            if limit is not None and _above(request, limit):
                return (
                    f"{told(container.where, 'requests', key, request)}, more than "
                    f"{told(container.where, 'limits', key, limit)}"
                )
    for item in items:
        if item.type == "Container":
            for container in filled.containers:
                found = _outside(
                    item,
                    requests=container.requests,
                    limits=container.limits,
                    per="container",
                    told=functools.partial(told, container.where),
                )
                if found:
                    return found
        else:
            requests, limits = _pod_totals(filled)
            found = _outside(
                item,
                requests=requests,
                limits=limits,
                per="pod",
                told=lambda part, key, value: f"the pod {part} {_amount(key, value)} in all",
            )
            if found:
                return found
    return None


def _unset_for_quota(pod: PodResources, needs: frozenset[str], *, defaults: bool) -> str | None:
    """Why the ResourceQuotas would refuse the pod: they count one of `needs`,
    and a container (an init container too) sets none of it. Kubernetes has
    held every container to that since before it had pod QoS classes."""
    unset: dict[str, list[str]] = {}
    for container in pod.containers:
        has = set()
        for key in ("cpu", "memory"):
            if key in container.requests:
                has |= {key, f"requests.{key}"}
            if key in container.limits:
                has.add(f"limits.{key}")
        if needs - has:
            unset[container.where] = sorted(needs - has)
    if not unset:
        return None
    counted = sorted({name for names in unset.values() for name in names})
    which = "; ".join(f"{where} sets no {' or '.join(names)}" for where, names in unset.items())
    nor = " (nor does a LimitRange give a default)" if defaults else ""
    return (
        f"a ResourceQuota there counts {' and '.join(counted)}, which every container must "
        f"then set: {which}{nor}"
    )


def _with_defaults(
    pod: PodResources, items: list[LimitRangeItem]
) -> tuple[PodResources, dict[Fill, str]]:
    """The pod with the default requests and limits filled in, and which
    LimitRange filled each (where, part, key). Within one LimitRange a later
    item's defaults win; across LimitRanges, the first to give one."""
    per_range: dict[str, dict[str, dict[str, float]]] = {}
    for item in items:
        if item.type == "Container":
            item = item.with_api_defaults()
            defaults = per_range.setdefault(item.limit_range, {"requests": {}, "limits": {}})
            defaults["requests"].update(item.default_request)
            defaults["limits"].update(item.default)
    filled_by: dict[Fill, str] = {}
    containers = []
    for container in pod.containers:
        parts = {"requests": dict(container.requests), "limits": dict(container.limits)}
        for name, defaults in per_range.items():
            for part, values in defaults.items():
                for key, value in values.items():
                    if key not in parts[part]:
                        parts[part][key] = value
                        filled_by[(container.where, part, key)] = name
        containers.append(container.model_copy(update=parts))
    return pod.model_copy(update={"containers": tuple(containers)}), filled_by


def _pod_totals(pod: PodResources) -> tuple[dict[str, float], dict[str, float]]:
    """The whole pod's requests and limits, as LimitRanger sums them: the
    containers and sidecars together, or an init container beside the sidecars
    started before it, whichever is more (its runtime's overhead left out); a
    resource no container sets, unset."""
    totals = []
    for part in ("requests", "limits"):
        found: dict[str, float] = {}
        keys = {key for c in pod.containers for key in getattr(c, part)}
        for key in keys:

            def of(container: ContainerResources, key: str = key, part: str = part) -> float:
                return getattr(container, part).get(key, 0.0)

            found[key] = effective_request(
                containers=[of(c) for c in pod.containers if not c.init],
                init_containers=[
                    InitContainer(amount=of(c), sidecar=c.sidecar) for c in pod.containers if c.init
                ],
            )
        totals.append(found)
    return totals[0], totals[1]


def _outside(
    item: LimitRangeItem,
    *,
    requests: Mapping[str, float],
    limits: Mapping[str, float],
    per: str,
    told: Told,
) -> str | None:
    """Why one item refuses these requests and limits, or None."""
    rule = f"LimitRange {item.limit_range} allows"
    for key, most in sorted(item.max.items()):
        limit, request = limits.get(key), requests.get(key)
        if limit is None:
            return f"{rule} at most {_amount(key, most)} per {per}, and no {key} limit is set"
        if _above(limit, most):
            return f"{rule} at most {_amount(key, most)} per {per}: {told('limits', key, limit)}"
        if request is not None and _above(request, most):
            return (
                f"{rule} at most {_amount(key, most)} per {per}: {told('requests', key, request)}"
            )
    for key, least in sorted(item.min.items()):
        limit, request = limits.get(key), requests.get(key)
        if request is None:
            return (
                f"{rule} no less than {_amount(key, least)} per {per}, and no {key} request is set"
            )
        if _above(least, request):
            return (
                f"{rule} no less than {_amount(key, least)} per {per}: "
                f"{told('requests', key, request)}"
            )
        if limit is not None and _above(least, limit):
            return (
                f"{rule} no less than {_amount(key, least)} per {per}: {told('limits', key, limit)}"
            )
    for key, ratio in sorted(item.max_limit_request_ratio.items()):
        limit, request = limits.get(key), requests.get(key)
        if not request or not limit:
            return (
                f"{rule} a {key} limit at most {ratio:g} times the request per {per}, and "
                f"the {key} {'request' if not request else 'limit'} is 0 or not set"
            )
        if _above(limit / request, ratio):
            return (
                f"{rule} a {key} limit at most {ratio:g} times the request per {per}: "
                f"{told('limits', key, limit)}, {limit / request:g} times "
                f"{_amount(key, request)}"
            )
    return None


def _above(value: float, bound: float) -> bool:
    # Quantities are sums of decimal fractions ("100m" three times): a float's
    # last bit must not refuse a pod the API server admits.
    return value > bound + 1e-9 * max(1.0, abs(bound))


def _amount(key: str, value: float) -> str:
    if key in BYTES:
        return f"{value / 2**30:g}Gi {key}"
    return f"{value:g} {key}"
