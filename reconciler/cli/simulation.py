"""`caspian simulate`: replay the loop on the 2023 grid data and compare
placement policies."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from reconciler import crd, plotting, scenarios, simulating, templates
from reconciler.cli.common import days_text, writable_file
from reconciler.fleet import FleetConfigError
from reconciler.loading import load_fleet


@click.command()
@click.option(
    "--scenario",
    type=click.Choice(["caspian-4"]),
    default="caspian-4",
    show_default=True,
    help="Built-in fleet and workload (ignored with --fleet).",
)
@click.option(
    "--fleet",
    "fleet_path",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Replay your own fleet repo work tree: its policy, spokes and AppWrappers.",
)
@click.option(
    "--trace",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="CSV `arrival_hours,job` of submissions (default: the fleet's trace.csv, "
    "else every AppWrapper once at the start).",
)
@click.option(
    "--start",
    "start_days",
    multiple=True,
    help="First day of a replay, in 2023 (the embedded data); repeat for several "
    "weeks. Default 2023-03-01.",
)
@click.option("--days", type=click.IntRange(1, 60), default=7, show_default=True)
@click.option(
    "--policy",
    "chosen",
    multiple=True,
    type=click.Choice(simulating.POLICIES),
    help="Repeat to choose; all five by default.",
)
@click.option(
    "--forecast",
    default="seasonal-naive",
    show_default=True,
    help="perfect, seasonal-naive or noisy:PCT: what the planners see after the hour now "
    "running (which they see as measured).",
)
@click.option("--seed", "seeds", type=int, multiple=True, help="Repeat for several. Default 1.")
@click.option(
    "--time-limit",
    type=click.FloatRange(0.05),
    default=1.0,
    show_default=True,
    help="Optimizer budget per re-plan, seconds.",
)
@click.option(
    "--replan",
    type=click.IntRange(1, 24 * 60),
    default=60,
    show_default=True,
    help="Minutes between re-plans; the standing plan dispatches in between.",
)
@click.option(
    "--clairvoyant-limit",
    type=click.FloatRange(1),
    default=60.0,
    show_default=True,
    help="Seconds for the clairvoyant's one plan over the whole replay.",
)
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--plot",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write an SVG of the intensities and each spoke's timeline (first run).",
)
def simulate(
    scenario: str,
    fleet_path: Path | None,
    trace: Path | None,
    start_days: tuple[str, ...],
    days: int,
    chosen: tuple[str, ...],
    forecast: str,
    seeds: tuple[int, ...],
    time_limit: float,
    replan: int,
    clairvoyant_limit: float,
    as_json: bool,
    plot: Path | None,
) -> None:
    """Replay the loop on the 2023 grid data and compare placement policies on the
    same arrivals: carbon, deadlines met, waiting, decide time."""
    if problem := simulating.check_forecast(forecast):
        raise click.BadParameter(problem, param_hint="'--forecast'")
    if plot is not None:
        writable_file(plot, hint="'--plot'")  # before minutes of replay, not after
    names = chosen or simulating.POLICIES
    starts = [_day_of_2023(text) for text in (start_days or ("2023-03-01",))]
    runs: list[dict[str, Any]] = []
    for start in starts:
        for seed in seeds or (1,):
            setup = _simulation_setup(
                scenario,
                fleet_path,
                trace,
                start=start,
                days=days,
                seed=seed,
                limit=time_limit,
                tell=not runs,  # what is skipped, once
            )
            results = []
            for name in names:
                with click.progressbar(
                    length=(days * 86400 + int(simulating.TAIL.total_seconds()))
                    // setup.policy.spec.slot_seconds,
                    label=f"{start:%b %d} seed {seed} {name:12}",
                    file=sys.stderr,
                    hidden=as_json or not sys.stderr.isatty(),
                ) as bar:
                    results.append(
                        simulating.run(
                            setup,
                            policy=name,
                            start=start,
                            days=days,
                            forecast=forecast,
                            seed=seed,
                            replan=timedelta(minutes=replan),
                            clairvoyant_limit=clairvoyant_limit,
                            progress=bar.update,
                        )
                    )
            results = simulating.compare(results)
            if plot is not None and not runs:
                _plot(plot, setup, results, start=start, days=days)
            runs.append(
                {
                    "start": f"{start:%Y-%m-%d}",
                    "seed": seed,
                    "jobs": len(setup.arrivals),
                    "policies": [r.model_dump(exclude={"placements"}) for r in results],
                }
            )
    policies = simulating.mean_over_runs([run["policies"] for run in runs])
    report = {
        "scenario": setup.name,
        "days": days,
        "forecast": forecast,
        "replan_minutes": replan,
        "runs": runs,
        "policies": policies,
    }
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(
        f"{setup.name}, {days_text(days)} from {', '.join(f'{s:%Y-%m-%d}' for s in starts)}, "
        f"{forecast} forecasts, seeds {', '.join(map(str, seeds or (1,)))}"
        + (f" (mean of {len(runs)} runs)" if len(runs) > 1 else "")
    )
    for r in policies:
        click.echo(
            f"{r['policy']:12} {r['kg_co2']:9.1f} kg  saved {_pct(r['saved_vs_qos']):>7}  "
            f"of-limit {_pct(r['share_of_clairvoyant_savings']):>7}  "
            f"finished {r['finished']:g}/{r['jobs']:g}  met {r['deadlines_met']:6.1%}  "
            f"end/deadline {r['mean_completion_over_deadline']:.2f}  "
            f"p95 wait {r['p95_wait_hours']:4.1f} h  "
            f"decide {r['mean_decide_s']:.2f}/{r['max_decide_s']:.2f} s"
        )


def _day_of_2023(text: str) -> datetime:
    try:
        day = datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: give a date like 2023-03-01", param_hint="'--start'"
        ) from None
    if day.year != 2023:
        raise click.BadParameter(f"{text}: the embedded data is 2023", param_hint="'--start'")
    return day


def _simulation_setup(
    scenario: str,
    fleet_path: Path | None,
    trace: Path | None,
    *,
    start: datetime,
    days: int,
    seed: int,
    limit: float,
    tell: bool,
) -> scenarios.Setup:
    if fleet_path is None:
        return scenarios.scenario_setup(
            scenarios.SCENARIOS[scenario], start=start, days=days, seed=seed, time_limit=limit
        )
    files = templates.read_tree(fleet_path)
    try:
        fleet = load_fleet(
            files,
            appwrapper_schema=crd.check_appwrapper,
            links=templates.links_in(fleet_path),
            submodules=templates.submodules_in(fleet_path),
        )
    except FleetConfigError as error:
        raise click.ClickException(str(error)) from None
    if fleet.broken_spokes:
        # A replay plans every spoke from its file, from the first hour.
        broken = [p.line() for p in fleet.problems if p.file in fleet.broken_spokes.values()]
        raise click.ClickException(f"fix the spoke files first: {'; '.join(broken)}")
    for problem in fleet.problems if tell else ():
        click.echo(f"skipped: {problem.line()}", err=True)
    trace_file = trace or (fleet_path / scenarios.TRACE_FILE)
    try:
        setup = scenarios.fleet_setup(
            fleet,
            trace=trace_file.read_bytes() if trace_file.exists() else None,
            # Without a trace, the fleet's directory names the replay: as given,
            # `--fleet .` would be named "."
            trace_name=str(trace_file if trace_file.exists() else fleet_path.resolve()),
            start=start,
            days=days,
            time_limit=limit,
        )
    except scenarios.SimulationInputError as error:
        raise click.ClickException(str(error)) from None
    if tell and setup.after_replay:
        click.echo(
            f"skipped: {setup.name}: {setup.after_replay} submission"
            f"{'s' * (setup.after_replay != 1)} at arrival_hours {days * 24} or later, after "
            f"the {days_text(days)} replayed: lengthen --days to replay them",
            err=True,
        )
    return setup


def _plot(
    path: Path,
    setup: scenarios.Setup,
    results: list[simulating.PolicyResult],
    *,
    start: datetime,
    days: int,
) -> None:
    slot = timedelta(seconds=setup.policy.spec.slot_seconds)
    span = timedelta(days=days)
    grid = simulating.Intensities(
        set(setup.zones.values()),
        start=start,
        slot_seconds=int(slot.total_seconds()),
        slots=int(span / slot) + 1,
    )
    duration = {a.job.id: a.job.duration for a in setup.arrivals}
    shown = [r for r in results if r.policy in ("qos", "caspian")] or results[:1]
    path.write_text(
        plotting.svg(
            start=start,
            span=span,
            intensity={
                zone: list(grid.actual(zone, at=start, slots=int(span / slot) + 1))
                for zone in set(setup.zones.values())
            },
            slot=slot,
            spoke_zones=setup.zones,
            timelines={
                r.policy: [(p.spoke, p.start, duration[i]) for i, p in r.placements.items()]
                for r in shown
            },
            title=f"{setup.name}: {days_text(days)} from {start:%Y-%m-%d}, lifecycle gCO2/kWh",
        )
    )
    click.echo(f"wrote {path}", err=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:6.1%}"  # None: not measured (no clairvoyant run)
