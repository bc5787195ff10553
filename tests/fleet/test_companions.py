"""An AppWrapper may wrap ConfigMaps and Services beside its one Job: they are
read with it, checked as the API server and Argo CD would check them, and kept
apart from other jobs' of the same name. Other kinds are refused with the way
out."""

from __future__ import annotations

import copy
import random
from typing import Any

import kubernetes_validate
import pytest
import yaml

from reconciler import crd
from reconciler.loading import load_fleet
from reconciler.rendering import companion_manifest
from reconciler.templates import template_files
from tests.fleet.helpers import appwrapper_doc, fleet_with, problems_of

CONFIG = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "trainer-config"},
    "data": {"config.yaml": "epochs: 3\n"},
}
PEERS = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "trainer-peers"},
    "spec": {"clusterIP": "None", "selector": {"caspian.dev/appwrapper": "trainer"}},
}


def wrapping(
    *companions: dict[str, Any],
    name: str = "trainer",
    first: bool = False,
    spokes: str | None = None,
) -> str:
    """An AppWrapper whose Job mounts trainer-config, with `companions` after
    its Job (or before it, `first`), allowed on `spokes` alone where given."""
    doc = appwrapper_doc(name, annotations={"caspian.dev/spokes": spokes} if spokes else None)
    pod = doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "config", "configMap": {"name": "trainer-config"}}]
    pod["containers"][0]["volumeMounts"] = [{"name": "config", "mountPath": "/etc/trainer"}]
    others = [{"template": copy.deepcopy(c)} for c in companions]
    job = doc["spec"]["components"]
    doc["spec"]["components"] = [*others, *job] if first else [*job, *others]
    return yaml.safe_dump(doc, sort_keys=False)


def the_job(fleet, name: str = "trainer"):
    return next(job for job in fleet.jobs if job.name == name)


def test_a_configmap_and_a_service_are_read_with_the_job() -> None:
    fleet = fleet_with(jobs__trainer=wrapping(CONFIG, PEERS))
    assert problems_of(fleet) == []
    job = the_job(fleet)
    assert [(c.kind, c.name, c.field) for c in job.companions] == [
        ("ConfigMap", "trainer-config", "spec.components[1].template"),
        ("Service", "trainer-peers", "spec.components[2].template"),
    ]
    # The ConfigMap goes with the Job, so no spoke is asked to have it; without
    # it wrapped, every spoke is.
    assert "ConfigMap batch/trainer-config" not in job.needs
    alone = the_job(fleet_with(jobs__trainer=wrapping()))
    assert "ConfigMap batch/trainer-config" in alone.needs
    # Its companions do not name its Job: an edited ConfigMap is applied in place.
    assert alone.job_name == job.job_name


def test_the_job_may_come_after_them_and_its_problems_name_its_place() -> None:
    text = wrapping(CONFIG, first=True).replace("cpu: '2'", "cpu: two")
    fleet = fleet_with(jobs__trainer=text)
    assert problems_of(fleet) == [
        "jobs/trainer.yaml: spec.components[1].template.spec.template.spec.containers[0]"
        ".resources.requests[cpu]: 'two' is not a Kubernetes quantity (e.g. 500m, 4, 16Gi)"
    ]
    fine = the_job(fleet_with(jobs__trainer=wrapping(CONFIG, first=True)))
    assert [c.field for c in fine.companions] == ["spec.components[0].template"]


@pytest.mark.parametrize(
    ("template", "said"),
    [
        (
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"}},
            "v1/Secret: Caspian places AppWrappers that wrap one batch/v1 Job, with the "
            "ConfigMaps and Services it uses; its data would be in git",
        ),
        (
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "d"}},
            "deleted when the job moves or ends: create the claim on each spoke",
        ),
        (
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}},
            "give each spoke that may run it the Deployment some other way",
        ),
    ],
)
def test_other_kinds_beside_the_job_are_refused_with_the_way_out(template, said) -> None:
    fleet = fleet_with(jobs__trainer=wrapping(CONFIG, template))
    (line,) = problems_of(fleet)
    assert line.startswith("jobs/trainer.yaml: spec.components[2].template: ")
    assert said in line
    assert "trainer" not in {job.name for job in fleet.jobs}


def _changed(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`base` with the field at dotted `path` set to `value` (None: removed)."""
    doc = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    ("companion", "field", "said"),
    [
        (
            _changed(CONFIG, "metadata.name", None),
            "metadata.name",
            "required: Argo CD applies an object by its name",
        ),
        (
            _changed(_changed(CONFIG, "metadata.name", None), "metadata.generateName", "c-"),
            "metadata.name",
            "(it cannot use generateName)",
        ),
        (
            _changed(PEERS, "metadata.name", "2peers"),
            "metadata.name",
            "'2peers' is no Service name",
        ),
        (
            _changed(CONFIG, "metadata.name", "Trainer_Config"),
            "metadata.name",
            "'Trainer_Config' is no name of an object",
        ),
        (
            _changed(CONFIG, "metadata.namespace", "media"),
            "metadata.namespace",
            "'media' is not the AppWrapper's namespace 'batch'",
        ),
        (_changed(CONFIG, "datas", {"a": "b"}), "datas", "unknown field"),
        (_changed(CONFIG, "data", {"epochs": 3}), "data.epochs", "quote"),
        (_changed(CONFIG, "data", {"a b": "c"}), "data[a b]", "'a b' is no ConfigMap key"),
        (_changed(CONFIG, "immutable", True), "immutable", "Kubernetes refuses for an immutable"),
        (
            _changed(_changed(PEERS, "spec.clusterIP", "10.96.0.20"), "spec.ports", [{"port": 80}]),
            "spec.clusterIP",
            "an address of one cluster's service range",
        ),
        (
            _changed(PEERS, "spec.clusterIP", None),
            "spec.ports",
            "required: Kubernetes takes a Service without ports only if it is headless",
        ),
        (
            _changed(CONFIG, "metadata.annotations", {"argocd.argoproj.io/hook": "PreSync"}),
            "metadata.annotations.argocd.argoproj.io/hook",
            "a sync hook runs again at every sync",
        ),
        (
            _changed(
                CONFIG,
                "metadata.annotations",
                {"argocd.argoproj.io/sync-options": "Replace=true,Prune=false"},
            ),
            "metadata.annotations.argocd.argoproj.io/sync-options",
            "remove Prune=false: it goes from a spoke with its Job",
        ),
        (
            # As Kubernetes' own example of an Indexed Job's headless Service has it.
            _changed(PEERS, "spec.selector", {"job-name": "trainer"}),
            "spec.selector[job-name]",
            "would select none of its pods: select caspian.dev/appwrapper: trainer",
        ),
        (
            _changed(CONFIG, "metadata.labels", {"team": "ml ops"}),
            "metadata.labels[team]",
            "is not a label value",
        ),
    ],
)
def test_a_companion_the_api_server_or_argocd_would_refuse_is_named(companion, field, said) -> None:
    fleet = fleet_with(jobs__trainer=wrapping(companion))
    lines = problems_of(fleet)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"jobs/trainer.yaml: spec.components[1].template.{field}: "), lines
    assert said in lines[0]
    assert "trainer" not in {job.name for job in fleet.jobs}


def test_sync_options_that_do_not_keep_a_companion_behind_are_taken() -> None:
    replaced = _changed(
        CONFIG, "metadata.annotations", {"argocd.argoproj.io/sync-options": "Replace=true"}
    )
    assert problems_of(fleet_with(jobs__trainer=wrapping(replaced))) == []


def test_one_name_wrapped_twice_is_refused_but_a_configmap_and_service_may_share_it() -> None:
    twice = fleet_with(jobs__trainer=wrapping(CONFIG, CONFIG))
    assert problems_of(twice) == [
        "jobs/trainer.yaml: spec.components[2].template.metadata.name: ConfigMap "
        "'trainer-config' is wrapped twice, also at spec.components[1].template: rename one, "
        "or remove one"
    ]
    shared = _changed(PEERS, "metadata.name", "trainer-config")
    assert problems_of(fleet_with(jobs__trainer=wrapping(CONFIG, shared))) == []


def test_two_jobs_of_a_namespace_may_not_wrap_one_name() -> None:
    files = {
        **template_files(),
        "jobs/a-trainer.yaml": wrapping(CONFIG, name="a-trainer").encode(),
        "jobs/b-trainer.yaml": wrapping(CONFIG, PEERS, name="b-trainer").encode(),
    }
    fleet = load_fleet(files, appwrapper_schema=crd.check_appwrapper)
    assert problems_of(fleet) == [
        "jobs/b-trainer.yaml: spec.components[1].template.metadata.name: batch has a "
        "ConfigMap 'trainer-config' of jobs/a-trainer.yaml (batch/a-trainer) already, which "
        "may run on the same spoke: rename one, or create it on the spokes some other way and "
        "remove both"
    ]
    assert "a-trainer" in {job.name for job in fleet.jobs}
    assert "b-trainer" not in {job.name for job in fleet.jobs}
    # The one the ledger placed from its file keeps the name, whatever the order.
    held = load_fleet(
        files,
        appwrapper_schema=crd.check_appwrapper,
        held={"batch/b-trainer": "jobs/b-trainer.yaml"},
    )
    assert [p.file for p in held.problems] == ["jobs/a-trainer.yaml"]
    # A job refused so keeps none of its names from the jobs after it.
    third = {
        **files,
        "jobs/b-trainer.yaml": wrapping(CONFIG, PEERS, name="b-trainer").encode(),
        "jobs/c-trainer.yaml": wrapping(PEERS, name="c-trainer")
        .replace("trainer-config", "c-config")
        .encode(),
    }
    chained = load_fleet(third, appwrapper_schema=crd.check_appwrapper)
    assert [p.file for p in chained.problems] == ["jobs/b-trainer.yaml"]
    assert "c-trainer" in {job.name for job in chained.jobs}
    # Another namespace has names of its own.
    other = yaml.safe_load(files["jobs/b-trainer.yaml"])
    other["metadata"]["namespace"] = "media"
    apart = {**files, "jobs/b-trainer.yaml": yaml.safe_dump(other).encode()}
    assert problems_of(load_fleet(apart, appwrapper_schema=crd.check_appwrapper)) == []


def _fields(node: Any, prefix: tuple = ()) -> list[tuple]:
    """The path of every field under `node`."""
    found = [prefix] if prefix else []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, value in items:
        found += _fields(value, (*prefix, key))
    return found


def test_a_companion_edited_at_random_is_refused_or_one_kubernetes_takes() -> None:
    """Whatever a companion's fields hold, loading does not break, and one
    Caspian takes renders as Kubernetes' schemas take it, strictly."""
    base = yaml.safe_load(wrapping(CONFIG, PEERS))
    odd = [None, 5, -1, 1.5, [], {}, "", "x", "None", True, [None], {"a": None}, "a" * 300]
    rng = random.Random(4)
    version = kubernetes_validate.latest_version()
    taken = 0
    for _ in range(300):
        doc = copy.deepcopy(base)
        component = rng.choice(doc["spec"]["components"][1:])
        *parents, last = rng.choice(_fields(component))
        node = component
        for key in parents:
            node = node[key]
        if isinstance(node, dict) and rng.random() < 0.2:
            del node[last]
        else:
            node[last] = copy.deepcopy(rng.choice(odd))
        fleet = fleet_with(jobs__trainer=yaml.safe_dump(doc))
        for job in fleet.jobs:
            for companion in job.companions:
                taken += 1
                manifest = companion_manifest(companion, job=job)
                kubernetes_validate.validate(manifest, version, strict=True)
    assert taken > 20  # some edits leave a companion Kubernetes takes


def test_companions_without_a_job_are_refused_with_the_way_out() -> None:
    doc = appwrapper_doc("trainer")
    doc["spec"]["components"] = [{"template": CONFIG}, {"template": PEERS}]
    fleet = fleet_with(jobs__trainer=yaml.safe_dump(doc))
    assert problems_of(fleet) == [
        "jobs/trainer.yaml: spec.components: Caspian places AppWrappers that wrap one "
        "batch/v1 Job, with the ConfigMaps and Services it uses; found 2 components "
        "(v1/ConfigMap, v1/Service): wrap a batch/v1 Job"
    ]
