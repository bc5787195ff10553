"""Which Pod Security Standards a Job's pod template meets: `baseline` and
`restricted`, by the rules of Kubernetes' Pod Security admission (the latest
version of each policy). A namespace labelled
`pod-security.kubernetes.io/enforce: restricted` on a spoke refuses every pod
that breaks a restricted rule; the Job is created there all the same and
makes no pod. So Caspian sends a job only where its pods would be admitted.

Each rule found broken is said as the field to change and what it must be,
with its path under the pod template's spec.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

LEVELS = ("privileged", "baseline", "restricted")
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"

# Capabilities a baseline pod may add; a restricted one, only the last.
BASELINE_CAPABILITIES = frozenset(
    {
        *("AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD"),
        *("NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"),
    }
)
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset(
    {
        *("kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range"),
        *("net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies"),
        *("net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports"),
        *("net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout"),
        *("net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"),
    }
)
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
RESTRICTED_VOLUMES = frozenset(
    {
        *("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral"),
        *("persistentVolumeClaim", "projected", "secret"),
    }
)
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
MOST_RULES = 3  # named in one reason; the rest are counted


def refusal(broken: Mapping[str, tuple[str, ...]], *, level: str, namespace: str) -> str | None:
    """Why a namespace that enforces `level` refuses a pod that breaks the
    rules of `broken` (from `broken_rules`), or None."""
    rules = broken.get(level) or ()
    if not rules:
        return None
    more = f"; and {len(rules) - MOST_RULES} more" if len(rules) > MOST_RULES else ""
    return (
        f"the namespace {namespace} enforces the {level} Pod Security Standard ({ENFORCE_LABEL}), "
        f"and its pod template breaks it: {'; '.join(rules[:MOST_RULES])}{more}"
    )


def broken_rules(template: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The rules the pod template breaks, by the level that holds to them:
    {"baseline": (...), "restricted": (...)}. Restricted holds to the baseline
    rules too, so what breaks baseline breaks restricted."""
    pod = _map(template.get("spec"))
    annotations = _map(_map(template.get("metadata")).get("annotations"))
    baseline = tuple(_baseline(pod, annotations))
    return {"baseline": baseline, "restricted": baseline + tuple(_restricted(pod))}


def _containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for index, container in enumerate(pod.get(kind) or []):
            yield f"{kind}[{index}]", _map(container)


def _baseline(pod: Mapping[str, Any], annotations: Mapping[str, Any]) -> Iterator[str]:
    context = _map(pod.get("securityContext"))
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key) is True:
            yield f"{key} must be false"
    if _map(context.get("windowsOptions")).get("hostProcess") is True:
        yield "securityContext.windowsOptions.hostProcess must be false"
    for index, volume in enumerate(pod.get("volumes") or []):
        if "hostPath" in _map(volume):
            yield f"volumes[{index}] must not be a hostPath"
    yield from _seccomp_not_unconfined("securityContext", context)
    yield from _selinux("securityContext", context)
    yield from _apparmor("securityContext", context)
    for sysctl in context.get("sysctls") or []:
        name = _map(sysctl).get("name")
        if name not in SAFE_SYSCTLS:
            yield f"securityContext.sysctls must not set {name}"
    for key, value in annotations.items():
        if str(key).startswith(APPARMOR_ANNOTATION) and not _apparmor_allowed(value):
            yield f"the annotation {key} must be runtime/default or localhost/<profile>"
    for where, container in _containers(pod):
        own = _map(container.get("securityContext"))
        at = f"{where}.securityContext"
        if own.get("privileged") is True:
            yield f"{at}.privileged must be false"
        if _map(own.get("windowsOptions")).get("hostProcess") is True:
            yield f"{at}.windowsOptions.hostProcess must be false"
        added = set(_map(own.get("capabilities")).get("add") or []) - BASELINE_CAPABILITIES
        if added:
            yield f"{at}.capabilities.add must not add {', '.join(sorted(map(str, added)))}"
        for port_index, port in enumerate(container.get("ports") or []):
            if _map(port).get("hostPort"):
                yield f"{where}.ports[{port_index}].hostPort must be unset or 0"
        if own.get("procMount") not in (None, "Default"):
            yield f"{at}.procMount must be Default"
        yield from _seccomp_not_unconfined(at, own)
        yield from _selinux(at, own)
        yield from _apparmor(at, own)


def _restricted(pod: Mapping[str, Any]) -> Iterator[str]:
    context = _map(pod.get("securityContext"))
    for index, volume in enumerate(pod.get("volumes") or []):
        kinds = [key for key in _map(volume) if key != "name"]
        if any(kind not in RESTRICTED_VOLUMES for kind in kinds):
            yield f"volumes[{index}] must be a configMap, csi, downwardAPI, emptyDir, " + (
                "ephemeral, persistentVolumeClaim, projected or secret volume"
            )
    if context.get("runAsUser") == 0:
        yield "securityContext.runAsUser must not be 0"
    # A Windows pod is spared the rules Linux alone has.
    linux = _map(pod.get("os")).get("name") != "windows"
    for where, container in _containers(pod):
        own = _map(container.get("securityContext"))
        at = f"{where}.securityContext"
        if linux and own.get("allowPrivilegeEscalation") is not False:
            yield f"{at}.allowPrivilegeEscalation must be false"
        non_root = own.get("runAsNonRoot")
        if non_root is None:  # unset in the container: the pod's holds
            non_root = context.get("runAsNonRoot")
        if non_root is not True:
            yield f"{at}.runAsNonRoot (or the pod's) must be true"
        if own.get("runAsUser") == 0:
            yield f"{at}.runAsUser must not be 0"
        profile = _map(own.get("seccompProfile")) or _map(context.get("seccompProfile"))
        if linux and profile.get("type") not in ("RuntimeDefault", "Localhost"):
            yield f"{at}.seccompProfile.type (or the pod's) must be RuntimeDefault or Localhost"
        capabilities = _map(own.get("capabilities"))
        if linux and "ALL" not in (capabilities.get("drop") or []):
            yield f"{at}.capabilities.drop must hold ALL"
        added = set(capabilities.get("add") or []) - RESTRICTED_CAPABILITIES
        if linux and added:
            yield f"{at}.capabilities.add may add NET_BIND_SERVICE only"


def _seccomp_not_unconfined(at: str, context: Mapping[str, Any]) -> Iterator[str]:
    if _map(context.get("seccompProfile")).get("type") == "Unconfined":
        yield f"{at}.seccompProfile.type must not be Unconfined"


def _selinux(at: str, context: Mapping[str, Any]) -> Iterator[str]:
    options = _map(context.get("seLinuxOptions"))
    if options.get("type", "") not in SELINUX_TYPES:
        yield f"{at}.seLinuxOptions.type must be one of the container types (container_t, ...)"
    for key in ("user", "role"):
        if options.get(key):
            yield f"{at}.seLinuxOptions.{key} must be unset"


def _apparmor(at: str, context: Mapping[str, Any]) -> Iterator[str]:
    kind = _map(context.get("appArmorProfile")).get("type")
    if kind is not None and kind not in ("RuntimeDefault", "Localhost"):
        yield f"{at}.appArmorProfile.type must be RuntimeDefault or Localhost"


def _apparmor_allowed(value: Any) -> bool:
    return value in ("", "runtime/default") or str(value).startswith("localhost/")


def _map(value: Any) -> Mapping[str, Any]:
    """A mapping from the template, or an empty one where the field is unset
    (the Job schema has already held the fields to their shapes)."""
    return value if isinstance(value, Mapping) else {}
