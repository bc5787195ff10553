"""Which spokes can never take a job as things stand, and why: no node its pod
fits on, an object its pods need that is not there, a quota smaller than it
(its spoke file's, or its namespace's), a rule the spoke's admission would
refuse it by, or a Kubernetes too old for a field its Job sets. Each is a
reason per job and spoke, for the optimizer to keep it off and for the commit
and `caspian explain` to say. Pure."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, TypeVar

from optimizer.model import RESOURCES
from reconciler import admission, decisions, jobspec, kubeversions, podsecurity, pools
from reconciler.decisions import SpokeState
from reconciler.fleet import JobRequest, Spoke
from reconciler.pods import Placement, Resources
from reconciler.quantities import amount


def no_node_fits(
    jobs: Iterable[JobRequest], groups: Mapping[str, pools.NodeGroups]
) -> dict[str, dict[str, str]]:
    """Per job, the spokes it may use where no node can take one of its pods, each
    with why. A pod runs on one node, one its nodeSelector and node affinity allow
    and whose taints it tolerates: the spoke's free capacity summed over its nodes
    can hold the pod and the pod still never be scheduled there. A spoke whose
    nodes are not known is not checked."""
    seen: dict[tuple[str, str], _NodesFor] = {}
    result = {}
    for job in jobs:
        unfit = {}
        for name in job.allowed_spokes:
            spoke_groups = groups.get(name)
            if not spoke_groups:
                continue
            if pools.some_node_takes(job.pod, job.placement, spoke_groups):
                if job.placement.own_node and job.pods_at_once > 1:
                    taking = pools.nodes_taking(job.pod, job.placement, spoke_groups)
                    if taking < job.pods_at_once:
                        unfit[name] = (
                            f"its {job.pods_at_once} pods must each have a node of their own (a "
                            "required podAntiAffinity on kubernetes.io/hostname), and "
                            f"{taking} node{'s' if taking != 1 else ''} there can take one"
                        )
                continue
            # Why not takes a look at every node: once per placement and spoke.
            key = (name, job.placement.model_dump_json())
            if key not in seen:
                seen[key] = _nodes_for(job.placement, spoke_groups)
            unfit[name] = _why_no_node(job, seen[key])
        if unfit:
            result[job.id] = unfit
    return result


# A spoke as its file declares it, or as it was observed.
_Spoke = TypeVar("_Spoke", Spoke, SpokeState)


def barred(
    jobs: Iterable[JobRequest],
    spokes: Mapping[str, _Spoke],
    why: Callable[[JobRequest, _Spoke], str | None],
) -> dict[str, dict[str, str]]:
    """Per job, the spokes it may use that `why` rules out, each with why."""
    result = {}
    for job in jobs:
        barred = {
            name: reason
            for name in job.allowed_spokes
            if name in spokes and (reason := why(job, spokes[name]))
        }
        if barred:
            result[job.id] = barred
    return result


def beyond_quota(job: JobRequest, spoke: Spoke) -> str | None:
    """Why the spoke cannot take the job: it needs more at once than the quota
    its file gives Caspian's jobs there."""
    quota = spoke.spec.quota
    if quota is None:
        return None
    over = [
        f"{amount(resource, need)}, more than its {amount(resource, limit)}"
        for resource in RESOURCES
        if (limit := quota.of(resource)) is not None
        and (need := getattr(job, resource)) > limit + 1e-9
    ]
    if not over:
        return None
    return (
        f"it needs {'; '.join(over)}: the quota spokes/{spoke.name}.yaml gives Caspian's jobs "
        "there (spec.quota)"
    )


def lacking(job: JobRequest, state: SpokeState) -> str | None:
    """Why the spoke cannot take the job: it lacks a claim, ConfigMap, Secret or
    class its pods need, and there they would never start. Objects not known
    (declared capacity, no right to list them) are not held against it."""
    absent = [need for need in job.needs if _lacks(state, need)]
    if not absent:
        return None
    which = "it is" if len(absent) == 1 else "they are"
    return f"its pods need {', '.join(absent)}, and {which} not there"


def unchecked(job: JobRequest, state: SpokeState) -> str | None:
    """What of the job's needs the spoke was not checked for, because Caspian
    may not list their kind there (Secrets, unless granted apart): not held
    against it, but said, since a pod whose Secret is not there never starts."""
    unlisted: dict[tuple[str, str], list[str]] = {}
    for need in job.needs:
        kind, _, namespace = jobspec.scope_of(need)[0].partition(" ")
        what = decisions.plural(kind)
        if decisions.unlisted(what, namespace) in state.unread:
            unlisted.setdefault((what, namespace), []).append(need)
    if not unlisted:
        return None
    return "; ".join(
        f"not checked that {', '.join(needs)} {'is' if len(needs) == 1 else 'are'} there: "
        f"Caspian may not list {decisions.unlisted(what, namespace)} "
        f"({decisions.granting(what)} grants it)"
        for (what, namespace), needs in unlisted.items()
    )


def over_quota(job: JobRequest, state: SpokeState) -> str | None:
    """Why the spoke cannot take the job: its ResourceQuotas in the job's
    namespace let all pods there request less than the job's pods do at once,
    or hold fewer pods than it runs at once, so the Job could never create them
    all, however empty the spoke."""
    most, _ = _quota_rules(job, state)
    asks = (
        (
            ("cpu", job.cpu, most.cpu),
            ("GiB memory", job.memory_bytes / 2**30, most.memory_bytes / 2**30),
            ("GPUs", job.gpu, most.gpu),
        )
        if most is not None
        else ()
    )
    over = [
        f"{asked:g} {unit} (the quota: {allowed:g})"
        for unit, asked, allowed in asks
        if asked > allowed
    ]
    why = []
    if over:
        why.append(
            f"its pods ask for {', '.join(over)} at once, more than the ResourceQuotas of "
            f"{job.namespace} there let all pods request"
        )
    # A Job runs `parallelism` pods at once: past a pods quota the rest are refused.
    pods = _most_pods(job, state)
    if pods is not None and job.pods_at_once > pods:
        why.append(
            f"it runs {job.pods_at_once} pods at once, more than the ResourceQuotas of "
            f"{job.namespace} there let it hold ({pods:g})"
        )
    return "; ".join(why) or None


def _most_pods(job: JobRequest, state: SpokeState) -> float | None:
    """The most pods the ResourceQuotas that count the job's pods let its
    namespace hold at once, or None where none limits that."""
    limit_ranges = state.limit_ranges.get(job.namespace, ())
    found = [
        quota.most["pods"]
        for quota in state.scoped_quotas.get(job.namespace, ())
        if "pods" in quota.most
        and admission.counts(quota, job.pod_resources, limit_ranges=limit_ranges)
    ]
    if (unscoped := state.quota_pods.get(job.namespace)) is not None:
        found.append(unscoped)
    return min(found) if found else None


def _quota_rules(job: JobRequest, state: SpokeState) -> tuple[Resources | None, frozenset[str]]:
    """What the ResourceQuotas that count the job's pods hold them to: the most
    they let them request in all (None where none limits it), and what every
    container must set. Those without scopes count every pod; those with, the
    pods their scopes match."""
    most = state.quotas.get(job.namespace)
    needs = state.quota_needs.get(job.namespace, frozenset())
    limit_ranges = state.limit_ranges.get(job.namespace, ())
    for quota in state.scoped_quotas.get(job.namespace, ()):
        if not admission.counts(quota, job.pod_resources, limit_ranges=limit_ranges):
            continue
        bound = Resources(
            cpu=quota.most.get("cpu", math.inf),
            memory_bytes=quota.most.get("memory", math.inf),
            gpu=quota.most.get("gpu", math.inf),
        )
        most = bound if most is None else _least(most, bound)
        needs = needs | quota.needs
    return most, needs


def _least(a: Resources, b: Resources) -> Resources:
    return Resources(
        cpu=min(a.cpu, b.cpu),
        memory_bytes=min(a.memory_bytes, b.memory_bytes),
        gpu=min(a.gpu, b.gpu),
    )


def too_old(job: JobRequest, state: SpokeState) -> str | None:
    """Why the spoke cannot run the job as written: its Kubernetes does not
    serve a field its Job sets, and would drop it (kubeversions)."""
    version = state.kubernetes_version
    if version is None:
        return None
    missing = kubeversions.too_new(job.kubernetes_features, version)
    if not missing:
        return None
    fields = ", ".join(f"{f.field} (Kubernetes {kubeversions.show(f.since)})" for f in missing)
    return (
        f"it runs Kubernetes {kubeversions.show(version)}, which does not serve what its Job "
        f"sets: {fields}; its API server would drop or refuse it"
    )


def refused_at_admission(job: JobRequest, state: SpokeState) -> str | None:
    """Why the spoke cannot take the job: the Pod Security level, LimitRanges
    or ResourceQuotas of its namespace there would refuse its pods, so the Job
    would create none."""
    level = state.pod_security.get(job.namespace)
    why = (
        level and podsecurity.refusal(job.pod_security_broken, level=level, namespace=job.namespace)
    ) or admission.refusal(
        job.pod_resources,
        limit_ranges=state.limit_ranges.get(job.namespace, ()),
        quota_needs=_quota_rules(job, state)[1],
    )
    return None if why is None else f"its pods would be refused there: {why}"


def merged(*reasons: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Per job and spoke, the reasons why not, joined where there are two."""
    merged: dict[str, dict[str, str]] = {}
    for per_job in reasons:
        for job_id, per_spoke in per_job.items():
            for spoke, why in per_spoke.items():
                before = merged.setdefault(job_id, {}).get(spoke)
                merged[job_id][spoke] = f"{before}; {why}" if before else why
    return merged


def _lacks(state: SpokeState, need: str) -> bool:
    where, name = jobspec.scope_of(need)
    names = state.objects.get(where)
    return names is not None and name not in names


class _NodesFor(NamedTuple):
    """What one spoke's nodes offer the pods of one placement."""

    selected: bool  # some node matches its node selection
    sizes: frozenset[Resources]  # allocatable of the nodes it may use: selected, tolerated
    every_node: bool  # it may use every node there
    # Allocatable of the selected nodes it does not tolerate, with the taints why.
    refused: Mapping[Resources, frozenset[str]]


def _nodes_for(placement: Placement, groups: pools.NodeGroups) -> _NodesFor:
    selected, sizes, every_node = False, set(), True
    refused: dict[Resources, frozenset[str]] = {}
    for (size, taints), nodes in groups.items():
        count = sum(node.selected_by(placement) for node in nodes)
        untolerated = frozenset(t.describe() for t in taints if not placement.tolerates(t))
        selected = selected or count > 0
        every_node = every_node and count == len(nodes) and not untolerated
        if count and untolerated:
            refused[size] = refused.get(size, frozenset()) | untolerated
        elif count:
            sizes.add(size)
    return _NodesFor(
        selected=selected, sizes=frozenset(sizes), every_node=every_node, refused=refused
    )


def _why_no_node(job: JobRequest, offer: _NodesFor) -> str:
    placement = job.placement
    if not offer.selected:
        return f"no node there matches its node selection ({placement.describe()})"
    # Taints first where tolerating them would let the pod in: a GPU pool is
    # often the only place a GPU pod fits, and tainted.
    big_enough = [t for size, t in offer.refused.items() if job.pod.fits_in(size)]
    if big_enough or not offer.sizes:
        taints = sorted(frozenset().union(*(big_enough or offer.refused.values())))
        which = "big enough for its pod" if big_enough else "it may use"
        return (
            f"the nodes there {which} have taints it does not tolerate "
            f"({', '.join(taints)}): it runs there only if its pod template tolerates them"
        )
    largest = max(offer.sizes, key=lambda size: (size.gpu, size.cpu, size.memory_bytes))
    which = "node" if offer.every_node else "node it may use"
    return (
        f"its pod needs {job.pod.describe()}; no {which} there has that much "
        f"(the largest: {largest.describe()})"
    )
