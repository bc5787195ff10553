"""The boundaries of DESIGN.md, held by a test instead of by reviewers:
the pure core imports no outside system and reads no clock or environment, and
each outside library is imported by its one adapter module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("reconciler", "optimizer", "carbon")
PURE = (
    "reconciler/fleet.py",
    "reconciler/loading.py",
    "reconciler/appwrappers.py",
    "reconciler/companions.py",
    "reconciler/deciding.py",
    "reconciler/optimizerjobs.py",
    "reconciler/records.py",
    "reconciler/chains.py",
    "reconciler/spokedown.py",
    "reconciler/spokeroom.py",
    "reconciler/decisions.py",
    "reconciler/requeues.py",
    "reconciler/arrivals.py",
    "reconciler/syncwindows.py",
    "reconciler/retrying.py",
    "reconciler/fitting.py",
    "reconciler/admission.py",
    "reconciler/podsecurity.py",
    "reconciler/pools.py",
    "reconciler/cron.py",
    "reconciler/history.py",
    "reconciler/accounting.py",
    "reconciler/emissions.py",
    "reconciler/explaining.py",
    "reconciler/kubeversions.py",
    "reconciler/kubeobjects.py",
    "reconciler/applications.py",
    "reconciler/rendering.py",
    "reconciler/proposals.py",
    "reconciler/messages.py",
    "reconciler/ledger.py",
    "reconciler/quantities.py",
    "reconciler/pods.py",
    "reconciler/jobspec.py",
    "reconciler/refusals.py",
    "reconciler/selectors.py",
    "reconciler/plotting.py",
    "reconciler/yamlio.py",
    "reconciler/owned.py",
    "reconciler/overlay.py",
    "reconciler/plancomment.py",
    "optimizer/model.py",
    "optimizer/costs.py",
    "optimizer/columns.py",
    "optimizer/capacity.py",
    "optimizer/heuristics.py",
    "optimizer/lagrange.py",
    "optimizer/mip.py",
    "optimizer/plans.py",
    "optimizer/baselines.py",
    "optimizer/dump.py",
    "optimizer/explain.py",
    "carbon/series.py",
    "carbon/points.py",
    "carbon/assembly.py",
    "carbon/forecasting.py",
)
# The `caspian` command, the one adapter of click.
CLI_MODULES = ("__init__", "common", "fleetrepo", "watch", "intensity", "simulation", "benches")
OUTSIDE = {
    "pygit2": {"reconciler/gitrepo.py"},
    "kubernetes": {"reconciler/kube.py"},
    "urllib3": {"reconciler/kube.py"},
    "watchfiles": {"reconciler/localwatch.py"},
    "prometheus_client": {"reconciler/metrics.py"},
    "httpx": set(),
    "requests": set(),
    "urllib": {"carbon/http.py", "reconciler/forge.py"},
    # The server serving.py runs; the connections carbon/http.py opens for the
    # carbon providers and the forge, cut where a whole answer takes too long.
    "http": {"reconciler/serving.py", "carbon/http.py"},
    # The address family of the server serving.py runs; the connections kube.py
    # and carbon/http.py shut when a whole answer takes too long.
    "socket": {"reconciler/serving.py", "reconciler/kube.py", "carbon/http.py"},
    "pulp": {"optimizer/pulp_backend.py"},
    "highspy": {"optimizer/highs.py"},
    "click": {f"reconciler/cli/{name}.py" for name in CLI_MODULES},
    "subprocess": {"reconciler/signing.py"},
}
IMPURE_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("time", "time"), ("os", "getenv")}
IMPURE_MODULES = {"os", "time", "subprocess", "random", "tempfile", "pathlib"}


def modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("library", sorted(OUTSIDE))
def test_each_outside_library_has_one_adapter(library: str) -> None:
    users = {p.relative_to(ROOT).as_posix() for p in modules() if library in imports(p)}
    assert users <= OUTSIDE[library], f"{library} imported by {sorted(users - OUTSIDE[library])}"


def transitive_imports(rel: str, seen: set[str] | None = None) -> set[str]:
    """Third-party and stdlib roots reachable from `rel` through our own modules."""
    seen = seen if seen is not None else set()
    if rel in seen:
        return set()
    seen.add(rel)
    result = set()
    tree = ast.parse((ROOT / rel).read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            root = name.split(".")[0]
            if root in PACKAGES:
                candidate = ROOT / (name.replace(".", "/") + ".py")
                package = ROOT / name.replace(".", "/") / "__init__.py"
                target = candidate if candidate.exists() else package if package.exists() else None
                if target is not None:
                    result |= transitive_imports(target.relative_to(ROOT).as_posix(), seen)
            else:
                result.add(root)
    return result


@pytest.mark.parametrize("module", PURE)
def test_the_pure_core_reaches_no_outside_system(module: str) -> None:
    reached = transitive_imports(module)
    # decide runs the optimizer, which hands a solver a wall-clock budget: that
    # budget is the one clock it reads, and only an interrupted solve depends on it.
    solving = {"pulp", "highspy", "time"}
    forbidden = (set(OUTSIDE) | IMPURE_MODULES) - solving
    if module.startswith("optimizer/"):
        forbidden.add("pulp")  # the optimizer's anytime parts may keep time, no more
    elif module == "reconciler/explaining.py":
        forbidden |= solving - {"time"}  # it asks the optimizer's heuristics, no solver
    elif module != "reconciler/deciding.py":
        forbidden |= solving
    assert not reached & forbidden, f"{module} reaches {sorted(reached & forbidden)}"


@pytest.mark.parametrize("module", PURE)
def test_the_pure_core_reads_no_clock_or_environment(module: str) -> None:
    for node in ast.walk(ast.parse((ROOT / module).read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            assert (name, node.func.attr) not in IMPURE_CALLS, (
                f"{module}: {name}.{node.func.attr}()"
            )
        if isinstance(node, ast.Name) and node.id == "open":
            pytest.fail(f"{module} opens files")
