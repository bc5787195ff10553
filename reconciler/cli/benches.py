"""`caspian bench`: the benchmarks, each printing JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click

from reconciler.cli.common import parse_now, writable_directory

# A fixed time, so that runs of `bench loop` on different days and hours compare.
BENCH_LOOP_NOW = "2026-12-01T00:00:00Z"


@click.group()
def bench() -> None:
    """Benchmarks that print JSON."""


@bench.command("optimizer")
@click.option("--jobs", type=click.IntRange(1), required=True)
@click.option("--spokes", type=click.IntRange(1), required=True)
@click.option("--slots", type=click.IntRange(2), default=96, show_default=True)
@click.option(
    "--seed",
    "seeds",
    type=int,
    multiple=True,
    default=(0,),
    show_default=True,
    help="Repeat for several instances: the JSON then holds every run and each "
    "figure's median over the seeds and its highest value.",
)
@click.option(
    "--repeat",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Runs per seed; a seed's median over its runs goes into the median.",
)
@click.option("--time-limit", type=click.FloatRange(0.1), default=30.0, show_default=True)
@click.option("--solver", default="highs", show_default=True)
@click.option(
    "--lp-time-limit",
    type=click.FloatRange(1),
    default=600.0,
    show_default=True,
    help="Budget for the LP bound, computed after the plan.",
)
@click.option(
    "--exact-time-limit",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="After the LP bound, give the plan to the MILP solver over the whole model "
    "for this long: the better plan and the bound it proves (exact_* fields).",
)
@click.option(
    "--dump",
    "dump_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write instance.json and plan.json here (docs/plan-dump-format.md).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on one line.")
def bench_optimizer(
    jobs: int,
    spokes: int,
    slots: int,
    seeds: tuple[int, ...],
    repeat: int,
    time_limit: float,
    solver: str,
    lp_time_limit: float,
    exact_time_limit: float,
    dump_dir: Path | None,
    as_json: bool,
) -> None:
    """Solve generated instances, one after another, and print what each took and
    how good its plan is."""
    from optimizer import bench as optimizer_bench

    if dump_dir is not None:
        writable_directory(dump_dir, hint="'--dump'", make=True)
    order = [(seed, n) for seed in dict.fromkeys(seeds) for n in range(1, repeat + 1)]
    runs = [
        optimizer_bench.run(
            jobs=jobs,
            spokes=spokes,
            slots=slots,
            seed=seed,
            time_limit=time_limit,
            solver=solver,
            lp_time_limit=lp_time_limit,
            exact_time_limit=exact_time_limit,
            # One directory per run where there are several.
            dump_dir=dump_dir / f"seed-{seed}-run-{n}" if dump_dir and len(order) > 1 else dump_dir,
        )
        for seed, n in order
    ]
    result = runs[0] if len(runs) == 1 else optimizer_bench.summary(runs)
    if as_json:
        click.echo(optimizer_bench.dumps(result))
    else:
        click.echo(json.dumps(result, indent=2))


@bench.command("loop")
@click.option("--jobs", type=click.IntRange(1), default=100, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=10, show_default=True)
@click.option("--noop-jobs", type=click.IntRange(1), default=1000, show_default=True)
@click.option(
    "--now",
    "now_text",
    metavar="RFC3339",
    default=BENCH_LOOP_NOW,
    show_default=True,
    help="The loop's clock, which stands still: how long a decision takes depends on "
    "the hour's carbon curves.",
)
@click.option("--json", "as_json", is_flag=True)
def bench_loop(jobs: int, rounds: int, noop_jobs: int, now_text: str, as_json: bool) -> None:
    """Push-to-placement latency with `watch` running, and the cost of a no-op."""
    from reconciler import benchloop

    now = parse_now(now_text)
    result = {
        "latency": benchloop.latency(jobs=jobs, rounds=rounds, now=now),
        "noop": benchloop.noop(jobs=noop_jobs, repeats=5, now=now),
    }
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


@bench.command("soak")
@click.option("--reconciles", type=click.IntRange(1), default=400, show_default=True)
@click.option(
    "--every",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="Take stock after this many reconciles, with the median of those.",
)
@click.option(
    "--no-fold",
    is_flag=True,
    help="Fold no pack or loose object, to see what folding saves.",
)
@click.option("--now", "now_text", metavar="RFC3339", default=BENCH_LOOP_NOW, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_soak(reconciles: int, every: int, no_fold: bool, now_text: str, as_json: bool) -> None:
    """The watch loop through many reconciles, each after a user's push of five
    AppWrappers to a fleet repo on a local path: the packs and loose objects of
    the mirror and of that repo, the open files, the memory and the median
    reconcile, as they go."""
    from reconciler import benchsoak

    result = benchsoak.soak(
        reconciles=reconciles, every=every, now=parse_now(now_text), fold=not no_fold
    )
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


@bench.command("nodes")
@click.option("--jobs", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--spokes", type=click.IntRange(1), default=10, show_default=True)
@click.option("--nodes", type=click.IntRange(2), default=100, show_default=True)
@click.option("--repeat", type=click.IntRange(1), default=7, show_default=True)
@click.option("--now", "now_text", metavar="RFC3339", default=BENCH_LOOP_NOW, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_nodes(
    jobs: int, spokes: int, nodes: int, repeat: int, now_text: str, as_json: bool
) -> None:
    """What reading spokes node by node (node fit, pools by taints and selected
    labels) adds to a decision: medians of `decide` with the nodes and with one
    sum per spoke, the qos baseline as planner in both."""
    from reconciler import benchnodes

    result = benchnodes.measure(
        jobs=jobs, spokes=spokes, nodes=nodes, repeats=repeat, now=parse_now(now_text)
    )
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


@bench.command("ledger")
@click.option(
    "--records",
    "counts",
    type=click.IntRange(1),
    multiple=True,
    default=(1000, 10000),
    show_default=True,
)
@click.option("--repeat", type=click.IntRange(1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_ledger(counts: tuple[int, ...], repeat: int, as_json: bool) -> None:
    """Writing and reading back a ledger of so many records: medians, with libyaml
    and with PyYAML's own code."""
    from reconciler import benchledger

    result = [benchledger.measure(count=count, repeats=repeat) for count in counts]
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


@bench.command("history")
@click.option("--records", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--commits", type=click.IntRange(1), default=300, show_default=True)
@click.option("--repeat", type=click.IntRange(1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_history(records: int, commits: int, repeat: int, as_json: bool) -> None:
    """`caspian history` and `caspian report` on a repo whose ledger of so
    many records changed in so many commits: medians."""
    from reconciler import benchhistory

    result = benchhistory.measure(records=records, commits=commits, repeats=repeat)
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))
