"""The fleet repo as typed values: policy, spokes and the jobs people asked for.

`load_fleet` is pure: it takes the repo's files as {path: bytes} (read from one
commit by the git adapter) and returns a `Fleet`. A broken AppWrapper or spoke
file becomes a `Problem` for that file alone (a spoke's, that spoke broken:
`Fleet.broken_spokes`); a broken caspian.yaml, or no spoke that loads, raises
`FleetConfigError`, because nothing can be planned without them.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from carbon import CarbonSourceConfig
from optimizer.model import SolverSettings, Weights
from reconciler import (
    cron,
    jobspec,
    kubeversions,
    pods,
    podsecurity,
    quantities,
    refusals,
    selectors,
    yamlio,
)
from reconciler.admission import PodResources

API_VERSION = "caspian.dev/v1alpha1"
APPWRAPPER_API = "workload.codeflare.dev/v1beta2"
# A job's declared draw above this is taken for a unit slip: ten megawatts.
MOST_WATTS = 10_000_000.0
ANNOTATION = "caspian.dev/"
# The AppWrapper controller's own annotations, which Caspian reads as it does.
APPWRAPPER = "workload.codeflare.dev.appwrapper/"
POLICY_FILE = "caspian.yaml"
SPOKES_DIR = "spokes/"
JOBS_DIR = "jobs/"

Duration = Annotated[timedelta, BeforeValidator(lambda v: quantities.duration(v))]
# A wait, which may be none.
Wait = Annotated[timedelta, BeforeValidator(lambda v: quantities.duration(v, zero=True))]
Quantity = Annotated[float, BeforeValidator(lambda v: quantities.quantity(v))]


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


class Problem(BaseModel):
    """One thing wrong with one file, said so that the user can fix it."""

    model_config = ConfigDict(frozen=True)

    file: str
    field: str
    reason: str

    def line(self) -> str:
        return f"{self.file}:{self.field}: {self.reason}"


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


class JobDefaults(Spec):
    duration: Duration = timedelta(hours=1)
    complete_within: Duration = timedelta(hours=24)
    power_watts: float | None = Field(default=None, gt=0, le=MOST_WATTS)
    requests: ContainerRequests = ContainerRequests()


class PolicyWeights(Spec):
    lateness_grams_per_slot: float = Field(default=100_000.0, ge=0)
    move_grams: float = Field(default=5.0, ge=0)
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
    gpu: Quantity = Field(default=0.0, ge=0, alias="nvidia.com/gpu")


class Quota(Spec):
    """The most Caspian's jobs may request on a spoke at once, whatever is free
    there (as a Kueue ClusterQueue's nominal quota): room kept for the
    cluster's other work. A resource left out has no such limit."""

    cpu: Quantity | None = Field(default=None, ge=0)
    memory: Quantity | None = Field(default=None, ge=0)
    gpu: Quantity | None = Field(default=None, ge=0, alias="nvidia.com/gpu")

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
    reason: str = Field(default="", max_length=200)

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

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Whether this window, once, overlaps [start, end)."""
        if self.start is None or self.end is None:
            return False
        return self.start < end and start < self.end

    def within(self, start: datetime, end: datetime) -> tuple[Maintenance, ...]:
        """Each time this window is on that overlaps [start, end), as a window
        of its own, once."""
        if self.schedule is None or self.duration is None:
            return (self,) if self.overlaps(start, end) else ()
        schedule, zone = cron.parse(self.schedule), cron.zone(self.time_zone)
        # Times that overlap or touch make one window: "* * * * *" for 1m is
        # one window, not a line a minute.
        spans: list[list[datetime]] = []
        for moment in schedule.starts(start - self.duration, end, zone=zone):
            if moment + self.duration <= start:
                continue
            if spans and moment <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], moment + self.duration)
            else:
                spans.append([moment, moment + self.duration])
        return tuple(Maintenance(start=a, end=b, reason=self.reason) for a, b in spans)


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


class JobRequest(BaseModel):
    """One AppWrapper, read and checked: what to run and what the user asked of it."""

    model_config = ConfigDict(frozen=True)

    id: str  # namespace/name
    name: str
    namespace: str
    source: str
    job_template: dict[str, Any]  # the wrapped batch/v1 Job, as written
    template_hash: str
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


# --- loading ----------------------------------------------------------------------

SchemaCheck = Callable[[Mapping[str, Any]], list[tuple[str, str]]]


def load_fleet(
    files: Mapping[str, bytes],
    *,
    appwrapper_schema: SchemaCheck,
    links: Collection[str] = frozenset(),
) -> Fleet:
    """Read policy, spokes and AppWrappers from a snapshot of the repo. `links` says
    which of `files` are symbolic links (their content is the path they point to)."""
    policy = _load_policy(files, links=links)
    spokes, problems = _load_spokes(files, links=links)
    broken = broken_spokes(problems, loaded=spokes)
    # A broken spoke's labels are not known: a job may name it or select it, and
    # waits for it, rather than being refused for another file's fault.
    known: dict[str, Mapping[str, str] | None] = {
        **{spoke.name: spoke.metadata.labels for spoke in spokes},
        **dict.fromkeys(broken),
    }
    labels = {name: known[name] for name in sorted(known)}
    jobs: list[JobRequest] = []
    seen: dict[str, str] = {}
    for path in sorted(p for p in files if _is_job_file(p)):
        if path in links:
            problems.append(_link_problem(path, files[path]))
            continue
        for job_or_problems in _load_job_file(
            path, files[path], policy=policy, labels=labels, check=appwrapper_schema
        ):
            if isinstance(job_or_problems, JobRequest):
                job = job_or_problems
                if job.id in seen:
                    problems.append(
                        Problem(
                            file=path,
                            field="metadata.name",
                            reason=f"{job.id} is already defined in {seen[job.id]}; "
                            "give one of them another name",
                        )
                    )
                    continue
                seen[job.id] = path
                jobs.append(job)
            else:
                problems.extend(job_or_problems)
    cycles = _in_cycles(jobs)
    for job in jobs:
        if job.id in cycles:
            others = " after ".join((*cycles[job.id], job.id))
            problems.append(
                Problem(
                    file=job.source,
                    field=f"metadata.annotations.{AFTER}",
                    reason=f"the jobs wait for each other in a circle ({others}), so none "
                    "could ever start: take one of them out of the next one's caspian.dev/after",
                )
            )
    jobs = [job for job in jobs if job.id not in cycles]
    return Fleet(
        policy=policy,
        spokes=spokes,
        jobs=tuple(jobs),
        problems=tuple(problems),
        broken_spokes=broken,
    )


def broken_spokes(problems: Iterable[Problem], *, loaded: Iterable[Spoke]) -> dict[str, str]:
    """The spokes that `problems` leave without a file that loads, each with its
    file, by the name of that file (spokes/paris.yml is paris's too)."""
    found = {spoke.name for spoke in loaded}
    broken: dict[str, str] = {}
    for file in sorted({p.file for p in problems if p.file.startswith(SPOKES_DIR)}):
        name = file.rsplit("/", 1)[-1].removesuffix(".yaml").removesuffix(".yml")
        if name not in found:
            broken.setdefault(name, file)
    return dict(sorted(broken.items()))


def _is_job_file(path: str) -> bool:
    return path.startswith(JOBS_DIR) and path.endswith((".yaml", ".yml"))


def _link_problem(path: str, target: bytes) -> Problem:
    # Git holds a link, not the file it points to, and Argo CD and kustomize
    # would each resolve it their own way: Caspian reads only what is committed.
    shown = target.decode("utf-8", "replace")
    shown = shown if len(shown) <= 200 else shown[:197] + "..."
    return Problem(
        file=path,
        field="-",
        reason=f"a symbolic link (to {shown!r}): Caspian reads files, not links; "
        "commit the file itself at this path",
    )


def _load_policy(files: Mapping[str, bytes], *, links: Collection[str]) -> Policy:
    if POLICY_FILE not in files:
        raise FleetConfigError(
            [Problem(file=POLICY_FILE, field="-", reason="missing: run `caspian init` or add it")]
        )
    if POLICY_FILE in links:
        raise FleetConfigError([_link_problem(POLICY_FILE, files[POLICY_FILE])])
    doc, error = _one_document(files[POLICY_FILE])
    if error:
        raise FleetConfigError([Problem(file=POLICY_FILE, field="-", reason=error)])
    try:
        return Policy.model_validate(doc)
    except ValidationError as invalid:
        raise FleetConfigError(_problems(POLICY_FILE, invalid)) from None


def _load_spokes(
    files: Mapping[str, bytes], *, links: Collection[str]
) -> tuple[tuple[Spoke, ...], list[Problem]]:
    """The spokes that load, and the problems of the files that do not. With no
    spoke at all nothing can be planned: that raises."""
    spokes: list[Spoke] = []
    problems: list[Problem] = []
    for path in sorted(p for p in files if p.startswith(SPOKES_DIR)):
        if path.endswith(".yml"):
            # Left out, its spoke would silently take no work.
            fix = f"spoke files end in .yaml: rename it {path.removesuffix('.yml')}.yaml"
            problems.append(Problem(file=path, field="-", reason=fix))
            continue
        if not path.endswith(".yaml"):
            continue
        if path in links:
            problems.append(_link_problem(path, files[path]))
            continue
        doc, error = _one_document(files[path])
        if error:
            problems.append(Problem(file=path, field="-", reason=error))
            continue
        try:
            spoke = Spoke.model_validate(doc)
        except ValidationError as invalid:
            problems.extend(_problems(path, invalid))
            continue
        stem = path.rsplit("/", 1)[-1].removesuffix(".yaml")
        if spoke.name != stem:
            problems.append(
                Problem(
                    file=path,
                    field="metadata.name",
                    reason=f"{spoke.name!r} must match the file name; rename one to the other",
                )
            )
            continue
        spokes.append(spoke)
    if not spokes:
        raise FleetConfigError(
            problems
            or [Problem(file=SPOKES_DIR, field="-", reason="no spokes: add spokes/<name>.yaml")]
        )
    return tuple(spokes), problems


def _one_document(raw: bytes) -> tuple[Any, str | None]:
    try:
        docs = yamlio.load_all(raw)
    except yamlio.YAMLError as error:
        return None, f"not valid YAML: {_yaml_error(error)}"
    if len(docs) != 1:
        return None, f"expected one YAML document, found {len(docs)}"
    return docs[0], None


def _yaml_error(error: yamlio.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)


def _problems(path: str, invalid: ValidationError, *, prefix: str = "") -> list[Problem]:
    result = []
    for error in invalid.errors():
        field = prefix + _dotted(error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field: check its spelling"
        elif error["type"] == "missing":
            message = "required field is missing"
        elif error["type"] == "literal_error":
            message = f"{message}, found {error['input']!r}"
        elif error["type"] == "value_error":
            # pydantic's prefix, not Caspian's reason.
            message = message.removeprefix("Value error, ")
        result.append(Problem(file=path, field=field or "-", reason=message))
    return result


def _dotted(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _load_job_file(
    path: str,
    raw: bytes,
    *,
    policy: Policy,
    labels: Mapping[str, Mapping[str, str] | None],
    check: SchemaCheck,
) -> list[JobRequest | list[Problem]]:
    try:
        docs = yamlio.load_all(raw)
    except yamlio.YAMLError as error:
        return [[Problem(file=path, field="-", reason=f"not valid YAML: {_yaml_error(error)}")]]
    label = (lambda i: f"{path}#{i}") if len(docs) > 1 else (lambda i: path)
    return [
        _job_from_doc(doc, source=label(index), policy=policy, labels=labels, check=check)
        for index, doc in enumerate(docs)
    ]


def _job_from_doc(
    doc: Any,
    *,
    source: str,
    policy: Policy,
    labels: Mapping[str, Mapping[str, str] | None],
    check: SchemaCheck,
) -> JobRequest | list[Problem]:
    def problem(field: str, reason: str) -> list[Problem]:
        return [Problem(file=source, field=field, reason=reason)]

    if not isinstance(doc, dict):
        return problem("-", "expected a mapping (an AppWrapper object)")
    if doc.get("apiVersion") != APPWRAPPER_API or doc.get("kind") != "AppWrapper":
        found = f"{doc.get('apiVersion')}/{doc.get('kind')}"
        return problem("kind", f"expected {APPWRAPPER_API} AppWrapper, found {found}")
    schema_errors = check(doc)
    if schema_errors:
        return [Problem(file=source, field=f, reason=r) for f, r in schema_errors]
    metadata = doc.get("metadata") or {}
    name = metadata.get("name")
    if not refusals.is_dns_label(name):
        return problem("metadata.name", "required: a DNS label (lower-case, digits, '-')")
    namespace = metadata.get("namespace") or policy.spec.namespace
    if not refusals.is_dns_label(namespace):
        return problem(
            "metadata.namespace",
            f"{namespace!r} is not a valid namespace: a DNS label (lower-case, digits, '-', "
            "at most 63)",
        )
    allowed = policy.spec.namespaces
    if allowed is not None and namespace not in allowed:
        return problem(
            "metadata.namespace",
            f"{namespace!r} is not among caspian.yaml's spec.namespaces ({', '.join(allowed)}), "
            "the namespaces Argo CD's project admits: one Job outside them fails its spoke's "
            "whole sync; use one of them, or add it there and to the AppProject's destinations",
        )
    components = doc["spec"]["components"]
    if len(components) != 1:
        return problem(
            "spec.components",
            f"Caspian places AppWrappers that wrap exactly one batch/v1 Job; found "
            f"{len(components)} components: split them into one AppWrapper each",
        )
    template = components[0]["template"]
    field = "spec.components[0].template"
    if template.get("apiVersion") != "batch/v1" or template.get("kind") != "Job":
        kind = f"{template.get('apiVersion')}/{template.get('kind')}"
        return problem(field, f"expected a batch/v1 Job, found {kind}")
    inner = (template.get("metadata") or {}).get("namespace")
    if inner and inner != namespace:
        # The AppWrapper controller's webhook refuses this too.
        return problem(
            f"{field}.metadata.namespace",
            f"{inner!r} is not the AppWrapper's namespace {namespace!r}: an AppWrapper "
            "cannot create objects in another namespace; remove it, or move the AppWrapper",
        )
    job_spec = template.get("spec")
    if not isinstance(job_spec, dict):
        return problem(f"{field}.spec", "required: the Job's spec")
    # From here on each part is read whatever became of the others, so that one
    # `caspian validate` names every field to fix, not the first only.
    found = [(f"{field}.{where}", why) for where, why in refusals.fought_by_argocd(template)]
    if components[0].get("podSetInfos"):
        # What the AppWrapper controller would add to the pods; Caspian renders
        # the Job alone, so it would be lost without a word.
        found.append(
            (
                "spec.components[0].podSetInfos",
                "Kueue's admission of it on one cluster, as `kubectl get -o yaml` copies "
                "it: remove it; Caspian places the job across spokes, and a nodeSelector "
                "or tolerations its pods need go in the Job's pod template",
            )
        )
    try:
        default = policy.spec.defaults.requests
        pod, pods_at_once, defaulted = jobspec.requests(
            job_spec, default={"cpu": default.cpu, "memory": default.memory}
        )
        placement = jobspec.placement(job_spec)
        pod_resources = jobspec.pod_resources(job_spec)
    except jobspec.FieldError as error:
        found.append((f"{field}.spec.{error.field}", error.reason))
    found += [(f"{field}.{where}", why) for where, why in refusals.refused_by_api_server(template)]
    annotations = metadata.get("annotations") or {}
    annotated, unread = _annotations(
        annotations, policy=policy, labels=labels, namespace=namespace, own=f"{namespace}/{name}"
    )
    found += [(f"metadata.annotations.{error.field}", error.reason) for error in unread]
    if found:
        first: dict[str, str] = {}  # one reason a field, the first found
        for where, why in found:
            first.setdefault(where, why)
        return [Problem(file=source, field=where, reason=why) for where, why in first.items()]
    # The job runs at most as long as its Job may: Kubernetes ends it then
    # (counted from when it is resumed), so neither the policy's default nor a
    # longer caspian.dev/duration holds room past that.
    limit = job_spec.get("activeDeadlineSeconds")
    if isinstance(limit, int) and 0 < limit < annotated["duration"].total_seconds():
        if ANNOTATION + "duration" in annotations:
            annotated["duration_cut"] = annotated["duration"]
        annotated["duration"] = timedelta(seconds=limit)
    return JobRequest(
        id=f"{namespace}/{name}",
        name=name,
        namespace=namespace,
        source=source,
        job_template=template,
        template_hash=template_hash(template),
        cpu=pod.cpu * pods_at_once,
        memory_bytes=pod.memory_bytes * pods_at_once,
        gpu=pod.gpu * pods_at_once,
        pod=pod,
        pods_at_once=pods_at_once,
        placement=placement,
        suspended=doc["spec"].get("suspend") is True,
        needs=jobspec.needs(job_spec, namespace=namespace),
        defaulted=defaulted,
        pod_resources=pod_resources,
        pod_security_broken=podsecurity.broken_rules(job_spec.get("template") or {}),
        kubernetes_features=kubeversions.features(job_spec),
        priority_class=_priority_class(metadata, template),
        **annotated,
    )


# Kueue's label for a WorkloadPriorityClass, which it weighs a workload by
# before the PriorityClass of its pods.
KUEUE_PRIORITY = "kueue.x-k8s.io/priority-class"


def _priority_class(metadata: Mapping[str, Any], job: Mapping[str, Any]) -> str | None:
    """What a job's priority is named by, as Kueue reads it: the
    WorkloadPriorityClass its AppWrapper's (or its Job's) label names, else the
    PriorityClass its pods name."""
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    for name in (
        (metadata.get("labels") or {}).get(KUEUE_PRIORITY),
        ((job.get("metadata") or {}).get("labels") or {}).get(KUEUE_PRIORITY),
        pod.get("priorityClassName"),
    ):
        if isinstance(name, str) and name:
            return name
    return None


AFTER = ANNOTATION + "after"


def _after(annotations: Mapping[str, Any], *, namespace: str, own: str) -> tuple[str, ...]:
    """The jobs a job runs after, by namespace/name: its caspian.dev/after, a
    list of AppWrapper names apart by commas, each `name` (in its own
    namespace) or `namespace/name`."""
    raw = annotations.get(AFTER)
    if raw is None:
        return ()
    found = []
    for item in (part.strip() for part in str(raw).split(",")):
        space, _, name = item.rpartition("/") if "/" in item else (namespace, "", item)
        if not (refusals.is_dns_label(space) and refusals.is_dns_label(name)):
            raise jobspec.FieldError(
                AFTER,
                f"{item!r} is not an AppWrapper's name: write names (or namespace/name) apart "
                'by commas, e.g. "preprocess, batch/fetch-data"',
            )
        found.append(f"{space}/{name}")
    if own in found:
        raise jobspec.FieldError(
            AFTER, f"it names the job itself ({own}): it cannot run after itself"
        )
    return tuple(dict.fromkeys(found))


def _in_cycles(jobs: Iterable[JobRequest]) -> dict[str, tuple[str, ...]]:
    """The jobs whose caspian.dev/after leads back to them, each with the jobs
    of its cycle (itself first): none of them could ever start."""
    after = {job.id: job.after for job in jobs}
    found = {}
    for start in after:
        # Walk back from `start` through what it waits for, the path kept.
        stack: list[tuple[str, tuple[str, ...]]] = [(start, (start,))]
        seen = set()
        while stack and start not in found:
            current, path = stack.pop()
            for nxt in after.get(current, ()):
                if nxt == start:
                    found[start] = path
                    break
                if nxt in after and nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, (*path, nxt)))
    return found


# ASCII digits only: str.isdigit() takes "²", which int() refuses.
_WHOLE = re.compile(r"[0-9]+")

# The AppWrapper controller's annotation for how many times a failed workload is
# run again; Caspian reads it as that controller does.
RETRY_LIMIT = APPWRAPPER + "retryLimit"


def _retry_limit(annotations: Mapping[str, Any]) -> int | None:
    raw = annotations.get(RETRY_LIMIT)
    if raw is None:
        return None
    # No spaces: the AppWrapper controller takes " 2" for no number and falls
    # back to its own limit, so a limit Caspian read there would not be its.
    text = str(raw)
    if not _WHOLE.fullmatch(text):
        raise jobspec.FieldError(
            RETRY_LIMIT,
            f"{raw!r} is not a whole number: how many times a failed Job of it runs again, "
            'written without spaces, e.g. "2" (without it, the policy\'s retryLimit holds)',
        )
    return int(text)


# The AppWrapper controller's annotations for the exit codes that end a workload
# for good (terminal) or, where given, the only ones it runs again after
# (retryable): comma-separated whole numbers.
TERMINAL_EXIT_CODES = APPWRAPPER + "terminalExitCodes"
RETRYABLE_EXIT_CODES = APPWRAPPER + "retryableExitCodes"


def _exit_codes(annotations: Mapping[str, Any], key: str) -> frozenset[int] | None:
    raw = annotations.get(key)
    if raw is None:
        return None
    # No spaces: the AppWrapper controller skips " 3" as no number, so a code
    # Caspian read there would mean nothing to it.
    codes = str(raw).split(",")
    if not all(_WHOLE.fullmatch(code) for code in codes):
        raise jobspec.FieldError(
            key,
            f"{raw!r} is not a list of exit codes: write whole numbers apart by commas, "
            'without spaces, e.g. "1,137"',
        )
    return frozenset(int(code) for code in codes)


# The AppWrapper controller's annotations for how long it waits, or keeps, a
# workload's resources, by the JobRequest field that holds each.
GRACE_PERIODS = {
    "admission_grace": APPWRAPPER + "admissionGracePeriodDuration",
    "warmup_grace": APPWRAPPER + "warmupGracePeriodDuration",
}
FAILURE_GRACE = APPWRAPPER + "failureGracePeriodDuration"
RETRY_PAUSE = APPWRAPPER + "retryPausePeriodDuration"
SUCCESS_TTL = APPWRAPPER + "successTTLDuration"
FAILED_TTL = APPWRAPPER + "deletionOnFailureGracePeriodDuration"
DURATIONS = {
    **GRACE_PERIODS,
    "failure_grace": FAILURE_GRACE,
    "retry_pause": RETRY_PAUSE,
    "success_ttl": SUCCESS_TTL,
    "failed_ttl": FAILED_TTL,
}
# Every annotation of the AppWrapper controller's. Caspian reads all but the
# last: Argo CD's prune deletes a Job here, with no deletion to force.
APPWRAPPER_ANNOTATIONS = frozenset(
    {
        *DURATIONS.values(),
        RETRY_LIMIT,
        TERMINAL_EXIT_CODES,
        RETRYABLE_EXIT_CODES,
        APPWRAPPER + "forcefulDeletionGracePeriodDuration",
    }
)
_GRACE_MEANING = (
    "how long its pods may wait on their spoke before it is requeued (without it, the "
    "policy's requeueUnscheduled holds)"
)
_KEPT_MEANING = "its Job stays in rendered/ (without it, the policy's retention holds)"
DURATION_MEANINGS = {
    GRACE_PERIODS["admission_grace"]: _GRACE_MEANING,
    GRACE_PERIODS["warmup_grace"]: _GRACE_MEANING,
    FAILURE_GRACE: "how much longer its pods may wait on their spoke, past that grace, before "
    "it is requeued (without it, no longer)",
    RETRY_PAUSE: "how long after a Job of it failed its run again may start (without it, at once)",
    SUCCESS_TTL: f"how long after it succeeded {_KEPT_MEANING}",
    FAILED_TTL: f"how long after it failed for good {_KEPT_MEANING}",
}


def _go_duration(annotations: Mapping[str, Any], key: str, *, meaning: str) -> timedelta | None:
    """One of the AppWrapper controller's duration annotations, as Go reads it."""
    raw = annotations.get(key)
    if raw is None:
        return None
    try:
        return quantities.go_duration(str(raw))
    except ValueError as error:
        raise jobspec.FieldError(key, f"{error}, not negative: {meaning}") from None


def template_hash(template: Mapping[str, Any]) -> str:
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def _annotations(
    annotations: Mapping[str, Any],
    *,
    policy: Policy,
    labels: Mapping[str, Mapping[str, str] | None],
    namespace: str,
    own: str,
) -> tuple[dict[str, Any], list[jobspec.FieldError]]:
    """The JobRequest fields the AppWrapper's annotations give, Caspian's and
    the AppWrapper controller's, and the problem of each that does not read:
    every one of them."""
    unread: list[jobspec.FieldError] = []

    def read(reader: Callable[[], Any]) -> Any:
        try:
            return reader()
        except jobspec.FieldError as error:
            unread.append(error)
            return None

    for key in annotations:
        if key.startswith(APPWRAPPER) and key not in APPWRAPPER_ANNOTATIONS:
            known = {name.removeprefix(APPWRAPPER) for name in APPWRAPPER_ANNOTATIONS}
            unread.append(_unknown(key, prefix=APPWRAPPER, known=known, whose="AppWrapper"))
    found = {
        **_hints(annotations, policy=policy, labels=labels, unread=unread),
        "retry_limit": read(lambda: _retry_limit(annotations)),
        "terminal_exit_codes": read(lambda: _exit_codes(annotations, TERMINAL_EXIT_CODES))
        or frozenset(),
        "retryable_exit_codes": read(lambda: _exit_codes(annotations, RETRYABLE_EXIT_CODES)),
        "after": read(lambda: _after(annotations, namespace=namespace, own=own)) or (),
    }
    for field, key in DURATIONS.items():
        meaning = DURATION_MEANINGS[key]
        found[field] = read(
            lambda key=key, meaning=meaning: _go_duration(annotations, key, meaning=meaning)
        )
    return found, unread


def _unknown(key: str, *, prefix: str, known: Iterable[str], whose: str) -> jobspec.FieldError:
    """An annotation under a prefix Caspian reads that names nothing there:
    nothing reads it, so what it was meant to say is not done."""
    names = sorted(known)
    near = difflib.get_close_matches(key.removeprefix(prefix), names, n=1, cutoff=0.7)
    hint = f"did you mean {prefix}{near[0]}? " if near else ""
    return jobspec.FieldError(
        key, f"unknown {whose} annotation, which nothing reads; {hint}known: {', '.join(names)}"
    )


def _hints(
    annotations: Mapping[str, str],
    *,
    policy: Policy,
    labels: Mapping[str, Mapping[str, str] | None],
    unread: list[jobspec.FieldError],
) -> dict[str, Any]:
    """The job's caspian.dev/ annotations, read; the problem of each that does
    not read goes to `unread`. `labels` holds every spoke's labels, None for a
    spoke whose file does not load."""
    known = {
        "deadline",
        "complete-within",
        "duration",
        "not-before",
        "power-watts",
        "spokes",
        "spoke-selector",
        "after",
    }
    for key in annotations:
        if key.startswith(ANNOTATION) and key.removeprefix(ANNOTATION) not in known:
            unread.append(_unknown(key, prefix=ANNOTATION, known=known, whose="Caspian"))

    def parse(key: str, convert: Callable[[str], Any]) -> Any:
        raw = annotations.get(ANNOTATION + key)
        if raw is None:
            return None
        try:
            return convert(str(raw))
        except ValueError as error:
            unread.append(jobspec.FieldError(ANNOTATION + key, str(error)))
            return None

    def watts(text: str) -> float:
        value = float(text)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{text!r} must be a positive number of watts")
        if value > MOST_WATTS:
            raise ValueError(f"{text!r} is more than {MOST_WATTS:,.0f} W: is it in watts?")
        return value

    names = list(labels)

    def spoke_list(text: str) -> tuple[str, ...]:
        chosen = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
        unknown = [s for s in chosen if s not in names]
        if unknown or not chosen:
            raise ValueError(
                f"unknown spoke(s) {', '.join(unknown) or '(none)'}; known: {', '.join(names)}"
            )
        return chosen

    listed = parse("spokes", spoke_list) or tuple(names)
    selector = parse("spoke-selector", selectors.parse)
    allowed = listed
    if selector is not None:
        allowed = tuple(
            name
            for name in listed
            if (found := labels[name]) is None or selectors.matches(selector, found)
        )
        if not allowed:
            among = "spokes caspian.dev/spokes lists" if len(listed) < len(names) else "spokes"
            shown = "; ".join(
                f"{name}: {', '.join(f'{k}={v}' for k, v in (labels[name] or {}).items()) or '-'}"
                for name in listed
            )
            unread.append(
                jobspec.FieldError(
                    ANNOTATION + "spoke-selector",
                    f"selects none of the {among} (their labels: {shown}); "
                    "loosen it, or label a spoke in its file's metadata.labels",
                )
            )
    return {
        "deadline": parse("deadline", quantities.timestamp),
        "complete_within": parse("complete-within", quantities.duration),
        "not_before": parse("not-before", quantities.timestamp),
        "duration": parse("duration", quantities.duration) or policy.spec.defaults.duration,
        "power_watts": parse("power-watts", watts) or policy.spec.defaults.power_watts,
        "allowed_spokes": allowed,
    }
