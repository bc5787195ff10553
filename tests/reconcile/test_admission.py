"""A spoke's LimitRanges and ResourceQuotas, applied to a job's pod as the API
server's admission applies them: LimitRange defaults filled in, then their
bounds per container and per pod, then what a quota makes every container set.
A spoke that would refuse a job's pods is not used for it."""

from __future__ import annotations

import pytest
import yaml

from reconciler import jobspec
from reconciler.admission import (
    ContainerResources,
    LimitRangeItem,
    PodResources,
    QuotaScope,
    ScopedQuota,
    counts,
    refusal,
)
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.fleet.helpers import appwrapper_doc
from tests.reconcile.test_lifecycle import entries, step

GI = 2**30


def container(where="containers[0]", *, requests=None, limits=None, **kwargs):
    limits = limits or {}
    # As the API server holds it: a request not set is its limit's.
    return ContainerResources(
        where=where, requests={**limits, **(requests or {})}, limits=limits, **kwargs
    )


def one(**kwargs) -> PodResources:
    return PodResources(containers=(container(**kwargs),))


def item(name="batch/bounds", kind="Container", **bounds) -> LimitRangeItem:
    return LimitRangeItem(limit_range=name, type=kind, **bounds)


class TestPerContainer:
    def test_a_limit_above_max_is_refused_and_one_at_max_admitted(self) -> None:
        bounds = [item(max={"cpu": 2})]
        assert refusal(one(limits={"cpu": 4}), limit_ranges=bounds) == (
            "LimitRange batch/bounds allows at most 2 cpu per container: containers[0] limits 4 cpu"
        )
        assert refusal(one(limits={"cpu": 2}), limit_ranges=bounds) is None
        # max bounds a request too (here one below the limit it is given).
        assert refusal(
            one(requests={"memory": 8 * GI}), limit_ranges=[item(max={"memory": 4 * GI})]
        ) == (
            "containers[0] requests 8Gi memory, more than containers[0] limits 4Gi memory "
            "(the default of LimitRange batch/bounds)"
        )

    def test_max_without_a_default_limit_gives_the_limit(self) -> None:
        # The API server makes max the default limit: a container that sets none
        # is admitted, limited to max.
        assert refusal(one(requests={"cpu": 1}), limit_ranges=[item(max={"cpu": 2})]) is None

    def test_a_request_below_min_is_refused_and_a_missing_one_is_min(self) -> None:
        bounds = [item(min={"memory": GI})]
        assert refusal(one(requests={"memory": 0.5 * GI}), limit_ranges=bounds) == (
            "LimitRange batch/bounds allows no less than 1Gi memory per container: "
            "containers[0] requests 0.5Gi memory"
        )
        assert refusal(one(requests={"cpu": 1}), limit_ranges=bounds) is None
        # A limit alone is the request too (and a request is never above its limit).
        assert refusal(one(limits={"memory": 0.25 * GI}), limit_ranges=bounds).endswith(
            "containers[0] requests 0.25Gi memory"
        )

    def test_a_limit_too_far_above_the_request_is_refused(self) -> None:
        bounds = [item(max_limit_request_ratio={"cpu": 2})]
        assert refusal(one(requests={"cpu": 1}, limits={"cpu": 4}), limit_ranges=bounds) == (
            "LimitRange batch/bounds allows a cpu limit at most 2 times the request per "
            "container: containers[0] limits 4 cpu, 4 times 1 cpu"
        )
        assert refusal(one(requests={"cpu": 2}, limits={"cpu": 4}), limit_ranges=bounds) is None
        # Without a limit, or a default one, there is no ratio to hold it to.
        assert refusal(one(requests={"cpu": 1}), limit_ranges=bounds) == (
            "LimitRange batch/bounds allows a cpu limit at most 2 times the request per "
            "container, and the cpu limit is 0 or not set"
        )
        assert refusal(one(requests={"cpu": 0}, limits={"cpu": 1}), limit_ranges=bounds).endswith(
            "and the cpu request is 0 or not set"
        )

    def test_init_containers_are_bounded_as_containers(self) -> None:
        pod = PodResources(
            containers=(
                container("initContainers[0]", requests={"cpu": 8}, init=True),
                container("containers[0]", requests={"cpu": 1}),
            )
        )
        assert refusal(pod, limit_ranges=[item(max={"cpu": 4}, default={"cpu": 4})]).startswith(
            "initContainers[0] requests 8 cpu, more than initContainers[0] limits 4 cpu"
        )

    def test_the_first_limit_range_to_give_a_default_gives_it(self) -> None:
        # batch/a's default request (3) is filled in; batch/b's max (2) refuses it.
        bounds = [
            item("batch/a", default_request={"cpu": 3}),
            item("batch/b", default_request={"cpu": 1}, max={"cpu": 4}),
            item("batch/c", max={"cpu": 2}),
        ]
        assert refusal(one(requests={"memory": GI}), limit_ranges=bounds) == (
            "LimitRange batch/c allows at most 2 cpu per container: containers[0] limits 4 cpu "
            "(the default of LimitRange batch/b)"
        )
        # Within one LimitRange, a later item's default wins.
        later = [item("batch/a", default={"cpu": 1}), item("batch/a", default={"cpu": 8})]
        assert "limits 8 cpu" in refusal(
            one(requests={"memory": GI}), limit_ranges=[*later, item(max={"cpu": 4})]
        )

    def test_resources_it_does_not_bound_are_let_be(self) -> None:
        assert refusal(one(requests={"cpu": 64}), limit_ranges=[item(max={"memory": GI})]) is None
        assert refusal(one(requests={"cpu": 64}), limit_ranges=[]) is None


class TestPerPod:
    def test_the_pods_containers_and_sidecars_count_together(self) -> None:
        pod = PodResources(
            containers=(
                container("initContainers[0]", requests={"cpu": 2}, init=True),
                container("initContainers[1]", requests={"cpu": 1}, init=True, sidecar=True),
                container("containers[0]", requests={"cpu": 1}),
                container("containers[1]", requests={"cpu": 1}),
            ),
        )
        # The containers' 1 + 1 beside the sidecar's 1 (the first init container's
        # 2 runs alone, before them).
        assert refusal(pod, limit_ranges=[item(kind="Pod", min={"cpu": 3})]) is None
        assert refusal(pod, limit_ranges=[item(kind="Pod", min={"cpu": 3.5})]) == (
            "LimitRange batch/bounds allows no less than 3.5 cpu per pod: "
            "the pod requests 3 cpu in all"
        )

    def test_a_pod_max_wants_limits(self) -> None:
        assert refusal(
            one(requests={"cpu": 1}), limit_ranges=[item(kind="Pod", max={"cpu": 4})]
        ) == ("LimitRange batch/bounds allows at most 4 cpu per pod, and no cpu limit is set")
        # A container item's default limit gives the pod one.
        bounds = [item(default={"cpu": 1}), item(kind="Pod", max={"cpu": 4})]
        assert refusal(one(requests={"cpu": 1}), limit_ranges=bounds) is None

    def test_sums_of_decimal_fractions_are_not_refused_at_the_bound(self) -> None:
        # 0.1 + 0.1 + 0.1 is not 0.3 in floating point.
        pod = PodResources(
            containers=tuple(container(f"containers[{i}]", limits={"cpu": 0.1}) for i in range(3))
        )
        assert refusal(pod, limit_ranges=[item(kind="Pod", max={"cpu": 0.3})]) is None
        assert refusal(pod, limit_ranges=[item(kind="Pod", max={"cpu": 0.29})]) is not None


class TestWhatAQuotaMakesEveryContainerSet:
    def test_a_container_that_sets_none_of_what_a_quota_counts_is_refused(self) -> None:
        pod = PodResources(
            containers=(
                container("initContainers[0]", init=True),
                container("containers[0]", requests={"cpu": 1}),
            )
        )
        assert refusal(pod, quota_needs=frozenset({"limits.cpu", "requests.cpu"})) == (
            "a ResourceQuota there counts limits.cpu and requests.cpu, which every container "
            "must then set: initContainers[0] sets no limits.cpu or requests.cpu; "
            "containers[0] sets no limits.cpu"
        )
        # A limit alone is the request too.
        assert refusal(one(limits={"cpu": 1}), quota_needs=frozenset({"cpu"})) is None
        assert refusal(one(requests={"cpu": 1}), quota_needs=frozenset({"memory"})) == (
            "a ResourceQuota there counts memory, which every container must then set: "
            "containers[0] sets no memory"
        )

    def test_a_limit_ranges_default_sets_it(self) -> None:
        needs = frozenset({"limits.memory"})
        defaults = [item(default={"memory": GI})]
        assert refusal(one(requests={"cpu": 1}), limit_ranges=defaults, quota_needs=needs) is None
        other = [item(default={"cpu": 1})]
        assert refusal(one(requests={"cpu": 1}), limit_ranges=other, quota_needs=needs) == (
            "a ResourceQuota there counts limits.memory, which every container must then set: "
            "containers[0] sets no limits.memory (nor does a LimitRange give a default)"
        )


class TestWhichPodsAScopedQuotaCounts:
    def test_by_priority_class(self) -> None:
        high = one(requests={"cpu": 1}).model_copy(update={"priority_class": "high"})
        plain = one(requests={"cpu": 1})

        def quota(operator, *values) -> ScopedQuota:
            scope = QuotaScope(scope="PriorityClass", operator=operator, values=values)
            return ScopedQuota(name="batch/q", scopes=(scope,))

        assert counts(quota("In", "high", "urgent"), high, limit_ranges=())
        assert not counts(quota("In", "high"), plain, limit_ranges=())
        assert counts(quota("NotIn", "low"), high, limit_ranges=())
        assert not counts(quota("NotIn", "high"), high, limit_ranges=())
        assert counts(quota("Exists"), high, limit_ranges=()) and not counts(
            quota("Exists"), plain, limit_ranges=()
        )
        assert counts(quota("DoesNotExist"), plain, limit_ranges=())

    def test_by_deadline_and_quality_of_service_and_all_scopes_at_once(self) -> None:
        def quota(*names) -> ScopedQuota:
            return ScopedQuota(name="batch/q", scopes=tuple(QuotaScope(scope=n) for n in names))

        nothing = one()
        assert counts(quota("BestEffort", "NotTerminating"), nothing, limit_ranges=())
        # A LimitRange's default makes it no longer BestEffort.
        defaults = [item(default_request={"cpu": 0.5})]
        assert counts(quota("NotBestEffort"), nothing, limit_ranges=defaults)
        assert not counts(quota("BestEffort"), nothing, limit_ranges=defaults)
        deadline = nothing.model_copy(update={"terminating": True})
        assert counts(quota("Terminating"), deadline, limit_ranges=())
        assert not counts(quota("Terminating", "NotBestEffort"), deadline, limit_ranges=())
        # A scope Caspian does not read counts none of its pods.
        assert not counts(quota("CrossNamespacePodAffinity"), nothing, limit_ranges=())


def test_a_job_specs_resources_are_read_as_the_api_server_holds_them() -> None:
    spec = {
        "template": {
            "spec": {
                "initContainers": [
                    {"name": "fetch", "resources": {"limits": {"cpu": "500m"}}},
                    {"name": "proxy", "restartPolicy": "Always"},
                ],
                "containers": [
                    {
                        "name": "main",
                        "resources": {
                            "requests": {"memory": "1Gi", "example.com/foo": "1"},
                            "limits": {"memory": "2Gi", "ephemeral-storage": "10Gi"},
                        },
                    }
                ],
                "priorityClassName": "high",
                "activeDeadlineSeconds": 0,
            }
        }
    }
    assert jobspec.pod_resources(spec) == PodResources(
        containers=(
            ContainerResources(
                where="initContainers[0]", requests={"cpu": 0.5}, limits={"cpu": 0.5}, init=True
            ),
            ContainerResources(where="initContainers[1]", init=True, sidecar=True),
            ContainerResources(
                where="containers[0]",
                requests={"memory": GI, "ephemeral-storage": 10 * GI},
                limits={"memory": 2 * GI, "ephemeral-storage": 10 * GI},
            ),
        ),
        priority_class="high",
        terminating=True,
    )
    bad = {
        "template": {
            "spec": {"containers": [{"resources": {"limits": {"ephemeral-storage": "ten"}}}]}
        }
    }
    with pytest.raises(jobspec.FieldError) as raised:
        jobspec.pod_resources(bad)
    assert raised.value.field == "template.spec.containers[0].resources.limits[ephemeral-storage]"


def _trainer(resources) -> dict[str, bytes]:
    doc = appwrapper_doc(
        "trainer",
        annotations={"caspian.dev/spokes": "paris,frankfurt"},
        resources=resources,
    )
    return {**template_files(), "jobs/trainer.yaml": yaml.safe_dump(doc).encode()}


def test_a_job_goes_only_where_the_limit_ranges_admit_its_pods() -> None:
    small = {"limit_ranges": {"batch": (item("batch/small", max={"cpu": 2}),)}}
    large = {"limit_ranges": {"batch": (item("batch/large", max={"cpu": 16}),)}}
    files = _trainer({"requests": {"cpu": "4", "memory": "1Gi"}})
    decision, _ = step(files, now=NOW, states={"paris": small, "frankfurt": large})
    assert entries(decision)["batch/trainer"].spoke == "frankfurt"
    assert decision.missing["batch/trainer"] == {
        "paris": "its pods would be refused there: containers[0] requests 4 cpu, more than "
        "containers[0] limits 2 cpu (the default of LimitRange batch/small)"
    }
    assert_valid_plan(decision.instance, decision.plan)
    nowhere, _ = step(files, now=NOW, states={"paris": small, "frankfurt": small})
    waits = entries(nowhere)["batch/trainer"]
    assert waits.phase == "Pending"
    assert waits.reason.startswith(
        "no spoke it may use can take it: paris (its pods would be refused there: "
    )
    # The LimitRanges of another namespace hold nothing here.
    other = {"limit_ranges": {"media": (item("media/small", max={"cpu": 1}),)}}
    free, _ = step(files, now=NOW, states={"paris": other, "frankfurt": other})
    assert "batch/trainer" not in free.missing
    assert entries(free)["batch/trainer"].spoke in ("paris", "frankfurt")


def test_a_job_goes_only_where_its_namespaces_quotas_admit_its_pods() -> None:
    # The trainer sets no limits: a quota on limits.cpu refuses its pods.
    files = _trainer({"requests": {"cpu": "4", "memory": "1Gi"}})
    counting = {"quota_needs": {"batch": frozenset({"limits.cpu", "requests.cpu"})}}
    decision, _ = step(files, now=NOW, states={"paris": counting})
    assert entries(decision)["batch/trainer"].spoke == "frankfurt"
    assert decision.missing["batch/trainer"] == {
        "paris": "its pods would be refused there: a ResourceQuota there counts limits.cpu, "
        "which every container must then set: containers[0] sets no limits.cpu"
    }
    # A LimitRange there that gives a default limit lets them in.
    defaulting = {**counting, "limit_ranges": {"batch": (item(default={"cpu": 8}),)}}
    admitted, _ = step(files, now=NOW, states={"paris": defaulting, "frankfurt": counting})
    assert entries(admitted)["batch/trainer"].spoke == "paris"
    assert set(admitted.missing["batch/trainer"]) == {"frankfurt"}


def test_a_quota_with_scopes_holds_only_the_jobs_it_counts() -> None:
    # The trainer asks for 4 cpu; a quota on priority class "high" allows 2 in all.
    doc = appwrapper_doc(
        "trainer",
        annotations={"caspian.dev/spokes": "paris,frankfurt"},
        pod_spec={"priorityClassName": "high"},
        resources={"requests": {"cpu": "4", "memory": "1Gi"}},
    )
    files = {**template_files(), "jobs/trainer.yaml": yaml.safe_dump(doc).encode()}
    scope = QuotaScope(scope="PriorityClass", operator="In", values=("high",))
    quota = ScopedQuota(
        name="batch/urgent", scopes=(scope,), most={"cpu": 2}, needs=frozenset({"limits.memory"})
    )
    scoped = {"scoped_quotas": {"batch": (quota,)}}
    decision, _ = step(files, now=NOW, states={"paris": scoped})
    assert entries(decision)["batch/trainer"].spoke == "frankfurt"
    assert decision.missing["batch/trainer"]["paris"] == (
        "its pods ask for 4 cpu (the quota: 2) at once, more than the ResourceQuotas of batch "
        "there let all pods request; its pods would be refused there: a ResourceQuota there "
        "counts limits.memory, which every container must then set: containers[0] sets no "
        "limits.memory"
    )
    # The template's jobs have no priority class: that quota does not count them.
    assert "batch/etl-daily" not in decision.missing


def test_a_planned_job_leaves_a_spoke_whose_limit_ranges_come_to_refuse_it() -> None:
    files = _trainer({"requests": {"cpu": "4", "memory": "1Gi"}})
    first, files = step(files, now=NOW)
    planned = entries(first)["batch/trainer"]
    assert planned.phase == "Planned"
    small = {"limit_ranges": {"batch": (item("batch/small", max={"cpu": 2}),)}}
    second, _ = step(files, now=NOW, states={planned.spoke: small})
    moved = entries(second)["batch/trainer"]
    assert moved.phase == "Planned" and moved.spoke not in (planned.spoke, None)
