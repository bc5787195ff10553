"""YAML in and out, for every file Caspian reads from or writes to the fleet repo.

libyaml does the work where PyYAML was built with it: reading 2,000 AppWrappers
took 0.38 s with it and 4.1 s with PyYAML's own parser, and the ledger is read and
rewritten at every reconcile. The results are PyYAML's own: the same values, the
same bytes (tests check both), and on a parse error PyYAML's own message, which
names the offending character or alias where libyaml's does not. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import yaml

FAST = yaml.__with_libyaml__
_FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_FastDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

YAMLError = yaml.YAMLError


def load_all(raw: bytes, *, loader: type | None = None) -> list[Any]:
    """The documents of `raw` that are not empty."""
    return _readable(
        lambda use: [doc for doc in yaml.load_all(raw, Loader=use) if doc is not None], loader
    )


def load(raw: bytes, *, loader: type | None = None) -> Any:
    """The one document of `raw` (None if it has none)."""
    return _readable(lambda use: yaml.load(raw, Loader=use), loader)


def _readable(read: Callable[[type], Any], loader: type | None) -> Any:
    """`read` with `loader` (libyaml's by default), every failure a YAMLError."""
    try:
        try:
            return read(loader or _FastLoader)
        except yaml.YAMLError:
            if loader is not None or not FAST:
                raise
            # Parsed again only to raise PyYAML's own error.
            return read(yaml.SafeLoader)
    # A value its tag cannot hold (`!!timestamp 2026-13-45`), and nesting deeper
    # than Python's stack, escape PyYAML as plain Python errors.
    except ValueError as error:
        raise YAMLError(f"a value that cannot be read: {error}") from None
    except RecursionError:
        raise YAMLError("nested too deeply to read") from None


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
