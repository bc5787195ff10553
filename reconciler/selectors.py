"""Kubernetes label selectors as `kubectl get -l` reads them, for choosing spokes
by the labels of their files (`caspian.dev/spoke-selector: region in (eu-west)`).

A selector is requirements joined by commas, all of which must hold: `key`,
`!key`, `key=value` (or `==`), `key!=value` (also true where the key is
missing, as in Kubernetes), `key in (a, b)`, `key notin (a, b)`. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from reconciler.pods import Requirement

_KEY = r"([A-Za-z0-9][-A-Za-z0-9_./]*)"
_VALUE = r"([-A-Za-z0-9_.]*)"
_SET = re.compile(rf"^{_KEY}\s+(in|notin)\s*\((.*)\)$")
_EQUALS = re.compile(rf"^{_KEY}\s*(==|=|!=)\s*{_VALUE}$")
_EXISTS = re.compile(rf"^(!?)\s*{_KEY}$")
_SET_VALUE = re.compile(rf"^{_VALUE}$")


def parse(text: str) -> tuple[Requirement, ...]:
    """The requirements of `text`; ValueError naming the part that is no
    requirement, and the forms there are."""
    parts = _split(text)
    if not any(parts):
        raise ValueError("empty: give requirements such as region=eu-west, or remove it")
    return tuple(_requirement(part) for part in parts)


def matches(requirements: tuple[Requirement, ...], labels: Mapping[str, str]) -> bool:
    return all(requirement.holds(labels) for requirement in requirements)


def _split(text: str) -> list[str]:
    """At the commas between requirements, not those inside a set's parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if depth != 0:
        raise ValueError(f"{text!r}: its parentheses do not pair up")
    return [*parts, current.strip()]


def _requirement(part: str) -> Requirement:
    if found := _SET.match(part):
        key, operator, inside = found.groups()
        values = tuple(v.strip() for v in inside.split(","))
        if not all(_SET_VALUE.match(v) for v in values) or values == ("",):
            raise ValueError(f"{part!r}: the set holds values such as (eu-west, eu-central)")
        return Requirement(key=key, operator="In" if operator == "in" else "NotIn", values=values)
    if found := _EQUALS.match(part):
        key, operator, value = found.groups()
        return Requirement(key=key, operator="NotIn" if operator == "!=" else "In", values=(value,))
    if found := _EXISTS.match(part):
        negated, key = found.groups()
        return Requirement(key=key, operator="DoesNotExist" if negated else "Exists")
    raise ValueError(
        f"{part!r} is no requirement: use key, !key, key=value, key!=value, "
        "key in (a, b) or key notin (a, b)"
    )
