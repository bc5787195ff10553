"""Prometheus metrics: the only module that imports prometheus_client. Served on
/metrics by `caspian watch`; in a one-shot reconcile they are only counted."""

from __future__ import annotations

import contextlib

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from carbon import IntensitySeries

# The client adds a `<name>_created` gauge to every counter and histogram in the
# text format, twice the series to read for a time no alert uses.
disable_created_metrics()

CARBON_STALE = Gauge(
    "caspian_carbon_data_stale",
    "1 when the zone's intensity came from a cache or a fallback instead of its provider",
    ["zone"],
)
CARBON_FALLBACKS = Counter(
    "caspian_carbon_fallbacks_total",
    "Reconciles that planned a zone on cached or fallback carbon data",
    ["zone", "origin"],
)
GRID_INTENSITY = Gauge(
    "caspian_grid_carbon_intensity",
    "Grid carbon intensity of the current slot, gCO2eq/kWh",
    ["zone"],
)


def keep_only(gauge: Gauge, label: str, values: set[str]) -> None:
    """Drop the gauge's series for every other value of `label`: a spoke or zone
    gone from the fleet must not read as down (or stale) until the process ends."""
    present = {
        sample.labels[label]
        for family in gauge.collect()
        for sample in family.samples
        if label in sample.labels
    }
    for value in present - values:
        gauge.remove(value)


def record_carbon(zone: str, series: IntensitySeries) -> None:
    CARBON_STALE.labels(zone=zone).set(1 if series.provenance.stale else 0)
    GRID_INTENSITY.labels(zone=zone).set(series.values[0])
    if series.provenance.stale:
        CARBON_FALLBACKS.labels(zone=zone, origin=series.provenance.origin).inc()


SPOKE_UP = Gauge(
    "caspian_spoke_up", "1 when the spoke's API server answered the last observation", ["spoke"]
)
SPOKE_IN_MAINTENANCE = Gauge(
    "caspian_spoke_in_maintenance",
    "1 while a maintenance window of the spoke's file is on (to silence its down alerts)",
    ["spoke"],
)
SPOKE_SYNC_BARRED = Gauge(
    "caspian_spoke_sync_barred",
    "1 while the sync windows of the spoke's AppProject keep Argo CD from syncing it: no Job "
    "starts there then (read with --argocd-context)",
    ["spoke"],
)
SPOKE_UNSYNCED = Gauge(
    "caspian_spoke_unsynced",
    "1 while the spoke is cut off as one no Argo CD Application syncs (none of its Jobs was "
    "there), or on trial after such a cut: taking work again until a Job shows there",
    ["spoke"],
)
SPOKE_FILE_LOADS = Gauge(
    "caspian_spoke_file_loads",
    "1 when the spoke's file loaded at the last reconcile, 0 when it did not (no new work there)",
    ["spoke"],
)
REQUEUES = Counter(
    "caspian_requeues_total",
    "Dispatched jobs planned again because their pods found no node there, none was created, "
    "they could not start, or Argo CD could not apply their Job",
    ["spoke"],
)
RETRIES = Counter(
    "caspian_retries_total",
    "Jobs whose Job failed on the spoke and that run again, as a new Job placed anew "
    "(their AppWrapper's retryLimit, or the policy's)",
    ["spoke"],
)
STARTED_OUTSIDE = Counter(
    "caspian_started_outside_total",
    "Jobs whose spoke ran their Job before Caspian dispatched it there (resumed there by "
    "hand, with Argo CD's self-heal off, or left there by a requeue and not pruned): held "
    "where they run from then on",
    ["spoke"],
)
ARGOCD_SYNCABLE = Gauge(
    "caspian_argocd_spoke_syncable",
    "1 when nothing stops the Argo CD that holds the spoke's Application (the hub's, or "
    "its own) from syncing it, 0 on a ComparisonError or InvalidSpecError or with its "
    "automated sync off: the spoke then takes no new work",
    ["spoke"],
)
ARGOCD_UP = Gauge(
    "caspian_argocd_up",
    "1 when the last observation read Argo CD's Applications with Job health to trust "
    "(--observer argocd): read, the job-health check in argocd-cm, health kept in them",
    registry=None,  # served once Argo CD is read (record_argocd)
)


def record_argocd(*, trusted: bool) -> None:
    """caspian_argocd_up, served from the first observation that asks Argo CD:
    a gauge reads 0 until set, which would say Argo CD is down to a Caspian
    that never asks it (and fire an alert on it)."""
    with contextlib.suppress(ValueError):  # served already: its name is taken
        REGISTRY.register(ARGOCD_UP)
    ARGOCD_UP.set(1 if trusted else 0)


RECONCILES = Counter("caspian_reconcile_total", "Reconciles by result", ["result"])
LAST_SUCCESS = Gauge(
    "caspian_reconcile_last_success_timestamp_seconds",
    "When a reconcile last read the fleet repo and pushed its plan, or found it current "
    "(Unix time; 0 before the first): alert on its age",
)
RECONCILE_SECONDS = Histogram(
    "caspian_reconcile_duration_seconds",
    "Wall time of a reconcile, fetch to push",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
SOLVE_SECONDS = Histogram(
    "caspian_solve_duration_seconds",
    "Wall time of decide (the optimizer included)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
PLANS = Counter(
    "caspian_plans_total",
    "Plans by how decide had them: solved, or kept (the problem the last plan answered)",
    ["how"],
)
JOBS = Gauge("caspian_jobs", "Jobs in the ledger by phase", ["phase"])
GIVEN_UP_JOBS = Gauge(
    "caspian_jobs_given_up",
    "Jobs requeued more than the policy's requeueLimit: planned nowhere until their Job changes",
)
NOT_ON_SPOKE = Gauge(
    "caspian_jobs_not_on_spoke",
    "Jobs the main branch has held for the spoke, planned or dispatched, for over 10 minutes "
    "that are not there: Argo CD has not applied them (--observer kube, or argocd)",
    ["spoke"],
)
GONE_FROM_SPOKE = Gauge(
    "caspian_jobs_gone_from_spoke",
    "Jobs the ledger has running whose Job their spoke, which lists every Job of Caspian's, "
    "does not list: deleted there, with Argo CD's self-heal off? (--observer kube, or argocd)",
    ["spoke"],
)
NOT_RESUMED = Gauge(
    "caspian_jobs_not_resumed",
    "Dispatched jobs whose Job the spoke holds suspended, though the main branch has held it "
    "resumed for over 10 minutes: Argo CD has not applied the resume (--observer kube, or argocd)",
    ["spoke"],
)
WAITING_JOBS = Gauge(
    "caspian_jobs_waiting_for_spoke",
    "Planned jobs that wait, undispatched, for their spoke to answer again (spokeDownGrace)",
)
LATE_JOBS = Gauge(
    "caspian_jobs_late", "Placed jobs not yet finished that are planned to end after their deadline"
)
AWAITING_REVIEW = Gauge(
    "caspian_jobs_awaiting_review",
    "Pull-request mode: jobs the open proposal places anew, which wait for it to be merged",
)
DECLINED_JOBS = Gauge(
    "caspian_jobs_declined",
    "Jobs whose new place a reviewer declined: held where main has them until their "
    "AppWrapper changes",
)
PLANNED_GRAMS = Gauge("caspian_planned_emissions_grams", "Estimated gCO2 of placed jobs")
BASELINE_GRAMS = Gauge("caspian_baseline_emissions_grams", "gCO2 of the same jobs under qos")
# The gauges above cover jobs in flight, which a finished job leaves: these keep
# what finished jobs emitted and would have emitted under qos, for "carbon saved
# this month" (the increase of the second less that of the first).
FINISHED_GRAMS = Counter(
    "caspian_finished_emissions_grams_total",
    "Estimated gCO2 of jobs as their finish is committed, by spoke and phase",
    ["spoke", "phase"],
)
FINISHED_BASELINE_GRAMS = Counter(
    "caspian_finished_baseline_emissions_grams_total",
    "gCO2 the same jobs would have emitted under qos (earliest start, carbon-blind)",
    ["spoke", "phase"],
)
EMITTED_GRAMS = Counter(
    "caspian_emitted_grams_total",
    "gCO2 the runs of jobs emitted, counted as the commit that records their end is "
    "pushed: their energy for as long as their Job ran, at the intensity measured then",
    ["spoke"],
)
FINISHED_MEASURED_GRAMS = Counter(
    "caspian_finished_measured_grams_total",
    "gCO2 the jobs that finished after one run emitted, as measured, where what qos would "
    "have emitted is measured too; counted as the commit that records their finish is pushed",
    ["spoke"],
)
FINISHED_MEASURED_BASELINE_GRAMS = Counter(
    "caspian_finished_measured_baseline_grams_total",
    "gCO2 the same runs would have emitted where and when qos (earliest start, carbon-blind) "
    "would have started them, as measured",
    ["spoke"],
)
PUSH_RETRIES = Counter("caspian_push_retries_total", "Pushes repeated because the remote moved")
COMMITS = Counter("caspian_commits_total", "Placement commits pushed", ["branch"])


def record_ledger(
    phases: dict[str, int],
    *,
    late: int,
    given_up: int,
    waiting: int,
    declined: int,
    planned: float,
    baseline: float,
) -> None:
    """`phases` names every phase, 0 included: a gauge keeps its last value until set."""
    for phase, count in phases.items():
        JOBS.labels(phase=phase).set(count)
    LATE_JOBS.set(late)
    GIVEN_UP_JOBS.set(given_up)
    WAITING_JOBS.set(waiting)
    DECLINED_JOBS.set(declined)
    PLANNED_GRAMS.set(planned)
    BASELINE_GRAMS.set(baseline)


def record_finished(*, spoke: str, phase: str, estimated: float, baseline: float) -> None:
    """A job whose finish a pushed commit records, counted once: the next
    commits hold it finished already."""
    FINISHED_GRAMS.labels(spoke=spoke, phase=phase).inc(estimated)
    FINISHED_BASELINE_GRAMS.labels(spoke=spoke, phase=phase).inc(baseline)


SPOKE_CAPACITY = Gauge(
    "caspian_spoke_capacity",
    "Room left for Caspian's Jobs now, after work it does not manage, by spoke and "
    "pool (the spoke's name where it is one pool)",
    ["spoke", "pool", "resource", "unit"],
)
UNITS = {"cpu": "core", "memory_bytes": "byte", "gpu": "gpu"}


def record_not_on_spoke(counts: dict[str, int], *, unresumed: dict[str, int]) -> None:
    """Per spoke whose Jobs are listed whole, how many are not there, and how
    many are not resumed there; the series of any other spoke go."""
    for gauge, each in ((NOT_ON_SPOKE, counts), (NOT_RESUMED, unresumed)):
        for spoke, count in each.items():
            gauge.labels(spoke=spoke).set(count)
        keep_only(gauge, "spoke", set(each))


def record_gone(counts: dict[str, int], *, spokes: set[str]) -> None:
    """How many running jobs' Jobs are missing from each of `spokes` (those
    of the fleet), 0 where none is; the series of any other spoke go."""
    for spoke in spokes:
        GONE_FROM_SPOKE.labels(spoke=spoke).set(counts.get(spoke, 0))
    keep_only(GONE_FROM_SPOKE, "spoke", spokes)


def record_capacity(rooms: list[tuple[str, str, dict[str, float]]]) -> None:
    """(spoke, pool, {resource: amount}) for every pool planned for; the series of
    a pool that went (its nodes changed) go with it."""
    SPOKE_CAPACITY.clear()
    for spoke, pool, amounts in rooms:
        for resource, amount in amounts.items():
            SPOKE_CAPACITY.labels(
                spoke=spoke, pool=pool, resource=resource, unit=UNITS[resource]
            ).set(amount)


def exposition() -> tuple[bytes, str]:
    """The /metrics body and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
