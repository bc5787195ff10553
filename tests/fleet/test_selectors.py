"""Choosing spokes by their labels: `caspian.dev/spoke-selector`, read as
`kubectl get -l` reads a label selector."""

from __future__ import annotations

import pytest

from reconciler import selectors
from tests.fleet.helpers import appwrapper, fleet_with, problems_of

LABELS = {"region": "eu-west", "tier": "gold", "gpu": ""}


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("region=eu-west", True),
        ("region==eu-west", True),
        ("region!=eu-west", False),
        ("region!=us-west", True),
        ("zone!=a", True),  # true where the key is missing, as in Kubernetes
        ("region in (eu-west, eu-central)", True),
        ("region notin (eu-west,eu-central)", False),
        ("region in (us-west)", False),
        ("tier, region", True),
        ("!tier", False),
        ("! zone", True),
        ("gpu=", True),  # an empty value
        ("region in (eu-west), tier=gold, !zone", True),
        ("region in (eu-west), tier=silver", False),
        ("  region = eu-west ,tier  ", True),
    ],
)
def test_a_selector_holds_as_in_kubernetes(text: str, holds: bool) -> None:
    assert selectors.matches(selectors.parse(text), LABELS) is holds


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (" , ", "empty"),
        ("region in (eu-west", "its parentheses do not pair up"),
        ("region in ()", "the set holds values"),
        ("region ~ eu", "is no requirement"),
        ("region=eu west", "is no requirement"),
        ("region=a,=b", "'=b' is no requirement"),
    ],
)
def test_a_bad_selector_says_which_part_and_the_forms(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        selectors.parse(text)


def allowed(annotations: dict[str, str]) -> tuple[str, ...] | list[str]:
    fleet = fleet_with(jobs__extra=appwrapper(annotations=annotations))
    if fleet.problems:
        return problems_of(fleet)
    return next(job for job in fleet.jobs if job.name == "extra").allowed_spokes


def test_a_job_may_use_the_spokes_its_selector_picks_among_those_it_lists() -> None:
    europe = {"caspian.dev/spoke-selector": "region in (eu-west, eu-central)"}
    assert allowed(europe) == ("frankfurt", "paris")
    assert allowed({**europe, "caspian.dev/spokes": "paris,california"}) == ("paris",)
    assert allowed({"caspian.dev/spoke-selector": "region!=eu-west"}) == (
        "california",
        "frankfurt",
    )


def test_a_selector_that_picks_no_spoke_is_a_problem_naming_their_labels() -> None:
    assert allowed({"caspian.dev/spoke-selector": "region=mars"}) == [
        "jobs/extra.yaml: metadata.annotations.caspian.dev/spoke-selector: selects none of the "
        "spokes (their labels: california: region=us-west; frankfurt: region=eu-central; "
        "paris: region=eu-west); loosen it, or label a spoke in its file's metadata.labels"
    ]
    both = {"caspian.dev/spoke-selector": "region=us-west", "caspian.dev/spokes": "paris"}
    assert (
        "selects none of the spokes caspian.dev/spokes lists (their labels: paris: "
        in (allowed(both)[0])
    )
    syntax = allowed({"caspian.dev/spoke-selector": "region in (eu"})
    assert syntax[0].endswith("spoke-selector: 'region in (eu': its parentheses do not pair up")
