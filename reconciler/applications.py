"""What the hub's Argo CD Applications say of Caspian's Jobs on each spoke, as
the custom-objects API hands them back (plain dicts no schema checked): their
phase by the health check of argocd/job-health.yaml, since when one has made no
pod or has none ready, which a sync failed to apply and why, and whether
anything stops Argo CD from syncing an Application at all.
`reconciler/kube.py` lists the Applications; this module only reads them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from reconciler.fleet import JobRequest
from reconciler.kubeobjects import one_line

SPOKE_LABEL = "caspian.dev/spoke"
JOB_HEALTH_CHECK = "resource.customizations.health.batch_Job"
# The first line of argocd/job-health.yaml's check. Since version 2 its
# Progressing message says whether the Job has begun (version 1 says "running"
# from the moment the Job is resumed); since version 3 it says when the Job
# began and when it ended.
JOB_HEALTH_VERSION = "-- caspian job health 3"
CHECK_VERSION = re.compile(r"^-- caspian job health (\d+)$", re.MULTILINE)
# Argo CD's health of a Job, as Caspian's lifecycle reads it. Suspended (not yet
# dispatched) and Missing (not yet synced) say nothing of how it ran.
HEALTH_PHASES = {"Progressing": "Running", "Healthy": "Succeeded", "Degraded": "Failed"}
# The check's Progressing messages for a Job that has not begun: its pods wait,
# or it has none since it was resumed (its pods are refused).
NOT_BEGUN = re.compile(r"starting$|no pod ready since |no pod since ")
PODLESS_SINCE = re.compile(r"no pod since (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")
UNREADY_SINCE = re.compile(r"no pod ready since (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")
RUNNING_SINCE = re.compile(r"running since (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)$")
# How a Healthy or Degraded message ends: when the Job began (was resumed),
# and when it completed or failed, each where its status says.
_MOMENT = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
RAN = re.compile(rf" ?\((?:began (?P<began>{_MOMENT}))?(?:, )?(?:ended (?P<ended>{_MOMENT}))?\)$")
# The conditions of an Application that stop Argo CD from syncing it at all.
# (A SyncError is one sync that failed: its Jobs are read one by one.)
BLOCKING = ("ComparisonError", "InvalidSpecError")


def blocked(application: Any) -> tuple[str, datetime | None] | None:
    """Why Argo CD cannot sync an Application at all, by its conditions: it
    cannot reach the spoke's cluster, or find it registered, or build the
    directory; and since when, where the condition says. Or why it does not
    sync it by itself: its automated sync is off, so a Job Caspian commits
    starts only when someone syncs it by hand. None where nothing stops it."""
    conditions = _map(_map(application).get("status")).get("conditions")
    for condition in conditions if isinstance(conditions, list) else []:
        condition = _map(condition)
        kind, message = condition.get("type"), condition.get("message")
        if isinstance(kind, str) and kind in BLOCKING:
            why = f"{kind}: {one_line(message)}" if isinstance(message, str) else kind
            return f"Argo CD cannot sync its Application: {why}", _time(
                condition.get("lastTransitionTime")
            )
    automated = _automated(application)
    # Present, even empty, turns it on; `enabled: false` keeps it off.
    if not isinstance(automated, dict) or automated.get("enabled") is False:
        return NOT_AUTOMATED, None
    return None


def _automated(application: Any) -> Any:
    """Its spec.syncPolicy.automated, as the API hands it back (None where unset)."""
    return _map(_map(_map(application).get("spec")).get("syncPolicy")).get("automated")


# A spoke's reason is cut at 160 characters: the fix comes first.
NOT_AUTOMATED = (
    "Argo CD does not sync its Application by itself (spec.syncPolicy.automated is off); "
    "set it, as argocd/applicationset.yaml does"
)


def loose_ends(application: Any, *, spoke: str) -> list[str]:
    """What Argo CD, syncing an Application by itself, leaves undone on its
    spoke that Caspian counts on, each with the fix: removing what left its
    directory (`prune`), and undoing a change made there by hand (`selfHeal`)."""
    automated = _map(_automated(application))
    name = _map(_map(application).get("metadata")).get("name")
    found = []
    if automated.get("prune") is not True:
        found.append(
            f"Application {name} does not prune: a Job whose file leaves rendered/{spoke}/ (a "
            "requeued job's, a cancelled one's) stays on the spoke, and may run there still; "
            "set spec.syncPolicy.automated.prune to true, as argocd/applicationset.yaml does"
        )
    if automated.get("selfHeal") is not True:
        # Without it Argo CD syncs only when the branch moves: a Job
        # suspended or deleted there by hand stays so until Caspian commits.
        found.append(
            f"Application {name} does not self-heal: a Job suspended, changed or deleted on "
            "the spoke by hand stays so until Argo CD next syncs it for a new commit; set "
            "spec.syncPolicy.automated.selfHeal to true, as argocd/applicationset.yaml does"
        )
    return found


class Seen(NamedTuple):
    """What an Application says of Caspian's Jobs on its spoke."""

    jobs: dict[str, str]  # phases by namespace/name
    podless: dict[str, datetime]  # since when each has made no pod
    unready: dict[str, datetime]  # since when each has had pods, none ready
    unapplied: dict[str, datetime]  # since when Argo CD has failed to apply each
    said: dict[str, str]  # why it failed, in the words of the spoke's API
    # When each that has begun began, and each that ended ended, by the check.
    started: dict[str, datetime]
    ended: dict[str, datetime]
    # Each Job it lists that is on its spoke: all but those Missing there. None
    # where it keeps no health, which alone tells one Missing.
    listed: frozenset[str] | None = None
    # Each Job it lists as Suspended, by argocd/job-health.yaml's check.
    suspended: frozenset[str] = frozenset()


def application_jobs(
    application: Any, *, checked: bool, companions: Mapping[str, JobRequest] | None = None
) -> tuple[str | None, Seen, bool]:
    """The spoke an Application syncs, what it says of its Jobs, and whether
    it holds their health (Argo CD may keep it out: then only its syncs say
    anything). `companions` gives the job that wraps each ConfigMap and
    Service, by `Kind namespace/name` (companions.owners): one Argo CD failed
    to apply holds back its Job."""
    nothing = Seen({}, {}, {}, {}, {}, {}, {})
    if not isinstance(application, dict):
        return None, nothing, True
    metadata, status = _map(application.get("metadata")), _map(application.get("status"))
    spoke = _map(metadata.get("labels")).get(SPOKE_LABEL)
    if not isinstance(spoke, str):
        return None, nothing, True
    unapplied, said = _sync_failures(status, companions or {})
    if status.get("resourceHealthSource") == "appTree":
        return spoke, Seen({}, {}, {}, unapplied, said, {}, {}), False
    resources = status.get("resources")
    health = _job_health(resources, checked=checked)
    listed = _live_jobs(resources)
    held = _suspended(resources) if checked else frozenset()
    return (
        spoke,
        Seen(
            jobs=health.jobs,
            podless=health.podless,
            unready=health.unready,
            unapplied=unapplied,
            said=health.failed | said,
            listed=listed,
            suspended=held,
            started=health.started,
            ended=health.ended,
        ),
        True,
    )


def check_version(check: str) -> int:
    """The version of argocd/job-health.yaml's check that argocd-cm holds:
    its marker line's, 1 for the first, which had none."""
    marked = CHECK_VERSION.search(check)
    return int(marked.group(1)) if marked else 1


def _live_jobs(resources: Any) -> frozenset[str] | None:
    """The Jobs an Application lists that its spoke has: Argo CD calls one in
    git that the spoke lacks Missing. A Job committed since its last refresh
    is not among them, as on a spoke that has not synced it yet. None where
    it lists no resources at all: an answer that says nothing is no word that
    its Jobs are missing."""
    if not isinstance(resources, list):
        return None
    return frozenset(
        key
        for resource in resources
        if (key := _job_key(resource)) is not None
        and _map(resource.get("health")).get("status") != "Missing"
    )


def _suspended(resources: Any) -> frozenset[str]:
    """The Jobs an Application lists whose health is Suspended: the check of
    argocd/job-health.yaml says so of a Job whose spec.suspend is true (Argo
    CD's own check is not relied on to)."""
    return frozenset(
        key
        for resource in (resources if isinstance(resources, list) else [])
        if (key := _job_key(resource)) is not None
        and _map(resource.get("health")).get("status") == "Suspended"
    )


class _Health(NamedTuple):
    """What the health of the Jobs an Application lists says, by namespace/name."""

    jobs: dict[str, str]  # their phases
    podless: dict[str, datetime]  # since when each that has made no pod has not
    unready: dict[str, datetime]  # since when each whose pods wait has had none ready
    failed: dict[str, str]  # why each failed Job failed
    started: dict[str, datetime]  # when each that has begun began
    ended: dict[str, datetime]  # when each that ended ended


def _job_health(resources: Any, *, checked: bool) -> _Health:
    """The phases of the Jobs an Application lists, by their health, and what
    their messages say. A Job that has not begun (by the check's message) is
    not running yet; one that has made no pod since it was resumed is
    `podless`, and one whose pods wait `unready`, as the kube observer would
    find them. Why a Job failed is its message, less when it ran."""
    found = _Health({}, {}, {}, {}, {}, {})
    for resource in resources if isinstance(resources, list) else []:
        key = _job_key(resource)
        if key is None:
            continue
        health = _map(resource.get("health"))
        word, message = health.get("status"), health.get("message")
        phase = HEALTH_PHASES.get(word) if isinstance(word, str) else None
        message = message if isinstance(message, str) else ""
        if phase == "Running" and checked and NOT_BEGUN.match(message):
            if (since := _since(PODLESS_SINCE, message)) is not None:
                found.podless[key] = since
            elif (since := _since(UNREADY_SINCE, message)) is not None:
                found.unready[key] = since
        elif phase and (checked or phase == "Failed"):
            found.jobs[key] = phase
            if checked and (since := _since(RUNNING_SINCE, message)) is not None:
                found.started[key] = since
            ran = RAN.search(message) if checked else None
            if ran is not None and (ran["began"] or ran["ended"]):
                for moments, said in ((found.started, ran["began"]), (found.ended, ran["ended"])):
                    if (moment := _time(said)) is not None:
                        moments[key] = moment
                message = message[: ran.start()]
            if phase == "Failed" and message.strip():
                found.failed[key] = one_line(message)
    return found._replace(
        podless=dict(sorted(found.podless.items())), unready=dict(sorted(found.unready.items()))
    )


def _sync_failures(
    status: dict, companions: Mapping[str, JobRequest]
) -> tuple[dict[str, datetime], dict[str, str]]:
    """The Jobs the Application's last sync failed to apply and that are out of
    sync still, since when, and what the spoke's API answered: an admission
    webhook that refuses the Job (a policy engine checks a Job's pod template
    as it would a pod's), a quota on the count of Jobs. Such a Job never
    reaches its spoke, and the kube observer cannot tell it from one Argo CD
    has yet to sync. A ConfigMap or Service of a job that failed to apply
    counts for its Job, where that is out of sync too, in the Job's own words
    where it has some."""
    operation = status.get("operationState")
    if not isinstance(operation, dict) or not isinstance(operation.get("syncResult"), dict):
        return {}, {}
    when = _time(operation.get("finishedAt")) or _time(operation.get("startedAt"))
    results = operation["syncResult"].get("resources")
    if when is None or not isinstance(results, list):
        return {}, {}
    listed = status.get("resources")
    out_of_sync = {
        _job_key(resource)
        for resource in (listed if isinstance(listed, list) else [])
        if isinstance(resource, dict) and resource.get("status") != "Synced"
    }
    since: dict[str, datetime] = {}
    said: dict[str, str] = {}
    # A Job's own results first, so that its own words win.
    for result in sorted(results, key=lambda r: _job_key(r) is None):
        key, whose = _job_key(result), ""
        if key is None and (owner := _owner(result, companions, out_of_sync)) is not None:
            key, whose = owner, f"its {result['kind']} {result['name']}: "
        if key is None or key not in out_of_sync or result.get("status") != "SyncFailed":
            continue
        since[key] = when
        message = result.get("message")
        if isinstance(message, str) and message.strip() and key not in said:
            said[key] = one_line(whose + message)
    return dict(sorted(since.items())), said


def _owner(
    result: Any, companions: Mapping[str, JobRequest], out_of_sync: set[str | None]
) -> str | None:
    """namespace/name of the out-of-sync Job, of any run, of the job that wraps
    the ConfigMap or Service of a sync result; None for anything else."""
    if not isinstance(result, dict) or result.get("group") not in ("", None):
        return None
    kind, namespace, name = result.get("kind"), result.get("namespace"), result.get("name")
    job = companions.get(f"{kind} {namespace}/{name}")
    if job is None:
        return None
    for key in sorted(k for k in out_of_sync if k is not None):
        there, _, job_name = key.partition("/")
        run = re.fullmatch(rf".*-{re.escape(job.template_hash)}(?:-r(\d+))?", job_name)
        if there == job.namespace and run and job.job_name_for(retry=int(run[1] or 0)) == job_name:
            return key
    return None


def _map(value: Any) -> dict:
    """A field of the custom-objects API's answer, which no schema checked."""
    return value if isinstance(value, dict) else {}


def _job_key(resource: Any) -> str | None:
    """namespace/name of a Job an Application lists; None for anything else."""
    if not isinstance(resource, dict):
        return None
    if (resource.get("group"), resource.get("kind")) != ("batch", "Job"):
        return None
    namespace, name = resource.get("namespace"), resource.get("name")
    if not (isinstance(namespace, str) and namespace and isinstance(name, str) and name):
        return None
    return f"{namespace}/{name}"


def _since(pattern: re.Pattern[str], message: str) -> datetime | None:
    found = pattern.match(message)
    return _time(found.group(1)) if found else None


def _time(text: Any) -> datetime | None:
    """An RFC 3339 time as Argo CD writes it (UTC, "Z")."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:  # a time no clock shows
        return None
    return moment if moment.tzinfo is not None else None
