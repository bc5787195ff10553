"""`caspian bench nodes`: what reading spokes node by node adds to a decision.

A fleet of `jobs` AppWrappers (a third of them GPU jobs that tolerate the GPU
taint, one GPU job in four of those selecting H100 nodes) on `spokes` spokes of
`nodes` nodes each: nine in ten untainted CPU nodes, the rest a GPU pool tainted
`nvidia.com/gpu`, half A100 and half H100. `decide` runs with the nodes, as the
kube observer reports them (node fit, pools), and with the same room as one sum
per spoke, as declared capacity gives it. The planner is the qos baseline in
both, timed apart: the optimizer works to its time budget, and the pools make
its instance larger, so what the node logic itself costs is `decide` less the
planner.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import yaml

from optimizer import baselines
from optimizer.model import Instance, Plan, SolverSettings
from reconciler import benchloop, crd, deciding, gridcarbon, ledger, templates
from reconciler.decisions import Decision, SpokeState
from reconciler.fleet import Fleet
from reconciler.loading import load_fleet
from reconciler.pods import Node, Resources, Taint

GPU_TAINT = Taint(key="nvidia.com/gpu", effect="NoSchedule")
CPU_NODE = Resources(cpu=32, memory_bytes=128 * 2**30, gpu=0)
GPU_NODE = Resources(cpu=64, memory_bytes=512 * 2**30, gpu=8)


def _appwrapper(index: int) -> dict[str, Any]:
    """`bench loop`'s AppWrapper, of its own length, GPUs, tolerations, selector."""
    doc = yaml.safe_load(benchloop.appwrapper(f"bench-{index:05d}", cpu=1 + index % 8))
    doc["metadata"]["annotations"]["caspian.dev/duration"] = f"{15 * (1 + index % 12)}m"
    pod = doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]
    if index % 3 == 0:
        # GPUs as the API server takes them: a limit (the request defaults to it).
        pod["containers"][0]["resources"]["limits"] = {"nvidia.com/gpu": str(1 + index % 4)}
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists"}]
        if index % 4 == 0:
            pod["nodeSelector"] = {"gpu.product": "H100"}
    return doc


def fleet(*, jobs: int, spokes: int) -> Fleet:
    """The template's policy, `spokes` copies of its paris spoke, `jobs` jobs."""
    template = templates.template_files()
    files = {"caspian.yaml": template["caspian.yaml"]}
    spoke = yaml.safe_load(template["spokes/paris.yaml"])
    for s in range(spokes):
        spoke["metadata"]["name"] = f"spoke-{s:02d}"
        files[f"spokes/spoke-{s:02d}.yaml"] = yaml.safe_dump(spoke).encode()
    for index in range(jobs):
        files[f"jobs/bench-{index:05d}.yaml"] = yaml.safe_dump(_appwrapper(index)).encode()
    return load_fleet(files, appwrapper_schema=crd.check_appwrapper)


def node_states(fleet: Fleet, *, nodes: int) -> dict[str, SpokeState]:
    gpu_nodes = max(2, nodes // 10)
    states = {}
    for spoke in fleet.spokes:
        found = [
            Node(name=f"cpu-{i}", allocatable=CPU_NODE, free=CPU_NODE)
            for i in range(nodes - gpu_nodes)
        ]
        found += [
            Node(
                name=f"gpu-{i}",
                allocatable=GPU_NODE,
                free=GPU_NODE,
                labels={"gpu.product": "H100" if i % 2 else "A100"},
                taints=(GPU_TAINT,),
            )
            for i in range(gpu_nodes)
        ]
        states[spoke.name] = SpokeState(
            name=spoke.name,
            cpu=sum(n.allocatable.cpu for n in found),
            memory_bytes=sum(n.allocatable.memory_bytes for n in found),
            gpu=sum(n.allocatable.gpu for n in found),
            source="bench",
            nodes=tuple(found),
        )
    return states


def _decide(
    fleet: Fleet, spokes: Mapping[str, SpokeState], *, forecasts: Any, now: datetime
) -> tuple[Decision, float]:
    """The decision, and how long its planner took (the instance grows with the
    pools: its time is the planner's, not the node logic's)."""
    planned = []

    def planner(instance: Instance, _settings: SolverSettings) -> Plan:
        started = time.perf_counter()
        plan = baselines.qos(instance)
        planned.append(time.perf_counter() - started)
        return plan

    decision = deciding.decide(
        fleet=fleet,
        ledger=ledger.Ledger(),
        spokes=spokes,
        forecasts=forecasts,
        now=now,
        planner=planner,
    )
    return decision, sum(planned)


def measure(*, jobs: int, spokes: int, nodes: int, repeats: int, now: datetime) -> dict[str, Any]:
    bench_fleet = fleet(jobs=jobs, spokes=spokes)
    forecasts = gridcarbon.fetch_forecasts(bench_fleet, now=now)
    with_nodes = node_states(bench_fleet, nodes=nodes)
    summed = {name: state.model_copy(update={"nodes": ()}) for name, state in with_nodes.items()}
    total: dict[str, list[float]] = {"nodes": [], "sum": []}
    planner: dict[str, list[float]] = {"nodes": [], "sum": []}
    decision = None
    for _ in range(repeats):
        for label, states in (("nodes", with_nodes), ("sum", summed)):
            started = time.perf_counter()
            outcome, planning = _decide(bench_fleet, states, forecasts=forecasts, now=now)
            total[label].append(time.perf_counter() - started)
            planner[label].append(planning)
            if label == "nodes":
                decision = outcome
    assert decision is not None
    # Without the planner: what node fit and pools themselves cost.
    own = {
        label: statistics.median(t - p for t, p in zip(total[label], planner[label], strict=True))
        for label in total
    }
    return {
        "jobs": jobs,
        "spokes": spokes,
        "nodes_per_spoke": nodes,
        "pools": len(decision.instance.spokes),
        "repeats": repeats,
        "decide_with_nodes_s": round(statistics.median(total["nodes"]), 3),
        "decide_with_sums_s": round(statistics.median(total["sum"]), 3),
        "planner_with_nodes_s": round(statistics.median(planner["nodes"]), 3),
        "planner_with_sums_s": round(statistics.median(planner["sum"]), 3),
        "decide_less_planner_with_nodes_s": round(own["nodes"], 3),
        "decide_less_planner_with_sums_s": round(own["sum"], 3),
        "jobs_no_node_fits": len(decision.no_node_fits),
    }
