"""The Pod Security Standards a job's pod template meets, by the rules of Pod
Security admission; a spoke whose namespace enforces a level the template
breaks is not used for the job."""

from __future__ import annotations

import copy

import yaml

from reconciler.podsecurity import broken_rules, refusal
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.reconcile.test_lifecycle import entries, step

PLAIN = {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}
HARDENED = {
    "spec": {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "main",
                "image": "busybox",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                },
            }
        ],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
    }
}


def with_changes(base, change) -> dict:
    template = copy.deepcopy(base)
    change(template["spec"])
    return template


def test_a_plain_pod_meets_baseline_and_not_restricted() -> None:
    assert broken_rules(PLAIN) == {
        "baseline": (),
        "restricted": (
            "containers[0].securityContext.allowPrivilegeEscalation must be false",
            "containers[0].securityContext.runAsNonRoot (or the pod's) must be true",
            "containers[0].securityContext.seccompProfile.type (or the pod's) must be "
            "RuntimeDefault or Localhost",
            "containers[0].securityContext.capabilities.drop must hold ALL",
        ),
    }
    assert broken_rules(HARDENED) == {"baseline": (), "restricted": ()}


def test_what_breaks_baseline_breaks_restricted_too() -> None:
    def loosen(pod) -> None:
        pod["hostNetwork"] = True
        pod["volumes"].append({"name": "logs", "hostPath": {"path": "/var/log"}})
        pod["securityContext"]["sysctls"] = [{"name": "kernel.msgmax", "value": "1"}]
        main = pod["containers"][0]
        main["ports"] = [{"containerPort": 80, "hostPort": 8080}]
        main["securityContext"].update(
            privileged=True,
            procMount="Unmasked",
            seccompProfile={"type": "Unconfined"},
            seLinuxOptions={"user": "system_u"},
        )
        main["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN", "CHOWN"]

    rules = broken_rules(with_changes(HARDENED, loosen))
    assert rules["baseline"] == (
        "hostNetwork must be false",
        "volumes[1] must not be a hostPath",
        "securityContext.sysctls must not set kernel.msgmax",
        "containers[0].securityContext.privileged must be false",
        "containers[0].securityContext.capabilities.add must not add SYS_ADMIN",
        "containers[0].ports[0].hostPort must be unset or 0",
        "containers[0].securityContext.procMount must be Default",
        "containers[0].securityContext.seccompProfile.type must not be Unconfined",
        "containers[0].securityContext.seLinuxOptions.user must be unset",
    )
    assert rules["restricted"][: len(rules["baseline"])] == rules["baseline"]
    assert (
        "volumes[1] must be a configMap, csi, downwardAPI, emptyDir, ephemeral, "
        in (rules["restricted"][len(rules["baseline"])])
    )
    # An AppArmor profile that confines nothing, by annotation or by field.
    unconfined = copy.deepcopy(HARDENED)
    unconfined["metadata"] = {
        "annotations": {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}
    }
    unconfined["spec"]["securityContext"]["appArmorProfile"] = {"type": "Unconfined"}
    assert broken_rules(unconfined)["baseline"] == (
        "securityContext.appArmorProfile.type must be RuntimeDefault or Localhost",
        "the annotation container.apparmor.security.beta.kubernetes.io/main must be "
        "runtime/default or localhost/<profile>",
    )


def test_a_containers_own_setting_overrides_the_pods() -> None:
    def root(pod) -> None:
        pod["containers"][0]["securityContext"]["runAsNonRoot"] = False
        pod["initContainers"] = [
            {"name": "fetch", "securityContext": {"allowPrivilegeEscalation": False}}
        ]

    assert broken_rules(with_changes(HARDENED, root))["restricted"] == (
        # The init container has the pod's runAsNonRoot and seccomp profile.
        "initContainers[0].securityContext.capabilities.drop must hold ALL",
        "containers[0].securityContext.runAsNonRoot (or the pod's) must be true",
    )
    # A Windows pod is held to neither seccomp, privilege escalation nor capabilities.
    windows = with_changes(PLAIN, lambda pod: pod.update(os={"name": "windows"}))
    assert broken_rules(windows)["restricted"] == (
        "containers[0].securityContext.runAsNonRoot (or the pod's) must be true",
    )


def test_a_refusal_names_the_namespace_the_level_and_the_first_rules() -> None:
    broken = broken_rules(PLAIN)
    assert refusal(broken, level="baseline", namespace="batch") is None
    assert refusal(broken, level="restricted", namespace="batch") == (
        "the namespace batch enforces the restricted Pod Security Standard "
        "(pod-security.kubernetes.io/enforce), and its pod template breaks it: "
        "containers[0].securityContext.allowPrivilegeEscalation must be false; "
        "containers[0].securityContext.runAsNonRoot (or the pod's) must be true; "
        "containers[0].securityContext.seccompProfile.type (or the pod's) must be "
        "RuntimeDefault or Localhost; and 1 more"
    )


def test_a_job_goes_only_where_its_namespaces_pod_security_admits_it() -> None:
    # The template's jobs set no securityContext: baseline, not restricted.
    files = template_files()
    strict = {"pod_security": {"batch": "restricted"}}
    loose = {"pod_security": {"batch": "baseline"}}
    decision, _ = step(files, now=NOW, states={"paris": strict, "frankfurt": loose})
    placed = entries(decision)
    batch = [e for e in placed.values() if e.id.startswith("batch/") and e.spoke]
    assert batch and all(e.spoke != "paris" for e in batch)
    assert placed["media/video-transcode"].spoke == "paris"  # media enforces nothing
    assert decision.missing["batch/etl-daily"]["paris"].startswith(
        "its pods would be refused there: the namespace batch enforces the restricted Pod "
        "Security Standard"
    )
    assert_valid_plan(decision.instance, decision.plan)
    # A job hardened to restricted goes there again.
    doc = yaml.safe_load(files["jobs/etl-daily.yaml"])
    template = doc["spec"]["components"][0]["template"]["spec"]["template"]
    template["spec"].update(HARDENED["spec"] | {"containers": template["spec"]["containers"]})
    template["spec"]["containers"][0]["securityContext"] = HARDENED["spec"]["containers"][0][
        "securityContext"
    ]
    hardened = {**files, "jobs/etl-daily.yaml": yaml.safe_dump(doc).encode()}
    again, _ = step(hardened, now=NOW, states={"paris": strict, "frankfurt": loose})
    assert "batch/etl-daily" not in again.missing
