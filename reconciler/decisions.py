"""The values `decide` produces and `render` and the commit message consume."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from optimizer.model import Instance, Plan
from reconciler.admission import LimitRangeItem, ScopedQuota
from reconciler.fleet import JobRequest, PolicyWeights, Problem, Span
from reconciler.ledger import FINISHED, Cut, Entry, Ledger, Phase
from reconciler.pods import Node, Resources
from reconciler.syncwindows import SyncWindow


class SpokeState(BaseModel):
    """What a spoke can give Caspian now, and whether it answered at all."""

    model_config = ConfigDict(frozen=True)

    name: str
    up: bool = True
    cpu: float
    memory_bytes: float
    gpu: float
    source: str = "declared"
    reason: str = ""  # why the spoke is down
    # Since when it has been down, where its source tells (the time of Argo
    # CD's condition that stops it syncing); None where only "now" is known.
    down_since: datetime | None = None
    # Its cut as a spoke nothing syncs (arrivals.unsynced): the next ledger
    # keeps it, so that it stays so once its Jobs have left, and a second
    # cut holds it longer.
    unsynced: Cut | None = None
    # Caspian's Jobs seen there: namespace/name -> Running|Succeeded|Failed
    jobs: dict[str, str] = {}
    # Every Job of Caspian's on the spoke, in any state (namespace/name), where its
    # source lists them all (kube observer; Argo CD observer, all its Application
    # lists but those Missing); None where it does not.
    listed: frozenset[str] | None = None
    # The hub's Argo CD holds Caspian's Applications, and none for this spoke
    # (Argo CD observer): nothing there syncs its directory, so the Jobs it
    # lists, if any, are ones applied before (reconciler/arrivals.py).
    no_application: bool = False
    # When those that finished ended, where the spoke says (kube observer).
    ended: dict[str, datetime] = {}
    # When those that started (resumed) began, as their status says: a Job's
    # startTime is set again when it is resumed (kube observer).
    started: dict[str, datetime] = {}
    # Each usable node: what it can give one pod (its allocatable), its labels;
    # empty where no node was seen (declared capacity).
    nodes: tuple[Node, ...] = ()
    # The nodes Caspian's Jobs there have pods on, by namespace/name (kube observer).
    placed_on: dict[str, tuple[str, ...]] = {}
    # Caspian's Jobs there that have run no pod, with none on a node, while the
    # scheduler finds no node for one: since when it has not (kube observer).
    unscheduled: dict[str, datetime] = {}
    # Caspian's Jobs there, not suspended, with no pod on a node while the
    # scheduler finds none for one, whether they ran a pod before or not:
    # since when. A running job's nodes went, and no room is left for its pods
    # (kube observer).
    nodeless: dict[str, datetime] = {}
    # Caspian's Jobs there that started (resumed there) and have created no pod
    # since, nor run one: admission refuses their pods (kube observer).
    podless: dict[str, datetime] = {}
    # Caspian's Jobs there that have run no pod and whose pods on a node cannot
    # start a container (an image it cannot pull, a Secret that is not there):
    # since when the first is on its node (kube observer).
    not_starting: dict[str, datetime] = {}
    # Caspian's Jobs there whose pods are made and none has begun, whatever the
    # reason (an image still pulling, say), since when: on a node (kube
    # observer), or since the Job was resumed (Argo CD's "no pod ready"). Only a
    # job whose AppWrapper sets a warmup grace period is requeued for it.
    unready: dict[str, datetime] = {}
    # Caspian's Jobs there that Argo CD's last sync failed to apply (the spoke's
    # API refused the Job: an admission webhook, a quota on Jobs), and that are
    # out of sync still: since that sync (Argo CD observer).
    unapplied: dict[str, datetime] = {}
    # Caspian's Jobs the main branch has held for this spoke (planned or
    # dispatched) that the spoke does not list: Argo CD has not applied them
    # there. Since when the branch has held each (reconciler/arrivals.py).
    unarrived: dict[str, datetime] = {}
    # Every Job of Caspian's there that is suspended (its spec.suspend true, by
    # the spoke's API; Suspended, by Argo CD's health check), where the source
    # says; empty where it does not.
    suspended: frozenset[str] = frozenset()
    # When each of those was suspended, where the spoke says (kube observer:
    # its Suspended condition).
    suspended_at: dict[str, datetime] = {}
    # Caspian's dispatched Jobs (resumed on the main branch) that the spoke
    # holds suspended still: Argo CD has not applied the resume there. Since
    # when the branch has held each as it is (reconciler/arrivals.py).
    unresumed: dict[str, datetime] = {}
    # Caspian's Jobs the branch holds there that are not there or not resumed
    # while its sync windows keep Argo CD from syncing it: since when the
    # branch has held each (reconciler/arrivals.py). They wait for the windows
    # to end, unless that would make them miss their deadline.
    held_back: dict[str, datetime] = {}
    # The sync windows of its Application's AppProject (Argo CD observer):
    # Argo CD applies no Job there while they bar syncing.
    sync_windows: tuple[SyncWindow, ...] = ()
    # What the spoke says of those Jobs, by namespace/name: the scheduler's
    # message on a pod it finds no node for, the Job's last FailedCreate event
    # (which holds the admission's refusal), why a container cannot start, or
    # why Argo CD could not apply the Job.
    # Where it says nothing, none.
    said: dict[str, str] = {}
    # The exit codes other than 0 of the containers of Caspian's failed pods
    # there, by their Job's namespace/name (kube observer, where some job may
    # run again).
    exit_codes: dict[str, tuple[int, ...]] = {}
    # The names of the objects there that jobs need (jobspec.needs), by kind and
    # namespace ("ConfigMap batch"); a kind and namespace not listed is not known.
    objects: dict[str, frozenset[str]] = {}
    # Per namespace, the most its ResourceQuotas let all pods there request at
    # once (each figure infinite where none limits it); a namespace not listed
    # has none, or none known.
    quotas: dict[str, Resources] = {}
    # Per namespace, what its ResourceQuotas make every container set, because
    # they count it (admission.QUOTA_NEEDS: requests.cpu, limits.memory, ...).
    quota_needs: dict[str, frozenset[str]] = {}
    # Per namespace, the most pods its ResourceQuotas (their `pods`) let it hold
    # at once; a namespace not listed has no such limit, or none known.
    quota_pods: dict[str, float] = {}
    # Per namespace, its ResourceQuotas with scopes, which count only the pods
    # they match (decide matches them to each job): not in the two above.
    scoped_quotas: dict[str, tuple[ScopedQuota, ...]] = {}
    # Per namespace, the items of its LimitRanges in the API's order; a
    # namespace not listed has none, or none known.
    limit_ranges: dict[str, tuple[LimitRangeItem, ...]] = {}
    # Per namespace there, the Pod Security Standard it enforces (baseline or
    # restricted, by its pod-security.kubernetes.io/enforce label); a namespace
    # not listed enforces none known.
    pod_security: dict[str, str] = {}
    # What Caspian may not list there ("LimitRanges in batch"), so jobs are not
    # checked against it: the observer's role lacks the right (for Secrets,
    # which deploy/spoke-rbac.yaml does not grant, by choice).
    unread: tuple[str, ...] = ()
    # Its Kubernetes (major, minor), as its API says or its file declares;
    # None where neither does, and jobs are not checked against it.
    kubernetes_version: tuple[int, int] | None = None

    @property
    def listed_by_itself(self) -> bool:
        """Whether the spoke's own API listed Caspian's Jobs there (the kube
        observer, whose sources read "kube:<context>"): that list holds though
        Caspian sends the spoke no new work (cut off as one nothing syncs, or
        one the hub's Argo CD cannot sync)."""
        return self.listed is not None and self.source.startswith("kube:")

    def down(self, reason: str, *, since: datetime | None = None) -> SpokeState:
        """The spoke taking no new work, for `reason` (since `since`, where
        known): what it reports of the Jobs already there still holds."""
        return self.model_copy(
            update={
                "up": False,
                "cpu": 0.0,
                "memory_bytes": 0.0,
                "gpu": 0.0,
                "reason": reason,
                "down_since": since,
            }
        )


# What the observer may list only where a spoke's admin chose to grant it, and
# the file that grants it: the right to list Secrets is the right to read them,
# so deploy/spoke-rbac.yaml does not.
GRANTED_APART = {"Secrets": "deploy/spoke-rbac-secrets.yaml"}


def granting(what: str) -> str:
    """The file that lets the observer list `what` ("Secrets") on a spoke."""
    return GRANTED_APART.get(what, "deploy/spoke-rbac.yaml")


def plural(kind: str) -> str:
    """A kind as its list is named: "ConfigMaps", "PriorityClasses"."""
    return kind + ("es" if kind.endswith("s") else "s")


def unlisted(what: str, namespace: str = "") -> str:
    """How a list Caspian may not read is named in `SpokeState.unread`:
    "Secrets in batch", "PriorityClasses"."""
    return f"{what} in {namespace}" if namespace else what


def spoke_state(entry: Entry | None, spokes: Mapping[str, SpokeState]) -> SpokeState | None:
    """What the spoke of `entry` reports, where it has a spoke that reported."""
    return spokes.get(entry.spoke) if entry is not None and entry.spoke is not None else None


class Retry(BaseModel):
    """A job whose Job failed on its spoke, run again as a new Job placed anew
    (its AppWrapper's retryLimit, or the policy's)."""

    model_config = ConfigDict(frozen=True)

    spoke: str
    job_name: str  # the Job that failed
    run: int  # which run again this is, from 1
    limit: int
    said: str | None = None  # what the spoke said of the failure
    exit_codes: tuple[int, ...] = ()  # of its failed pods' containers, 0 left out
    pause: timedelta | None = None  # its AppWrapper's retryPausePeriodDuration


class Requeue(BaseModel):
    """A dispatched job taken off a spoke where it could not run."""

    model_config = ConfigDict(frozen=True)

    spoke: str
    reason: str


class Window(BaseModel):
    """The planning horizon: `slots` slots from `start`; forecasts must cover
    `covered_slots` so that a job started in the last slot is priced to its end."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    slot_seconds: int
    slots: int
    covered_slots: int

    def time_of(self, slot: int) -> datetime:
        return self.start + timedelta(seconds=slot * self.slot_seconds)

    def slot_of(self, moment: datetime) -> int:
        return math.floor((moment - self.start).total_seconds() / self.slot_seconds)

    def slots_in(self, span: timedelta) -> int:
        return max(1, math.ceil(span.total_seconds() / self.slot_seconds))


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    now: datetime
    window: Window
    ledger: Ledger
    jobs: dict[str, JobRequest]
    held: tuple[str, ...]  # ids kept as committed because their file is broken
    # Pull-request mode: ids whose new place is proposed for review; their record
    # and Job stay as committed meanwhile (reconciler/proposals.py).
    proposed: tuple[str, ...] = ()
    instance: Instance  # what the optimizer was asked (for `caspian explain`)
    plan: Plan
    # The digest of the problem `plan` answers, as the next reconcile meets it
    # where nothing changes (optimizer/keeping.py). The ledger holds it only
    # where a record changed; the mirror remembers it between reconciles.
    answers: str
    problems: tuple[Problem, ...]
    spokes: tuple[str, ...]
    # Spokes whose file does not load: their rendered/ directory stays as it was,
    # less the Jobs planned there that had not started (placed again elsewhere).
    broken_spokes: dict[str, str] = {}  # each with its file
    carbon_sources: dict[str, str]
    retention: timedelta = timedelta(hours=24)
    unschedulable: tuple[str, ...] = ()  # spokes that take no new work by their file
    closed: dict[str, str] = {}  # every spoke that takes no new work: why (down, unschedulable)
    # Per job, the spokes it may use where no node it may run on has room for its pod.
    no_node_fits: dict[str, dict[str, str]] = {}
    # Per job, the spokes it may use that lack an object its pods need, or whose
    # quota for its namespace is smaller than it.
    missing: dict[str, dict[str, str]] = {}
    # Per job, the spokes it may use where objects its pods need were not
    # checked, as Caspian may not list their kind there: what, and why.
    unchecked: dict[str, dict[str, str]] = {}
    # The dispatched jobs planned again because their pods found no node on their
    # spoke, were refused or could not start there.
    requeued: dict[str, Requeue] = {}
    # The dispatched jobs whose Job their spoke's sync windows keep Argo CD from
    # applying, or resuming, now (SpokeState.held_back): they wait for the window.
    held_back: tuple[str, ...] = ()
    # Per job, the spokes kept off it because it could not run there, with why.
    kept_off: dict[str, dict[str, str]] = {}
    # The jobs whose Job failed and that run again, as a new Job placed anew.
    retried: dict[str, Retry] = {}
    # The jobs whose Job failed with runs again left, that do not run again for
    # the exit code of a pod of it (their AppWrapper's terminalExitCodes or
    # retryableExitCodes): why.
    not_retried: dict[str, str] = {}
    # The jobs whose Job left its spoke while they ran, or was suspended
    # there, taken for failed (and run again, where runs are left): why.
    left: dict[str, str] = {}
    # The jobs requeued more than the policy's requeueLimit: planned nowhere.
    given_up: tuple[str, ...] = ()
    # Per dispatched job its spoke reports not running (no node, no pod, not
    # starting): what it says, and when the job is requeued; per running job
    # whose pods lost their node, when it is taken for failed.
    stuck: dict[str, str] = {}
    # The planned jobs that wait, as planned, for their spoke to answer again:
    # when the policy's spokeDownGrace began to count (since it was first seen
    # down, or since its maintenance ended), which is not up yet.
    waiting: dict[str, datetime] = {}
    # The jobs planned after others that have started (caspian.dev/after): how.
    runs_after: dict[str, str] = {}
    # The jobs not planned because one they run after has not started.
    held_after: tuple[str, ...] = ()
    spoke_down_grace: timedelta | None = timedelta(minutes=5)  # the policy's
    # Each spoke's maintenance windows in the horizon: nothing new runs there then.
    maintenance: dict[str, tuple[Span, ...]] = {}
    # Each spoke's times in the horizon its AppProject's sync windows keep
    # Argo CD from syncing it: nothing is planned to start there then.
    sync_barred: dict[str, tuple[Span, ...]] = {}
    history_url: str | None = None  # the policy's historyUrl, {path} still in it
    weights: PolicyWeights = PolicyWeights()  # the policy's

    def lateness_weight(self, job: JobRequest) -> float:
        """How much a slot of the job's lateness weighs against another's."""
        return self.weights.of(job.priority_class)

    def retired(self, entry: Entry) -> bool:
        """A finished job past retention: its Job has left rendered/, and its
        record stays in the ledger only."""
        leaves = self.leaves_rendered(entry)
        return leaves is not None and leaves <= self.now

    def leaves_rendered(self, entry: Entry) -> datetime | None:
        """When a finished job's Job leaves rendered/ (Argo CD prunes it then),
        counted from when it ended (finishedAt); None for one not finished."""
        since = entry.finished_at or entry.planned_end
        if entry.phase not in FINISHED or since is None:
            return None
        return since + self.kept_for(entry)[0]

    def kept_for(self, entry: Entry) -> tuple[timedelta, str | None]:
        """How long a finished job's Job stays in rendered/, and its AppWrapper's
        annotation that says so (None: the policy's retention)."""
        job = self.jobs.get(entry.id)
        if entry.phase == Phase.SUCCEEDED:
            own, name = (job.success_ttl if job else None), "successTTLDuration"
        else:
            own, name = (job.failed_ttl if job else None), "deletionOnFailureGracePeriodDuration"
        return (own, name) if own is not None else (self.retention, None)
