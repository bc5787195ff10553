"""YAML in and out, for every file Caspian reads from or writes to the fleet repo.

libyaml does the work where PyYAML was built with it: reading 2,000 AppWrappers
took 0.38 s with it and 4.1 s with PyYAML's own parser, and the ledger is read and
rewritten at every reconcile. The results are PyYAML's own: the same values, the
same bytes (tests check both), and on a parse error PyYAML's own message, which
names the offending character or alias where libyaml's does not. Pure.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import json
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

import yaml

FAST = yaml.__with_libyaml__
_FastDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

YAMLError = yaml.YAMLError


# The most one document of a file a user writes may hold: etcd keeps objects of
# up to 1.5 MiB by default, so Kubernetes takes no AppWrapper larger. Reading a
# 20 MB data file put in jobs/ by mistake took `caspian validate` 272 s and 2.7 GiB.
MOST_DOCUMENT_BYTES = 3 * 2**19
# A line that starts or ends a document, wherever it stands (YAML forbids it in
# a value), so documents are told apart without reading them.
_DOCUMENT_MARK = re.compile(rb"^(?:---|\.\.\.)(?=[ \t\r\n]|$)", re.MULTILINE)

# The most levels a document may nest. libyaml's composer recurses in C for
# each level, so a file of 100 KB nested 30,000 levels deep (`a: [[[...]]]`)
# overflowed the stack and killed the process, and every reconcile of the
# fleet with it. No Kubernetes object comes near this; a thread's stack of
# 128 KB holds it.
MOST_DEPTH = 256
# Each level of a document takes one of these at least.
_NESTING_MARKS = (b"[", b"{", b"-", b":", b"?")

# Values that aliases may add to a document beyond those written in it. An
# AppWrapper that reuses a block by an alias adds a few hundred; eight levels of
# ten aliases each in 1.5 KB add a billion, which took validation past 120 s
# and 6.3 GiB before this limit (Kubernetes' own YAML reader refuses such
# "excessive aliasing" too).
MOST_ALIASED = 100_000


class OneKeyOnce:
    """A mapping that gives a key twice is refused, as kubectl, kustomize and
    Argo CD refuse it. PyYAML would keep the last one silently, so a merge
    conflict resolved by keeping both sides would change a job unseen. Keys
    that a merge (`<<: *base`) brings are not the mapping's own: it may give
    them again. So is a document whose aliases would expand it past
    MOST_ALIASED values, or without end (an alias inside its own anchor)."""

    def __init__(self, stream: bytes | str) -> None:
        super().__init__(stream)  # type: ignore[call-arg]
        # No "*", no alias: counting added a quarter to reading a ledger of 5,000
        # records (1.35 s against 1.08 s).
        self.may_alias = b"*" in stream if isinstance(stream, bytes) else "*" in stream

    def construct_document(self, node: yaml.Node) -> Any:
        if self.may_alias:
            _refuse_alias_bombs(node)
        return super().construct_document(node)  # type: ignore[misc]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[tuple[str, str], yaml.Node] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            seen = first.setdefault((key.tag, key.value), key)
            if seen is not key:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key.value!r} is given twice in one mapping (first at line "
                    f"{seen.start_mark.line + 1}): keep one, as kubectl and Argo CD refuse it",
                    key.start_mark,
                )
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


def _refuse_alias_bombs(root: yaml.Node) -> None:
    """Count the values `root` holds with every alias written out, each node
    once (aliases share their anchor's node), and refuse too many."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # on the path from the root: an alias back to one never ends
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in _children(node))
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_nodes:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "an alias inside its own anchor makes a value without end: write it out",
                node.start_mark,
            )
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    added = sizes[id(root)] - len(sizes)
    if added > MOST_ALIASED:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"its aliases add {added:,} values to those written, more than "
            f"{MOST_ALIASED:,}: write the values out, or alias less",
            root.start_mark,
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


class _FastLoader(OneKeyOnce, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


_FastComposer = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SafeLoader(OneKeyOnce, yaml.SafeLoader):
    """PyYAML's own parser, with the same refusal: its errors name the place."""


def largest_document(raw: bytes) -> int:
    """The bytes of the largest document of `raw`, found without parsing it."""
    marks = [0, *(m.start() for m in _DOCUMENT_MARK.finditer(raw)), len(raw)]
    return max(b - a for a, b in itertools.pairwise(marks))


# A Git LFS pointer: what git holds of a file kept in LFS storage, a few lines
# of `key value` whose first is the spec's version and which name the file's
# digest and size.
_LFS_POINTER = re.compile(
    rb"version https://\S+\n(?:[a-z0-9.-]+ \S.*\n)*?oid sha256:[0-9a-f]{64}\n"
    rb"(?:[a-z0-9.-]+ \S.*\n)*?size (\d+)\n(?:[a-z0-9.-]+ \S.*\n)*"
)


def lfs_pointer(raw: bytes) -> str | None:
    """Where `raw` is a Git LFS pointer and not the file it stands for, what
    to do (it reads as YAML: one long string)."""
    found = _LFS_POINTER.fullmatch(raw)
    if found is None:
        return None
    return (
        f"a Git LFS pointer to a file of {int(found[1]):,} bytes, not the file: Caspian "
        "reads what git holds and fetches nothing from LFS; take the fleet's YAML out of "
        "LFS (its pattern in .gitattributes) and commit the file itself"
    )


def template_marks(raw: bytes) -> str | None:
    """Where `raw` holds a Helm or Go template's `{{ }}`, a hint for the
    problems found in it: it is read as committed, not rendered."""
    at = raw.find(b"{{")
    if at < 0 or raw.find(b"}}", at) < 0:
        return None
    line = raw.count(b"\n", 0, at) + 1
    return (
        f"it holds a template's {{{{ }}}} (line {line}), read as committed: render the "
        "template (helm template, say) and commit what it gives"
    )


def load_all(raw: bytes, *, loader: type | None = None) -> list[Any]:
    """The documents of `raw` that are not empty."""
    _shallow(raw)
    return _readable(
        lambda use: [doc for doc in yaml.load_all(raw, Loader=use) if doc is not None], loader
    )


def _shallow(raw: bytes) -> None:
    """Raise where `raw` nests deeper than MOST_DEPTH. A file with fewer marks
    of nesting than that passes on their count; the others are read as
    events, which libyaml's parser makes without recursing."""
    if sum(raw.count(mark) for mark in _NESTING_MARKS) <= MOST_DEPTH:
        return
    depth, deepest = 0, None
    try:
        for event in yaml.parse(raw, Loader=_FastComposer):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MOST_DEPTH:
                    deepest = event.start_mark
                    break
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return  # not YAML: the reading that follows says where, as ever
    if deepest is not None:
        # libyaml's mark, which has the line and column as PyYAML's has.
        raise _too_deep(typing.cast(yaml.Mark, deepest))


class TooDeepError(yaml.MarkedYAMLError):
    """A document nested deeper than MOST_DEPTH."""


def _too_deep(mark: yaml.Mark) -> TooDeepError:
    return TooDeepError(problem=f"nested more than {MOST_DEPTH} levels deep", problem_mark=mark)


# A lone UTF-16 surrogate: Python's decoding of a file name's undecodable
# bytes makes them, and so do YAML's and JSON's escapes.
SURROGATE = re.compile("[\ud800-\udfff]")
SURROGATE_FIX = (
    'holds a lone UTF-16 surrogate (an escape such as "\\udce9"), which no UTF-8 text '
    "can, nor Kubernetes keep: write the character itself"
)


def lone_surrogates(doc: Any) -> str | None:
    """A field of `doc` (dotted, as a problem names it) whose key or
    text holds a lone UTF-16 surrogate, which YAML's and JSON's escapes
    (`"\\udce9"`) can write and no UTF-8 text can hold; None where none does.
    Walked without recursing: JSON may nest deeper than Python's stack."""
    todo: list[tuple[str, Any]] = [("", doc)]
    while todo:
        where, node = todo.pop()
        if isinstance(node, str) and SURROGATE.search(node):
            return where or "-"
        pairs = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for key, child in pairs:
            if isinstance(key, str) and SURROGATE.search(key):
                return where or "-"
            part = f"[{key}]" if isinstance(key, int) else f".{key}" if where else str(key)
            todo.append((where + part, child))
    return None


def refusal(error: YAMLError, *, language: str = "YAML") -> str:
    """Why a file that does not read is not read, for its problem line."""
    if isinstance(error, TooDeepError):
        return f"{describe(error)}, which no Kubernetes object is: not read"
    return f"not valid {language}: {describe(error)}"


def load_json(raw: bytes) -> list[Any]:
    """The one document of a JSON file, as a list like load_all's (empty for
    a file of only whitespace). Read with Python's own JSON reader: JSON
    indented with tabs is no YAML. A key given twice is refused, as in YAML."""
    if not raw.strip():
        return []
    _shallow_json(raw)
    try:
        return [json.loads(raw, object_pairs_hook=_each_key_once)]
    except json.JSONDecodeError as error:
        raise JSONError(error.msg, line=error.lineno, column=error.colno) from None
    except ValueError as error:  # bytes that are no text, a key given twice
        raise YAMLError(str(error)) from None
    except RecursionError:
        raise YAMLError("nested too deeply to read") from None


# In a JSON text: the next bracket or string, and the rest of a string begun.
_JSON_MARK = re.compile(rb'[\[\]{}"]')
_JSON_STRING_REST = re.compile(rb'(?:[^"\\]|\\.)*+"', re.DOTALL)


def _shallow_json(raw: bytes) -> None:
    """Raise where JSON `raw` nests deeper than MOST_DEPTH, as `_shallow` for
    YAML: Python's reader would read it, or fail at its own recursion limit.
    One pass, each string skipped whole; an unterminated one ends the scan,
    and the reading that follows says where."""
    if raw.count(b"[") + raw.count(b"{") <= MOST_DEPTH:
        return
    depth, at = 0, 0
    while (found := _JSON_MARK.search(raw, at)) is not None:
        mark, at = found.group(), found.end()
        if mark == b'"':
            rest = _JSON_STRING_REST.match(raw, at)
            if rest is None:
                return
            at = rest.end()
        elif mark in (b"[", b"{"):
            depth += 1
            if depth > MOST_DEPTH:
                start = found.start()
                line = raw.count(b"\n", 0, start)
                column = start - (raw.rfind(b"\n", 0, start) + 1)
                # No buffer: the mark is said by its line and column alone.
                raise _too_deep(yaml.Mark("", start, line, column, None, 0))
        else:
            depth -= 1


class JSONError(YAMLError):
    """Where a JSON file stops being JSON."""

    def __init__(self, message: str, *, line: int, column: int) -> None:
        super().__init__(f"{message} (line {line}, column {column})")
        self.line = line


def _each_key_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(
                f"key {key!r} is given twice in one object: keep one, as kubectl and "
                "Argo CD refuse it"
            )
        found[key] = value
    return found


def load(raw: bytes, *, loader: type | None = None) -> Any:
    """The one document of `raw` (None if it has none)."""
    _shallow(raw)
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
            return read(SafeLoader)
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


def _text(dumper: Any, data: str) -> Any:
    """Text of many lines (a ConfigMap's config file, a container's script) as
    a literal block, as people write it and review it. Other text, and text a
    block cannot hold as written, keeps PyYAML's own style: a line that ends
    in a space (asked for a block, the emitter would fall back to double
    quotes, not single), blank lines at its end or a line break other than
    \\n (its block would end its document with `...`, and the ledger is
    written record by record)."""
    block = (
        "\n" in data
        and data.strip("\n") != ""
        and not data.endswith(("\n\n", " "))
        and " \n" not in data
        and not any(mark in data for mark in "\r\x85\u2028\u2029\ufeff")
    )
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if block else None)


class _Dumper(NoAliases, _FastDumper):  # type: ignore[misc,valid-type]
    pass


class PyYamlDumper(NoAliases, yaml.SafeDumper):
    """PyYAML's own emitter, to compare with libyaml's."""


for _dumper in (_Dumper, PyYamlDumper):
    _dumper.add_representer(str, _text)


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


def line_of(raw: bytes, field: str, *, document: int = 0) -> int | None:
    """The line (from 1) of `field` in the `document`-th document of `raw` that
    is not empty, named as a problem names it: keys apart by dots (a key may
    hold dots itself, as an annotation's does), list items and map keys in
    brackets (`containers[0]`, `requests[cpu]`). A field that is not there (a
    required one left out) is at the line of the deepest part that is; None
    for a file that does not parse, or a field that names no part of it ("-")."""
    if field in ("", "-") or largest_document(raw) > MOST_DOCUMENT_BYTES:
        return None
    nodes = _composed(raw)
    if nodes is None or not 0 <= document < len(nodes):
        return None
    node, line, rest = nodes[document], None, field
    while rest:
        step = _step(node, rest)
        if step is None:
            break
        key, node, rest = step
        line = key.start_mark.line + 1
    return line


@functools.lru_cache(maxsize=4)
def _composed(raw: bytes) -> list[yaml.Node] | None:
    """The documents of `raw` that are not empty, as nodes with their places;
    None where it does not parse. Kept for the next problem of the same file.
    libyaml's composer: with PyYAML's own, validating a 1.4 MB file that is
    no AppWrapper took 19-20 s, with libyaml's 10 s."""
    try:
        _shallow(raw)
        return [node for node in yaml.compose_all(raw, Loader=_FastComposer) if _filled(node)]
    except (yaml.YAMLError, ValueError, RecursionError):
        return None


def error_place(error: YAMLError, raw: bytes) -> int | None:
    """The line (from 1) of `raw` where reading it failed with `error`; None
    where the reader names no place (a value its tag cannot hold, say)."""
    if isinstance(error, JSONError):
        return error.line
    if isinstance(error, yaml.reader.ReaderError):
        return _reader_line(raw, error)
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return mark.line + 1 if mark is not None else None


def _reader_line(raw: bytes, error: yaml.reader.ReaderError) -> int:
    """The line of a byte that does not decode (its place counted in bytes), or
    of a character YAML does not allow (counted in characters)."""
    if error.encoding not in ("unicode", "?"):
        return raw[: error.position].count(b"\n") + 1
    return raw.decode("utf-8", errors="replace")[: error.position].count("\n") + 1


def _filled(node: yaml.Node | None) -> bool:
    """A document that loads as something: `load_all` leaves the others out."""
    return node is not None and not (
        isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"
    )


def _step(node: yaml.Node, rest: str) -> tuple[yaml.Node, yaml.Node, str] | None:
    """The first part of the path `rest` within `node`: the node that names it
    (a key, or a list item), its value, and the path left; None where `node`
    has no such part."""
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            return None
        name, left = rest[1:end], rest[end + 1 :].removeprefix(".")
        if isinstance(node, yaml.SequenceNode):
            if not name.isdecimal() or int(name) >= len(node.value):
                return None
            item = node.value[int(name)]
            return item, item, left
        return _keyed(node, name, left)
    # The longest key the path goes on from: "caspian.dev/duration" before "caspian".
    keys = [
        key.value
        for key, _ in (node.value if isinstance(node, yaml.MappingNode) else [])
        if isinstance(key, yaml.ScalarNode)
        and rest.startswith(key.value)
        and rest[len(key.value) : len(key.value) + 1] in ("", ".", "[")
    ]
    if not keys:
        return None
    name = max(keys, key=len)
    return _keyed(node, name, rest[len(name) :].removeprefix("."))


def _keyed(node: yaml.Node, name: str, left: str) -> tuple[yaml.Node, yaml.Node, str] | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == name:
            return key, value, left
    return None


def describe(error: YAMLError) -> str:
    """What a parse error says, with the line and column it stopped at."""
    if isinstance(error, yaml.reader.ReaderError):
        # PyYAML's own words run over two lines, and a problem is one.
        if error.encoding not in ("unicode", "?"):
            return (
                f"byte #x{error.character:02x} at byte {error.position} is not "
                f"{error.encoding.upper()} ({error.reason}): save the file as UTF-8"
            )
        return (
            f"character #x{error.character:04x} at character {error.position} is one YAML "
            "does not allow (a control character): remove it"
        )
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if "'\\t'" in str(problem):
        problem = f"{problem}: YAML indents with spaces, not tabs"
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)


def not_text(value: Any) -> str | None:
    """Where text was wanted: what YAML made of a value written bare (`zone: 10`,
    `version: 1.30`, `nightly: yes`, `at: 2026-12-05`), and the fix; None for
    other values."""
    if isinstance(value, bool):
        return f"{str(value).lower()} is read as true or false, not text: put it in quotes"
    if isinstance(value, int | float):
        return f"{value} is read as a number, not text: put it in quotes"
    if isinstance(value, datetime.date):  # a datetime too: `deadline: 2026-12-05T10:00:00Z`
        return f"{value.isoformat()} is read as a time, not text: put it in quotes"
    return None
