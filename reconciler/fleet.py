"""The fleet repo as typed values: policy, spokes and the jobs people asked for.

`reconciler/loading.py` reads them from the repo's files, and
`reconciler/appwrappers.py` reads each AppWrapper into a `JobRequest`. A broken
AppWrapper or spoke file becomes a `Problem` for that file alone (a spoke's,
that spoke broken: `Fleet.broken_spokes`); a broken caspian.yaml, or no spoke
that loads, raises `FleetConfigError`, because nothing can be planned without
them.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from carbon import CarbonSourceConfig
from optimizer.model import SolverSettings, Weights
from reconciler import (
    cron,
    kubeversions,
    pods,
    quantities,
    refusals,
    yamlio,
)
from reconciler.admission import PodResources

API_VERSION = "caspian.dev/v1alpha1"
# A job's declared draw above this is taken for a unit slip: ten megawatts.
MOST_WATTS = 10_000_000.0
POLICY_FILE = "caspian.yaml"
SPOKES_DIR = "spokes/"
# What Argo CD reads as manifests in a directory, and Caspian in jobs/.
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
JOBS_DIR = "jobs/"

Duration = Annotated[timedelta, BeforeValidator(lambda v: quantities.duration(v))]
# A wait, which may be none.
Wait = Annotated[timedelta, BeforeValidator(lambda v: quantities.duration(v, zero=True))]
Quantity = Annotated[float, BeforeValidator(lambda v: quantities.quantity(v))]


def _whole(value: float) -> float:
    # A node reports GPUs as a count, and a pod asks for a count: room for 1.5
    # would let a plan count half a GPU that no Job can take.
    if value % 1:
        raise ValueError(f"{value:g}: nvidia.com/gpu comes in whole units")
    return value


Gpus = Annotated[float, BeforeValidator(lambda v: quantities.quantity(v)), AfterValidator(_whole)]


def _kube_version(value: Any) -> kubeversions.Version:
    if not isinstance(value, str):
        # YAML reads 1.30 as the number 1.3.
        raise ValueError(f"{value!r} is not a Kubernetes version: write it quoted, e.g. '1.30'")
    return kubeversions.parse(value)


KubeVersion = Annotated[tuple[int, int], BeforeValidator(_kube_version)]


def _dns_label(value: str) -> str:
    if not refusals.is_dns_label(value):
        raise ValueError(
            f"{value!r} is not a DNS label (lower-case letters, digits and '-', at most 63)"
        )
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]


# The most a problem's field or reason says before its middle is left out.
MOST_SAID = 1_000


# Characters that end a line or steer a terminal: git takes them in a file's
# name, and YAML in a key. Printed as they are, a name could add lines of its
# own to a commit message (the audit trail) or recolour a console.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(path: str) -> str:
    """`path` as one line of UTF-8 can hold it: a name git holds in bytes that
    are no UTF-8 (saved in Latin-1, say) comes with them escaped
    (`caf\\xe9.yaml`), for the ledger, a commit and the console, which are
    UTF-8; a control character comes escaped too (`a\\nb.yaml`)."""
    path = yamlio.SURROGATE.sub(_escaped_surrogate, path)
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode(), path)


def _escaped_surrogate(found: re.Match[str]) -> str:
    """A byte Python's file-name decoding could not read (U+DC80-U+DCFF) as that
    byte; any other lone surrogate (from a YAML or JSON escape) as itself."""
    code = ord(found.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


class Problem(BaseModel):
    """One thing wrong with one file, said so that the user can fix it."""

    model_config = ConfigDict(frozen=True)

    file: str
    field: str
    reason: str
    # Where a file stops parsing, as its reader said: `caspian validate` names
    # the line without reading the file again.
    stops_at: int | None = None

    @field_validator("file")
    @classmethod
    def _printable_file(cls, text: str) -> str:
        return printable(text)

    @field_validator("field", "reason")
    @classmethod
    def _cut(cls, text: str) -> str:
        # A reason may quote the value it refuses, and a value may be a list of
        # thousands: the ledger, the commit and the console get its two ends.
        text = printable(text)
        if len(text) <= MOST_SAID:
            return text
        head, tail = text[: MOST_SAID * 6 // 10], text[-MOST_SAID * 3 // 10 :]
        left_out = len(text) - len(head) - len(tail)
        return f"{head} ... ({left_out:,} characters left out) ... {tail}"

    def line(self) -> str:
        return f"{self.file}: {self.said()}"

    def said(self) -> str:
        """Its field and reason, for a line that names its file first."""
        return self.reason if self.field == "-" else f"{self.field}: {self.reason}"


class FleetConfigError(Exception):
    """caspian.yaml or a spoke file is unusable: the reconcile stops, commits nothing."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(p.line() for p in self.problems))


class Spec(BaseModel):
    """camelCase in YAML (as in Kubernetes), snake_case in Python; unknown keys are errors."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


# --- caspian.yaml ---------------------------------------------------------------


class ContainerRequests(Spec):
    """What a container that neither requests nor limits cpu or memory counts
    for, as a LimitRange's defaultRequest would fill it in. The Job is rendered
    as written: a spoke's own LimitRange, or none, decides what it requests
    there."""

    cpu: Quantity = Field(default=1.0, ge=0, le=1_000)
    memory: Quantity = Field(default=float(2**30), ge=0, le=2.0**50)


# Past this a job's lateness would dwarf every gram of carbon and strain the
# solver's numbers: a thousand already puts it before any other job.
MOST_PRIORITY = 1000.0
# A thousand tonnes a slot; times MOST_PRIORITY, still within what the solver
# tells apart from a gram of carbon. Of one late job it did at 1e16 and no
# longer at 1e17: the plan put it where it emitted six times as much (and at
# 1e308 found no plan).
MOST_WEIGHT_GRAMS = 1e9


class JobDefaults(Spec):
    duration: Duration = timedelta(hours=1)
    complete_within: Duration = timedelta(hours=24)
    power_watts: float | None = Field(default=None, gt=0, le=MOST_WATTS)
    requests: ContainerRequests = ContainerRequests()


class PolicyWeights(Spec):
    lateness_grams_per_slot: float = Field(default=100_000.0, ge=0, le=MOST_WEIGHT_GRAMS)
    move_grams: float = Field(default=5.0, ge=0, le=MOST_WEIGHT_GRAMS)
    # How many times a slot of lateness counts for a job of this priority class
    # (JobRequest.priority_class), against 1 for the rest: where not every job
    # can be on time, the heavier ones are.
    priority_classes: dict[str, Annotated[float, Field(ge=0, le=MOST_PRIORITY)]] = {}

    def for_optimizer(self) -> Weights:
        return Weights(lateness_g_per_slot=self.lateness_grams_per_slot, move_g=self.move_grams)

    def of(self, priority_class: str | None) -> float:
        """How much a slot of a job's lateness weighs, by its priority class."""
        return self.priority_classes.get(priority_class or "", 1.0)


class SolverSpec(Spec):
    name: str = "highs"
    time_limit: Duration = timedelta(seconds=20)
    gap_rel: float = Field(default=1e-4, ge=0)

    def for_optimizer(self) -> SolverSettings:
        return SolverSettings(
            name=self.name, time_limit_s=self.time_limit.total_seconds(), gap_rel=self.gap_rel
        )


# 30 days of 15-minute slots.
MAX_SLOTS = 2880


class PolicySpec(Spec):
    slot: Duration = timedelta(minutes=15)
    horizon: Duration = timedelta(hours=24)
    namespace: DnsLabel = "default"
    # The namespaces Argo CD's project admits (argocd/appproject.yaml), or None
    # for any. One Job outside them fails its spoke's whole sync: no Job there
    # would start or be pruned until it left.
    namespaces: tuple[DnsLabel, ...] | None = None
    defaults: JobDefaults = JobDefaults()
    weights: PolicyWeights = PolicyWeights()
    solver: SolverSpec = SolverSpec()
    retention: Duration = timedelta(hours=24)  # finished Jobs stay in rendered/ this long
    # A record whose AppWrapper has left jobs/ stays in the ledger this long:
    # without an end the ledger, read and rewritten every reconcile, grows with
    # every job ever placed. git history keeps what is forgotten.
    ledger_retention: Duration = timedelta(days=7)
    # A dispatched job none of whose pods the spoke's scheduler has placed for
    # this long, whose Job has made none (refused), or whose pods cannot start,
    # and that has run none, is planned again elsewhere (as Kueue's
    # waitForPodsReady requeues a workload); null leaves it waiting there.
    requeue_unscheduled: Duration | None = timedelta(minutes=15)
    # How many times a job may be requeued before it runs: past that, it is
    # given up on, planned nowhere until its wrapped Job changes (as an
    # AppWrapper's retryLimit and Kueue's backoffLimitCount end the retries);
    # null requeues it for ever.
    requeue_limit: int | None = Field(default=3, ge=0)
    # How many times a job whose Job fails is run again, as a new Job placed
    # anew, before it is recorded Failed: the AppWrapper controller's
    # RetryLimit, which an AppWrapper's workload.codeflare.dev.appwrapper/
    # retryLimit annotation overrides. 0 here (the controller's default is 3):
    # a run that fails again burns its energy again.
    retry_limit: int = Field(default=0, ge=0)
    # How long the jobs planned on a spoke that has gone down (its API does not
    # answer, or Argo CD cannot sync its Application) wait there, planned as
    # they were, before they are planned elsewhere: a spoke back within it
    # takes them as planned, and the queue is not reshuffled for a blip (as
    # Kubernetes waits 5 minutes before it evicts the pods of an unreachable
    # node). 0 moves them at once; null keeps them there until it answers.
    spoke_down_grace: Wait | None = timedelta(minutes=5)
    # The forge's page of one file's commits, {path} standing for the file: each
    # rendered Job then links there from Argo CD's UI. A commit cannot name
    # itself, but the newest commits of a rendered Job's file are the ones
    # that placed and dispatched it.
    history_url: str | None = None

    @field_validator("history_url")
    @classmethod
    def _one_path_placeholder(cls, value: str | None) -> str | None:
        if value is None:
            return value
        example = "e.g. https://git.example.com/OWNER/REPO/commits/main/{path}"
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"historyUrl must be an http(s) URL ({example})")
        rest = value.replace("{path}", "", 1)
        if "{path}" not in value or "{" in rest or "}" in rest:
            raise ValueError(
                f"historyUrl must hold {{path}} once, where the file's path goes ({example})"
            )
        return value

    @field_validator("namespaces")
    @classmethod
    def _some_namespace(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value == ():
            raise ValueError(
                "an empty list admits no job: list the namespaces Argo CD's AppProject "
                "admits, or leave it out to take any"
            )
        return value

    @model_validator(mode="after")
    def _default_namespace_allowed(self) -> PolicySpec:
        if self.namespaces is not None and self.namespace not in self.namespaces:
            raise ValueError(
                f"namespace {self.namespace!r} is not among namespaces "
                f"({', '.join(self.namespaces)}): add it there, or name one of those"
            )
        return self

    @field_validator("slot")
    @classmethod
    def _whole_minutes(cls, value: timedelta) -> timedelta:
        seconds = value.total_seconds()
        if seconds < 60 or seconds % 60 or (3600 % seconds and seconds % 3600):
            raise ValueError("slot must be whole minutes that divide an hour, or whole hours")
        return value

    @field_validator("horizon")
    @classmethod
    def _not_too_many_slots(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        slot = info.data.get("slot")
        if slot is None:  # the slot was wrong itself, and says so
            return value
        slots = math.ceil(value.total_seconds() / slot.total_seconds())
        if slots > MAX_SLOTS:
            # The model grows with the slots: 10 jobs over 1000 days of 15-minute
            # slots took 17 s and 0.9 GB to plan.
            raise ValueError(
                f"horizon / slot gives {slots} slots, more than {MAX_SLOTS}: shorten the "
                "horizon or lengthen the slot (forecasts reach a few days ahead at most)"
            )
        if value < slot:
            # Shorter than a slot, every job would start now: nothing could wait
            # for cleaner power, and a job's place would be its spoke alone.
            raise ValueError(
                f"{quantities.format_duration(value)} is shorter than one slot "
                f"({quantities.format_duration(slot)}): "
                "make the horizon at least the slot, and hours long to let jobs wait for "
                "cleaner hours"
            )
        return value

    @property
    def slot_seconds(self) -> int:
        return int(self.slot.total_seconds())

    @property
    def horizon_slots(self) -> int:
        return max(1, math.ceil(self.horizon.total_seconds() / self.slot_seconds))


class Policy(Spec):
    api_version: Literal["caspian.dev/v1alpha1"]
    kind: Literal["Policy"]
    spec: PolicySpec = PolicySpec()


# --- spokes/<spoke>.yaml --------------------------------------------------------


class Capacity(Spec):
    cpu: Quantity = Field(ge=0)
    memory: Quantity = Field(ge=0)
    gpu: Gpus = Field(default=0.0, ge=0, alias="nvidia.com/gpu")


class Quota(Spec):
    """The most Caspian's jobs may request on a spoke at once, whatever is free
    there (as a Kueue ClusterQueue's nominal quota): room kept for the
    cluster's other work. A resource left out has no such limit."""

    cpu: Quantity | None = Field(default=None, ge=0)
    memory: Quantity | None = Field(default=None, ge=0)
    gpu: Gpus | None = Field(default=None, ge=0, alias="nvidia.com/gpu")

    def of(self, resource: str) -> float | None:
        """The limit on an optimizer resource (cpu, memory_bytes, gpu)."""
        return {"cpu": self.cpu, "memory_bytes": self.memory, "gpu": self.gpu}[resource]


class PowerModel(Spec):
    """Average power draw of a job's share of a node, before the facility's PUE."""

    # The upper bounds are far above any real part; they catch a unit slip (kW for
    # W) before it makes every other job's carbon a rounding error.
    watts_per_core: float = Field(default=10.0, ge=0, le=1_000)
    watts_per_gpu: float = Field(default=300.0, ge=0, le=10_000)
    watts_per_gib: float = Field(default=0.4, ge=0, le=100)
    pue: float = Field(default=1.2, ge=1.0, le=5.0)


Timestamp = Annotated[datetime, BeforeValidator(quantities.timestamp)]


class Span(BaseModel):
    """A maintenance window, once: from `start` to `end`."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime
    reason: str = ""

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Whether it overlaps [start, end)."""
        return self.start < end and start < self.end


class Maintenance(Spec):
    """A time the spoke takes no work (a cluster upgrade, say): nothing is
    planned to run there then. Once, from `start` to `end`; or again and
    again, `duration` from each time its cron `schedule` names in `timeZone`
    (as an Argo CD sync window, or a managed cluster's maintenance window).
    What was dispatched before runs on; draining it is the cluster's
    business."""

    start: Timestamp | None = None
    end: Timestamp | None = None
    schedule: str | None = None
    duration: Duration | None = None
    time_zone: str = "UTC"
    # One line of a commit message: YAML's `reason: |` would add lines of its own.
    reason: Annotated[str, AfterValidator(lambda text: printable(" ".join(text.split())))] = Field(
        default="", max_length=200
    )

    @model_validator(mode="after")
    def _once_or_again(self) -> Maintenance:
        once = (self.start, self.end) != (None, None)
        again = (self.schedule, self.duration) != (None, None)
        if once == again:
            raise ValueError(
                "give start and end (once), or schedule and duration (again and again)"
            )
        if once:
            if self.start is None or self.end is None:
                raise ValueError("give both start and end")
            if self.end <= self.start:
                raise ValueError(
                    f"end {quantities.format_time(self.end)} is not after start "
                    f"{quantities.format_time(self.start)}: a window ends after it starts"
                )
            return self
        if self.schedule is None or self.duration is None:
            raise ValueError("give both schedule (a cron expression) and duration")
        cron.parse(self.schedule)
        cron.zone(self.time_zone)
        return self

    def once(self) -> Span | None:
        """The window as one span, where it is on once (None where it comes again)."""
        if self.start is None or self.end is None:
            return None
        return Span(start=self.start, end=self.end, reason=self.reason)

    def within(self, start: datetime, end: datetime) -> tuple[Span, ...]:
        """Each time this window is on that overlaps [start, end)."""
        once = self.once()
        if once is not None:
            return (once,) if once.overlaps(start, end) else ()
        assert self.schedule is not None and self.duration is not None  # as validated
        times = cron.windows(self.schedule, self.duration, start, end, time_zone=self.time_zone)
        return tuple(Span(start=a, end=b, reason=self.reason) for a, b in times)


class SpokeSpec(Spec):
    carbon: CarbonSourceConfig
    capacity: Capacity
    power: PowerModel = PowerModel()
    kube_context: str | None = None
    # Keys of NoSchedule/NoExecute taints that Caspian's Jobs tolerate there (as
    # GPU node pools are often tainted): nodes with only these count. The Jobs'
    # pod templates must carry the tolerations; nvidia.com/gpu always counts.
    tolerated_taints: tuple[str, ...] = ()
    # No new work, as `kubectl cordon` marks a node: what was dispatched there
    # runs to its end, planned work moves, and the spoke can then be removed
    # without Argo CD pruning a running Job.
    unschedulable: bool = False
    # Times it takes no work, announced ahead: nothing is planned to run there
    # then, and what would is planned before, after, or elsewhere.
    maintenance: tuple[Maintenance, ...] = ()
    # The most Caspian's jobs may hold there at once, observed room or not.
    quota: Quota | None = None
    # Its Kubernetes version ("1.29"), where the observer cannot ask its API:
    # jobs whose Job sets fields it does not serve are kept off it.
    kubernetes_version: KubeVersion | None = None


class SpokeMeta(Spec):
    name: DnsLabel
    labels: dict[str, str] = {}  # for jobs to select spokes by (caspian.dev/spoke-selector)

    @field_validator("labels")
    @classmethod
    def _kubernetes_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if why := refusals.bad_label(key, value):
                raise ValueError(why)
        return labels


class Spoke(Spec):
    api_version: Literal["caspian.dev/v1alpha1"]
    kind: Literal["Spoke"]
    metadata: SpokeMeta
    spec: SpokeSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    def it_watts(self, *, cpu: float, memory_bytes: float, gpu: float) -> float:
        power = self.spec.power
        return (
            cpu * power.watts_per_core
            + gpu * power.watts_per_gpu
            + memory_bytes / 2**30 * power.watts_per_gib
        )


# --- jobs/**.yaml ---------------------------------------------------------------


class Companion(BaseModel):
    """A ConfigMap or Service an AppWrapper wraps beside its Job
    (reconciler/companions.py): rendered with the Job wherever it is placed."""

    model_config = ConfigDict(frozen=True)

    field: str  # where it is in its AppWrapper: spec.components[1].template
    kind: str
    name: str
    template: dict[str, Any]  # as written


class JobRequest(BaseModel):
    """One AppWrapper, read and checked: what to run and what the user asked of it."""

    model_config = ConfigDict(frozen=True)

    id: str  # namespace/name
    name: str
    namespace: str
    source: str
    job_template: dict[str, Any]  # the wrapped batch/v1 Job, as written
    template_hash: str  # of the Job alone: its companions change in place
    companions: tuple[Companion, ...] = ()
    cpu: float  # of all the pods that run at once
    memory_bytes: float
    gpu: float
    pod: pods.Resources  # one pod, which must fit on one node
    pods_at_once: int = 1  # parallelism, at most completions
    placement: pods.Placement = pods.Placement()  # the nodes its pods may run on
    duration: timedelta
    # Its caspian.dev/duration, where its Job's activeDeadlineSeconds ends it
    # sooner: `duration` is then that.
    duration_cut: timedelta | None = None
    deadline: datetime | None = None
    complete_within: timedelta | None = None
    not_before: datetime | None = None
    power_watts: float | None = None
    allowed_spokes: tuple[str, ...]
    # The AppWrapper's own spec.suspend: the job is held, not planned, until it is
    # false again (one that has started is suspended where it runs).
    suspended: bool = False
    # What its pods need from their cluster: `Kind namespace/name` (jobspec.needs).
    needs: tuple[str, ...] = ()
    # Its containers that ask for no cpu or memory, counted at the policy's
    # defaults.requests: `containers[0] cpu`.
    defaulted: tuple[str, ...] = ()
    # What each container of its pod requests and limits: what a spoke's
    # LimitRanges admit or refuse.
    pod_resources: PodResources = PodResources()
    # The Pod Security Standards rules its pod template breaks, by level
    # (podsecurity.broken_rules): what a namespace enforcing one refuses.
    pod_security_broken: dict[str, tuple[str, ...]] = {}
    # Its AppWrapper's workload.codeflare.dev.appwrapper/retryLimit: how many
    # times a Job of it that fails is run again (None: the policy's retryLimit).
    retry_limit: int | None = None
    # Its AppWrapper's workload.codeflare.dev.appwrapper/terminalExitCodes and
    # retryableExitCodes: a failed Job whose pods exited with one of the first,
    # or (where the second is given) with one not in it, is not run again.
    terminal_exit_codes: frozenset[int] = frozenset()
    retryable_exit_codes: frozenset[int] | None = None
    # Its AppWrapper's workload.codeflare.dev.appwrapper/admissionGracePeriodDuration
    # and warmupGracePeriodDuration: how long, dispatched, its pods may go
    # unmade (admission) or unready (warmup) on its spoke before it is requeued
    # (None: the policy's requeueUnscheduled).
    admission_grace: timedelta | None = None
    warmup_grace: timedelta | None = None
    # Its AppWrapper's workload.codeflare.dev.appwrapper/failureGracePeriodDuration:
    # how much longer than that grace (or the policy's) its pods may wait before
    # it is requeued, as the AppWrapper controller waits it before a reset.
    failure_grace: timedelta | None = None
    # Its AppWrapper's workload.codeflare.dev.appwrapper/retryPausePeriodDuration:
    # how long after a Job of it failed its run again may start (None: at once).
    retry_pause: timedelta | None = None
    # Its AppWrapper's workload.codeflare.dev.appwrapper/successTTLDuration and
    # deletionOnFailureGracePeriodDuration: how long its Job stays in rendered/
    # once it succeeded, or failed for good (None: the policy's retention).
    success_ttl: timedelta | None = None
    failed_ttl: timedelta | None = None
    # The fields of its Job that need a newer Kubernetes than some have: it is
    # kept off spokes that do not serve them.
    kubernetes_features: tuple[kubeversions.Feature, ...] = ()
    # Its priority class, as Kueue names it (_priority_class): how much its
    # lateness weighs, by the policy's weights.priorityClasses.
    priority_class: str | None = None
    # The jobs it runs after (caspian.dev/after), by namespace/name: it is
    # planned once they have started, from their end, and dispatched once
    # they have succeeded.
    after: tuple[str, ...] = ()

    @property
    def ask(self) -> str:
        """A digest of all Caspian read of its AppWrapper (but where the file
        is): a pull request that declined a place for it holds it until this
        changes, whether its Job, an annotation, or a default of the policy."""
        # A job that wraps nothing beside its Job asks what it asked before
        # companions were read: an upgrade must not lift every decline.
        left_out = {"source"} | (set() if self.companions else {"companions"})
        read = self.model_dump_json(exclude=left_out)
        return hashlib.sha256(read.encode()).hexdigest()[:16]

    @property
    def job_name(self) -> str:
        """The rendered Job's name: a Job's template is immutable, so an edited
        template must become a Job with a new name."""
        return self.job_name_for(retry=0)

    def job_name_for(self, *, retry: int) -> str:
        """The name of the Job of its `retry`th run again after a Job of it
        failed: a failed Job stays failed, so each run is a Job of its own."""
        suffix = f"-{self.template_hash}" + (f"-r{retry}" if retry else "")
        return f"{self.name[: 63 - len(suffix)].rstrip('-')}{suffix}"

    @property
    def job_key(self) -> str:
        """namespace/name of the rendered Job, as a spoke's report keys it: one name
        may be in two namespaces (an AppWrapper copied to another team's)."""
        return f"{self.namespace}/{self.job_name}"


class Fleet(BaseModel):
    model_config = ConfigDict(frozen=True)

    policy: Policy
    spokes: tuple[Spoke, ...]
    jobs: tuple[JobRequest, ...]
    problems: tuple[Problem, ...]
    # Spokes whose file does not load, by the file's name, each with that file
    # (its lines are among `problems`). Nothing new is planned there, and what
    # was placed there stays as committed until the file is mended: a typo must
    # not prune running Jobs.
    broken_spokes: dict[str, str] = {}

    def spoke(self, name: str) -> Spoke:
        return next(spoke for spoke in self.spokes if spoke.name == name)

    def without_spokes(self, problems: Sequence[Problem]) -> Fleet:
        """This fleet less the spokes whose file `problems` are about, now broken:
        a file that loads can still fail later (its carbon source). Raises
        when no spoke is left."""
        files = {problem.file for problem in problems}
        spokes = tuple(s for s in self.spokes if f"{SPOKES_DIR}{s.name}.yaml" not in files)
        if not spokes:
            raise FleetConfigError(
                [*(p for p in self.problems if p.file.startswith(SPOKES_DIR)), *problems]
            )
        broken = {**self.broken_spokes, **broken_spokes(problems, loaded=spokes)}
        return self.model_copy(
            update={
                "spokes": spokes,
                "problems": (*self.problems, *problems),
                "broken_spokes": dict(sorted(broken.items())),
            }
        )


def split_suffix(path: str) -> tuple[str, str]:
    """`path` without its suffix, and the suffix (".yaml"; "" for none)."""
    stem, dot, suffix = path.rpartition(".")
    return (stem, dot + suffix) if dot and "/" not in suffix else (path, "")


def home_of(path: str, *, spoke: bool) -> str:
    """Where the file at `path` belongs, as the `git mv` of a problem line
    names it: in spokes/, as <name>.yaml (a spoke file's only suffix), or in
    jobs/."""
    name = path.rsplit("/", 1)[-1]
    return f"{SPOKES_DIR}{split_suffix(name)[0]}.yaml" if spoke else f"{JOBS_DIR}{name}"


# Names a user may give the directory of AppWrappers, besides near misses of
# jobs/ and spokes/ themselves.
ASTRAY_NAMES = frozenset({"appwrapper", "appwrappers"})


def astray_dir(name: str) -> bool:
    """Whether a directory at the fleet's top, named `name`, is likely meant to
    be jobs/ or spokes/ (job/, Jobs/, spoke/, appwrappers/)."""
    lower = name.lower()
    if name + "/" in (JOBS_DIR, SPOKES_DIR):
        return False
    near = difflib.get_close_matches(lower, ("jobs", "spokes"), n=1, cutoff=0.75)
    return bool(near) or lower in ASTRAY_NAMES


def astray(path: str) -> bool:
    """Whether the file at `path` could be an AppWrapper or a spoke put where
    Caspian reads none: a manifest at the fleet's top (caspian.yaml aside), or
    right inside an `astray_dir`. Such files are read only to say so, where they
    would otherwise be left out without a word."""
    if split_suffix(path)[1].lower() not in MANIFEST_SUFFIXES:
        return False
    top, _, rest = path.partition("/")
    if not rest:
        return path != POLICY_FILE
    return "/" not in rest and astray_dir(top)


def broken_spokes(problems: Iterable[Problem], *, loaded: Iterable[Spoke]) -> dict[str, str]:
    """The spokes that `problems` leave without a file that loads, each with its
    file, by the name of that file (spokes/paris.yml, or .json, is paris's too)."""
    found = {spoke.name for spoke in loaded}
    broken: dict[str, str] = {}
    for file in sorted({p.file for p in problems if p.file.startswith(SPOKES_DIR)}):
        base = file.rsplit("/", 1)[-1]
        stem, suffix = split_suffix(base)
        name = stem if suffix.lower() in MANIFEST_SUFFIXES else base
        if name not in found:
            broken.setdefault(name, file)
    return dict(sorted(broken.items()))


def effective_deadline(job: JobRequest, *, first_seen: datetime, fleet: Fleet) -> datetime:
    """The earlier of the absolute deadline and first-seen + complete-within; with
    neither, first-seen + the policy's default."""
    candidates = []
    if job.deadline is not None:
        candidates.append(job.deadline)
    if job.complete_within is not None:
        candidates.append(first_seen + job.complete_within)
    if not candidates:
        candidates.append(first_seen + fleet.policy.spec.defaults.complete_within)
    return min(candidates)
