"""Which nodes a pod may run on, as its nodeSelector, required node affinity and
tolerations say, read from a Job's pod template."""

from __future__ import annotations

import pytest
import yaml

from reconciler import jobspec, pools
from reconciler.pods import Node, Placement, Requirement, Resources, Taint, Toleration
from tests.fleet.helpers import appwrapper, appwrapper_doc, fleet_with

NODE = {"gpu.product": "A100", "zone": "b", "cores": "64"}


@pytest.mark.parametrize(
    ("operator", "values", "holds"),
    [
        ("In", ("H100", "A100"), True),
        ("In", ("H100",), False),
        ("NotIn", ("H100",), True),
        ("NotIn", ("A100",), False),
        ("Exists", (), True),
        ("DoesNotExist", (), False),
        ("Gt", ("32",), True),
        ("Gt", ("64",), False),
        ("Lt", ("128",), True),
    ],
)
def test_each_operator_reads_the_label_as_kubernetes_does(operator, values, holds) -> None:
    key = "cores" if operator in ("Gt", "Lt") else "gpu.product"
    assert Requirement(key=key, operator=operator, values=values).holds(NODE) is holds


def test_a_missing_label_is_in_nothing_and_not_in_everything() -> None:
    assert not Requirement(key="rack", operator="In", values=("1",)).holds(NODE)
    assert Requirement(key="rack", operator="NotIn", values=("1",)).holds(NODE)
    assert not Requirement(key="rack", operator="Gt", values=("1",)).holds(NODE)


def test_any_term_may_match_but_all_of_a_terms_expressions_must() -> None:
    h100 = Requirement(key="gpu.product", operator="In", values=("H100",))
    zone_b = Requirement(key="zone", operator="In", values=("b",))
    assert Placement(terms=((h100,), (zone_b,))).allows(NODE)
    assert not Placement(terms=((h100, zone_b),)).allows(NODE)
    # The nodeSelector must hold besides.
    assert not Placement(node_selector={"zone": "a"}, terms=((zone_b,),)).allows(NODE)
    assert Placement().allows({})


def job_with_affinity(expressions: list[dict]) -> str:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": expressions}]
            }
        }
    }
    return appwrapper(pod_spec={"affinity": affinity, "nodeSelector": {"zone": "b"}})


def test_a_jobs_placement_comes_from_its_pod_template() -> None:
    text = job_with_affinity([{"key": "gpu.product", "operator": "In", "values": ["A100"]}])
    job = {j.name: j for j in fleet_with(jobs__extra=text).jobs}["extra"]
    assert job.placement.node_selector == {"zone": "b"}
    assert job.placement.describe() == "zone=b; gpu.product In (A100)"
    assert job.placement.allows(NODE) and not job.placement.allows({"zone": "b"})


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (
            {"key": "gpu.product", "operator": "Equals", "values": ["A100"]},
            "matchExpressions[0].operator: 'Equals': Kubernetes knows In, NotIn, Exists",
        ),
        (
            {"key": "cores", "operator": "Gt", "values": ["many"]},
            "matchExpressions[0].values: Gt takes exactly one integer",
        ),
        (
            {"key": "cores", "operator": "Lt", "values": ["²"]},
            "matchExpressions[0].values: Lt takes exactly one integer",
        ),
    ],
)
def test_an_expression_the_api_server_refuses_is_a_problem_line(expression, expected) -> None:
    fleet = fleet_with(jobs__extra=job_with_affinity([expression]))
    lines = [p.line() for p in fleet.problems]
    where = (
        "jobs/extra.yaml: spec.components[0].template.spec.template.spec.affinity.nodeAffinity."
        "requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]."
    )
    assert len(lines) == 1 and lines[0].startswith(where + expected), lines


def test_a_field_requirement_reads_the_nodes_name_not_a_label() -> None:
    by_name = Requirement(key="metadata.name", operator="In", values=("gpu-7",), field=True)
    assert by_name.holds({}, name="gpu-7")
    assert not by_name.holds({"metadata.name": "gpu-7"}, name="gpu-8")
    not_it = by_name.model_copy(update={"operator": "NotIn"})
    assert not_it.holds({}, name="gpu-8") and not not_it.holds({}, name="gpu-7")
    # In a term, fields and label expressions must all hold.
    zone_b = Requirement(key="zone", operator="In", values=("b",))
    node = Node(allocatable=Resources(cpu=1, memory_bytes=1, gpu=0), name="gpu-7", labels=NODE)
    assert node.selected_by(Placement(terms=((by_name, zone_b),)))
    assert not node.selected_by(Placement(terms=((not_it, zone_b),)))


def job_with_fields(fields: list[dict]) -> str:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": fields}]
            }
        }
    }
    return appwrapper(pod_spec={"affinity": affinity})


def test_a_jobs_match_fields_come_from_its_pod_template() -> None:
    text = job_with_fields([{"key": "metadata.name", "operator": "In", "values": ["gpu-7"]}])
    job = {j.name: j for j in fleet_with(jobs__extra=text).jobs}["extra"]
    assert job.placement.describe() == "metadata.name In (gpu-7)"
    assert job.placement.allows({}, name="gpu-7") and not job.placement.allows({}, name="x")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"key": "metadata.labels", "operator": "In", "values": ["x"]}, "key: 'metadata.labels'"),
        ({"key": "metadata.name", "operator": "Exists"}, "operator: 'Exists': matchFields takes"),
        (
            {"key": "metadata.name", "operator": "In", "values": ["a", "b"]},
            "values: matchFields on metadata.name takes exactly one value",
        ),
    ],
)
def test_a_match_field_the_api_server_refuses_is_a_problem_line(expression, expected) -> None:
    fleet = fleet_with(jobs__extra=job_with_fields([expression]))
    lines = [p.line() for p in fleet.problems]
    where = (
        "jobs/extra.yaml: spec.components[0].template.spec.template.spec.affinity.nodeAffinity."
        "requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0]."
    )
    assert len(lines) == 1 and lines[0].startswith(where + expected), lines


@pytest.mark.parametrize(
    ("affinity", "field"),
    [
        (
            {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [None]}]
                    }
                }
            },
            "nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]."
            "matchExpressions[0]",
        ),
        (
            {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchFields": [None]}]
                    }
                }
            },
            "nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]."
            "matchFields[0]",
        ),
        (
            {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "labelSelector": {"matchExpressions": [None]},
                            "topologyKey": "kubernetes.io/hostname",
                        }
                    ]
                }
            },
            "podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector."
            "matchExpressions[0]",
        ),
    ],
)
def test_a_null_expression_is_a_problem_line_not_a_stop(affinity, field) -> None:
    # The schema lets `- ~` through; reading it stopped every reconcile.
    fleet = fleet_with(jobs__extra=appwrapper(pod_spec={"affinity": affinity}))
    assert [p.line() for p in fleet.problems] == [
        "jobs/extra.yaml: spec.components[0].template.spec.template.spec.affinity."
        f"{field}: expected an expression: its key, operator and values"
    ]
    assert "extra" not in {job.name for job in fleet.jobs}


GPU_TAINT = Taint(key="nvidia.com/gpu", value="present", effect="NoSchedule")


@pytest.mark.parametrize(
    ("toleration", "tolerates"),
    [
        (Toleration(key="nvidia.com/gpu", operator="Exists"), True),
        (Toleration(key="nvidia.com/gpu", value="present"), True),
        (Toleration(key="nvidia.com/gpu", value="absent"), False),
        (Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"), True),
        (Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoExecute"), False),
        (Toleration(key="nvidia.com/gpu", operator="Exists", effect="PreferNoSchedule"), False),
        (Toleration(key="dedicated", operator="Exists"), False),
        (Toleration(operator="Exists"), True),  # no key: every taint
    ],
)
def test_each_toleration_matches_a_taint_as_the_scheduler_does(toleration, tolerates) -> None:
    assert toleration.tolerates(GPU_TAINT) is tolerates


def test_a_node_takes_a_pod_only_when_it_tolerates_every_taint_of_it() -> None:
    size = Resources(cpu=8, memory_bytes=2**30, gpu=1)
    batch = Taint(key="dedicated", value="batch", effect="NoExecute")
    tainted = pools.node_groups([Node(allocatable=size, taints=(GPU_TAINT, batch))])
    gpu_only = Placement(tolerations=(Toleration(key="nvidia.com/gpu", operator="Exists"),))
    both = Placement(
        tolerations=(*gpu_only.tolerations, Toleration(key="dedicated", value="batch"))
    )

    def takes(placement: Placement, groups: pools.NodeGroups = tainted) -> bool:
        return pools.some_node_takes(size, placement, groups)

    assert not takes(gpu_only) and takes(both) and not takes(Placement())
    assert takes(Placement(), pools.node_groups([Node(allocatable=size)]))


def test_a_jobs_tolerations_come_from_its_pod_template() -> None:
    tolerations = [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "value": "batch"},
        {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
    ]
    job = {
        j.name: j
        for j in fleet_with(jobs__extra=appwrapper(pod_spec={"tolerations": tolerations})).jobs
    }["extra"]
    assert job.placement.tolerations == (
        Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),
        Toleration(key="dedicated", operator="Equal", value="batch"),
        Toleration(key="spot", operator="Exists", effect="NoExecute"),
    )


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        ({"key": "gpu", "operator": "Matches"}, "operator: 'Matches': Kubernetes knows Exists"),
        ({"key": "gpu", "effect": "NoRun"}, "effect: 'NoRun': Kubernetes knows NoSchedule"),
        ({"value": "x"}, "operator: must be Exists when the key is empty"),
        ({"key": "gpu", "operator": "Exists", "value": "x"}, "value: must be empty with"),
        ({"key": "gpu", "tolerationSeconds": 30}, "tolerationSeconds: only a NoExecute"),
    ],
)
def test_a_toleration_the_api_server_refuses_is_a_problem_line(toleration, expected) -> None:
    fleet = fleet_with(
        jobs__extra=appwrapper(pod_spec={"tolerations": [{"operator": "Exists"}, toleration]})
    )
    lines = [p.line() for p in fleet.problems]
    where = "jobs/extra.yaml: spec.components[0].template.spec.template.spec.tolerations[1]."
    assert len(lines) == 1 and lines[0].startswith(where + expected), lines


def spread_job(term: dict | None, *, labels: dict | None = None) -> str:
    doc = appwrapper_doc(job_spec={"parallelism": 4})
    template = doc["spec"]["components"][0]["template"]["spec"]["template"]
    template["metadata"] = {"labels": labels if labels is not None else {"app": "trainer"}}
    if term is not None:
        template["spec"]["affinity"] = {
            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
        }
    return yaml.safe_dump(doc, sort_keys=False)


ON_HOST = "kubernetes.io/hostname"


@pytest.mark.parametrize(
    ("term", "own_node"),
    [
        ({"labelSelector": {"matchLabels": {"app": "trainer"}}, "topologyKey": ON_HOST}, True),
        (
            {
                "labelSelector": {
                    "matchExpressions": [{"key": "app", "operator": "In", "values": ["trainer"]}]
                },
                "topologyKey": ON_HOST,
            },
            True,
        ),
        ({"labelSelector": {}, "topologyKey": ON_HOST}, True),  # every pod
        ({"topologyKey": ON_HOST}, False),  # no selector: no pod
        ({"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": ON_HOST}, False),
        (
            {
                "labelSelector": {"matchLabels": {"app": "trainer"}},
                "topologyKey": "topology.kubernetes.io/zone",
            },
            False,
        ),
        (None, False),
    ],
)
def test_a_pod_anti_affinity_on_the_host_against_its_own_pods_asks_a_node_each(
    term, own_node
) -> None:
    job = {j.name: j for j in fleet_with(jobs__extra=spread_job(term)).jobs}["extra"]
    assert job.placement.own_node is own_node
    assert job.pods_at_once == 4


def test_nodes_taking_counts_the_nodes_that_could_each_take_one_pod() -> None:
    pod = Resources(cpu=8, memory_bytes=2**30, gpu=0)
    big = Resources(cpu=16, memory_bytes=2**34, gpu=0)
    small = Resources(cpu=4, memory_bytes=2**34, gpu=0)
    tainted = (Taint(key="dedicated", effect="NoSchedule"),)
    groups = pools.node_groups(
        [
            Node(name="a", allocatable=big, labels={"zone": "b"}),
            Node(name="b", allocatable=big, labels={"zone": "b"}),
            Node(name="c", allocatable=big, labels={"zone": "c"}),
            Node(name="d", allocatable=small, labels={"zone": "b"}),
            Node(name="e", allocatable=big, labels={"zone": "b"}, taints=tainted),
        ]
    )
    assert pools.nodes_taking(pod, Placement(), groups) == 3
    assert pools.nodes_taking(pod, Placement(node_selector={"zone": "b"}), groups) == 2


OPTIONAL = {"optional": True}


def test_what_a_pod_needs_from_its_cluster_comes_from_its_volumes_and_environment() -> None:
    doc = appwrapper_doc()
    pod = doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]
    pod["volumes"] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "checkpoints"}},
        {"name": "settings", "configMap": {"name": "trainer"}},
        {"name": "extra", "configMap": {"name": "tuning", "optional": True}},
        {
            "name": "both",
            "projected": {
                "sources": [
                    {"configMap": {"name": "labels"}},
                    {"secret": {"name": "ca"}},
                    {"secret": {"name": "extra-ca", **OPTIONAL}},
                ]
            },
        },
        {"name": "creds", "secret": {"secretName": "s3"}},
        {"name": "maybe", "secret": {"secretName": "tls", **OPTIONAL}},
        {"name": "scratch", "emptyDir": {}},
    ]
    pod["initContainers"] = [
        {
            "name": "fetch",
            "image": "busybox",
            "envFrom": [
                {"configMapRef": {"name": "urls"}},
                {"secretRef": {"name": "hf-token"}},
                {"secretRef": {"name": "mirror", **OPTIONAL}},
            ],
        }
    ]
    pod["containers"][0]["env"] = [
        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "trainer", "key": "a"}}},
        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "b", **OPTIONAL}}},
        {"name": "C", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "c"}}},
        {"name": "E", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "e"}}},
        {"name": "F", "valueFrom": {"secretKeyRef": {"name": "y", "key": "f", **OPTIONAL}}},
        {"name": "D", "value": "plain"},
    ]
    pod["priorityClassName"] = "batch-low"
    pod["runtimeClassName"] = "gvisor"
    pod["serviceAccountName"] = "trainer"
    # Without its pull secret the kubelet still pulls a public image.
    pod["imagePullSecrets"] = [{"name": "registry"}]
    job = {j.name: j for j in fleet_with(jobs__extra=yaml.safe_dump(doc)).jobs}["extra"]
    assert job.needs == (
        "PersistentVolumeClaim batch/checkpoints",
        "ConfigMap batch/labels",
        "ConfigMap batch/trainer",
        "ConfigMap batch/urls",
        "Secret batch/ca",
        "Secret batch/hf-token",
        "Secret batch/s3",
        "Secret batch/wandb",
        "ServiceAccount batch/trainer",
        "PriorityClass batch-low",
        "RuntimeClass gvisor",
    )
    # A null entry names nothing: the reading goes on past it.
    pod["volumes"][3]["projected"]["sources"].append(None)
    job = {j.name: j for j in fleet_with(jobs__extra=yaml.safe_dump(doc)).jobs}["extra"]
    assert len(job.needs) == 11
    pod["serviceAccountName"] = "default"  # every namespace has it
    job = {j.name: j for j in fleet_with(jobs__extra=yaml.safe_dump(doc)).jobs}["extra"]
    assert not [need for need in job.needs if need.startswith("ServiceAccount")]
    assert {j.name: j for j in fleet_with().jobs}["etl-daily"].needs == ()


def test_a_need_is_looked_for_in_its_namespace_or_in_the_cluster() -> None:
    assert jobspec.scope_of("ConfigMap batch/settings") == ("ConfigMap batch", "settings")
    assert jobspec.scope_of("PriorityClass high") == ("PriorityClass", "high")
    # Never a namespace for a cluster's own kind, whatever its name holds.
    assert jobspec.scope_of("RuntimeClass a/b") == ("RuntimeClass", "a/b")
