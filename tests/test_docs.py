"""The code tour (docs/code-tour.md) names files and what to open in them,
the README links to its own headings, and the AppWrappers it shows are ones
Caspian takes: a rename, a removal or a new rule that leaves either wrong
fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from reconciler import crd
from reconciler.loading import load_fleet
from reconciler.templates import template_files

ROOT = Path(__file__).resolve().parents[1]
TOUR = ROOT / "docs" / "code-tour.md"
STOP = re.compile(r"`([\w./-]+\.py)::([\w.]+)`")
FILE = re.compile(r"`([\w./-]+\.py)`")
README = ROOT / "README.md"


def defined(tree: ast.Module, dotted: str) -> bool:
    """Whether `dotted` (a function, a class, or a class's method) is defined
    at the top of `tree`."""
    body: list[ast.stmt] = tree.body
    for part in dotted.split("."):
        found = [
            node
            for node in body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and node.name == part
        ]
        if not found:
            return False
        body = found[0].body if isinstance(found[0], ast.ClassDef) else []
    return True


def test_every_stop_of_the_code_tour_is_defined_where_it_says() -> None:
    text = TOUR.read_text()
    stops = STOP.findall(text)
    assert len(stops) > 30  # the tour's pattern still finds its stops
    missing = [
        f"{path}::{name}"
        for path, name in stops
        if not (ROOT / path).is_file() or not defined(ast.parse((ROOT / path).read_text()), name)
    ]
    assert missing == []


def test_every_file_the_code_tour_names_exists() -> None:
    named = set(FILE.findall(TOUR.read_text())) | {
        path for path, _ in STOP.findall(TOUR.read_text())
    }
    assert [path for path in sorted(named) if not (ROOT / path).is_file()] == []


def anchor(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, spaces as hyphens,
    other punctuation dropped."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_of_the_readme_to_its_own_headings_finds_one() -> None:
    text = README.read_text()
    headings = {anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert len(links) >= 10  # the contents still link
    assert [link for link in links if link not in headings] == []
    assert anchor("Data and licences") == "data-and-licences"


def test_every_appwrapper_the_readme_shows_is_one_caspian_takes() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.DOTALL)
    shown = [block for block in blocks if "kind: AppWrapper" in block]
    assert shown  # the pattern still finds them
    for index, block in enumerate(shown):
        path = f"jobs/readme-{index}.yaml"
        fleet = load_fleet(
            {**template_files(), path: block.encode()}, appwrapper_schema=crd.check_appwrapper
        )
        assert [p.line() for p in fleet.problems] == []
        assert path in {job.source for job in fleet.jobs}
