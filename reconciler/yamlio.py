"""YAML in and out, for every file Caspian reads from or writes to the fleet repo.

libyaml does the work where PyYAML was built with it: reading 2,000 AppWrappers
took 0.38 s with it and 4.1 s with PyYAML's own parser, and the ledger is read and
rewritten at every reconcile. The results are PyYAML's own: the same values, the
same bytes (tests check both), and on a parse error PyYAML's own message, which
names the offending character or alias where libyaml's does not. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

FAST = yaml.__with_libyaml__
_FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_FastDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

YAMLError = yaml.YAMLError


def load_all(raw: bytes, *, loader: type | None = None) -> list[Any]:
    """The documents of `raw` that are not empty."""
    try:
        return [doc for doc in yaml.load_all(raw, Loader=loader or _FastLoader) if doc is not None]
    except yaml.YAMLError:
        if loader is not None or not FAST:
            raise
        # Parsed again only to raise PyYAML's own error.
        return [doc for doc in yaml.load_all(raw, Loader=yaml.SafeLoader) if doc is not None]


def load(raw: bytes, *, loader: type | None = None) -> Any:
    """The one document of `raw` (None if it has none)."""
    try:
        return yaml.load(raw, Loader=loader or _FastLoader)
    except yaml.YAMLError:
        if loader is not None or not FAST:
            raise
        return yaml.load(raw, Loader=yaml.SafeLoader)


class NoAliases:
    """No anchors: output people can diff and review."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


class _Dumper(NoAliases, _FastDumper):
    pass


class PyYamlDumper(NoAliases, yaml.SafeDumper):
    """PyYAML's own emitter, to compare with libyaml's."""


def dump(document: Mapping[str, Any], *, dumper: type | None = None) -> bytes:
    """Block style, keys in the order given, lines up to 100 characters."""
    return yaml.dump(
        document,
        Dumper=dumper or _Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    ).encode()
