"""Where in its file a problem is: the line `caspian validate` gives an editor
or a CI check, found from the field the problem names, or where the file stops
being YAML."""

from __future__ import annotations

import pytest

from reconciler import crd
from reconciler.loading import load_fleet
from reconciler.templates import template_files
from reconciler.yamlio import (
    MOST_DOCUMENT_BYTES,
    YAMLError,
    describe,
    error_place,
    largest_document,
    line_of,
    load_all,
    load_json,
)
from tests.fleet.helpers import appwrapper, fleet_with, problems_of

TWO_DOCUMENTS = b"""\
---
# an empty document first, which loading leaves out
---
metadata:
  annotations:
    caspian: "x"
    caspian.dev/duration: "1 hour"
spec:
  containers:
  - name: main
    resources:
      requests:
        cpu: lots
  - name: side
---
metadata: {name: second}
spec: {}
"""


@pytest.mark.parametrize(
    ("field", "document", "line"),
    [
        ("metadata", 0, 4),
        # A key may hold dots: the longest key the path goes on from is taken.
        ("metadata.annotations.caspian.dev/duration", 0, 7),
        ("metadata.annotations.caspian", 0, 6),
        ("spec.containers[0].resources.requests[cpu]", 0, 13),
        ("spec.containers[1]", 0, 14),
        ("spec.containers[1].name", 0, 14),
        # What is not there is said at the deepest part that is.
        ("spec.containers[1].image", 0, 14),
        ("spec.containers[7]", 0, 9),
        ("spec.template.spec", 0, 8),
        ("metadata.name", 1, 16),
        ("spec.parallelism", 1, 17),
        # Nothing to point at: the whole file, or a document it does not have.
        ("-", 0, None),
        ("metadata", 2, None),
        ("kind", 0, None),
    ],
)
def test_a_field_is_found_at_its_key(field: str, document: int, line: int | None) -> None:
    assert line_of(TWO_DOCUMENTS, field, document=document) == line


def test_a_file_that_does_not_parse_has_no_lines() -> None:
    assert line_of(b"metadata: [", "metadata") is None
    # A value its tag cannot hold is found all the same: only loading reads it.
    assert line_of(b"b: 1\na: !!timestamp 2026-13-45\n", "a") == 2


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        (b"metadata: [", 1),
        (b"a: 1\nb: [\n", 3),  # the stream ends inside the list
        (b"a: 1\n  b: 2\n", 2),
        (b"a: 1\n---\nb: *nowhere\n", 3),
        (b"a: 1\nb: 2\n", None),
        (TWO_DOCUMENTS, None),
        # A value its tag cannot hold is YAML all the same: only loading fails on it.
        (b"b: 1\na: !!timestamp 2026-13-45\n", None),
    ],
)
def test_a_file_that_does_not_parse_is_placed_where_it_stops(raw: bytes, line: int | None) -> None:
    problems = fleet_with(jobs__extra=raw.decode()).problems
    mine = [p for p in problems if p.file.startswith("jobs/extra.yaml")]
    assert mine and [p.stops_at for p in mine if p.stops_at is not None] == [line] * bool(line)


@pytest.mark.parametrize(
    ("raw", "largest"),
    [
        (b"a: 1\n", 5),
        (b"a: 1\n---\nbb: 22\n", 11),
        # Marks start a line; one inside a value is indented or quoted, and is text.
        (b"a: |\n  ---\n  x\n---\nb: 1\n", 15),
        (b"a: '--- not a mark'\n...\n---\n", 20),
        (b"---\n---\n", 4),
    ],
)
def test_the_largest_document_is_found_without_reading(raw: bytes, largest: int) -> None:
    assert largest_document(raw) == largest


def test_a_document_too_large_for_kubernetes_is_not_read_nor_searched_for_lines() -> None:
    data = b"records:\n" + b"".join(b"- {id: %d, tags: [a, b]}\n" % i for i in range(70_000))
    assert len(data) > MOST_DOCUMENT_BYTES
    assert line_of(data, "records[3]") is None
    fleet = fleet_with(jobs__dataset=(data + b"x: [").decode())
    assert [p.stops_at for p in fleet.problems] == [None]
    assert problems_of(fleet) == [
        f"jobs/dataset.yaml: a document of {len(data) / 2**20:.1f} MiB, where Kubernetes keeps "
        "objects of up to 1.5 MiB: no AppWrapper, and not read; move the file out of jobs/"
    ]


DEEP = 30_000  # levels: libyaml's composer overflowed the stack and killed the process


@pytest.mark.parametrize(
    ("raw", "said", "line"),
    [
        (b"a: " + b"[" * DEEP + b"]" * DEEP + b"\n", "(line 1, column 259)", 1),
        (b"a: " + b"{a: " * DEEP + b"1" + b"}" * DEEP + b"\n", "(line 1, column 1024)", 1),
        (b"- " * DEEP + b"x\n", "(line 1, column 513)", 1),  # compact, on one line
        (b"".join(b" " * i + b"k:\n" for i in range(300)), "(line 257, column 257)", 257),
    ],
)
def test_a_file_nested_past_any_kubernetes_object_is_a_problem_not_a_crash(
    raw: bytes, said: str, line: int
) -> None:
    fleet = fleet_with(jobs__deep=raw.decode())
    assert problems_of(fleet) == [
        f"jobs/deep.yaml: nested more than 256 levels deep {said}, which no Kubernetes object "
        "is: not read"
    ]
    assert [p.stops_at for p in fleet.problems] == [line]
    assert line_of(raw, "a") is None  # `caspian validate` looks for no line in it either


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (b"[" * 300 + b"]" * 300, "(line 1, column 257)"),
        # Tabs, which YAML refuses, and brackets in strings, which count for nothing.
        (b'{"a": "[[[[",\n\t"b": ' + b"[" * 300 + b"]" * 300 + b"}", "(line 2, column 262)"),
        (b"[" * 5_000 + b"]" * 5_000, "(line 1, column 257)"),  # past Python's own reader
    ],
)
def test_json_nested_past_any_kubernetes_object_is_said_as_yaml_is(raw: bytes, said: str) -> None:
    files = {**template_files(), "jobs/deep.json": raw}
    fleet = load_fleet(files, appwrapper_schema=crd.check_appwrapper)
    assert problems_of(fleet) == [
        f"jobs/deep.json: nested more than 256 levels deep {said}, which no Kubernetes object "
        "is: not read"
    ]


def test_json_as_deep_as_is_allowed_reads_with_brackets_in_its_strings() -> None:
    raw = b'{"kind": ' + b"[" * 255 + b'"[{\\"[", "x"' + b"]" * 255 + b', "a": 1}'
    assert load_json(raw)[0]["a"] == 1


def test_a_file_nested_as_deep_as_is_allowed_reads() -> None:
    # Past the count of nesting marks that skips the check, and within the depth.
    raw = b"kind: [" + b"[" * 254 + b"]" * 254 + b"]\n" + b"a: [" + b"b, " * 300 + b"c]\n"
    assert load_all(raw)[0]["a"][-1] == "c"


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (
            b"a: 1\nname: caf\xe9\n",  # Latin-1, as an old editor saves it
            "byte #xe9 at byte 14 is not UTF-8 (invalid continuation byte): save the file as UTF-8",
        ),
        (
            b"a: 1\nname: a\x00b\n",
            "character #x0000 at character 12 is one YAML does not allow (a control "
            "character): remove it",
        ),
    ],
)
def test_a_character_yaml_cannot_read_is_one_line_with_its_place(raw: bytes, said: str) -> None:
    with pytest.raises(YAMLError) as caught:
        load_all(raw)
    assert describe(caught.value) == said
    assert error_place(caught.value, raw) == 2


LFS_POINTER = f"version https://git-lfs.example/spec/v1\noid sha256:{'4d' * 32}\nsize 1234\n"


@pytest.mark.parametrize(
    ("file", "text", "said"),
    [
        (
            "jobs/extra.yaml",
            "apiVersion: workload.codeflare.dev/v1beta2\nkind: AppWrapper\nmetadata:\n\tname: x\n",
            "not valid YAML: found character '\\t' that cannot start any token: YAML indents "
            "with spaces, not tabs",
        ),
        (
            "jobs/extra.yaml",
            "apiVersion: workload.codeflare.dev/v1beta2\nkind: AppWrapper\nmetadata:\n"
            "  name: {{ .Values.name }}\n",
            "not valid YAML: found unhashable key (line 4, column 10); it holds a template's "
            "{{ }} (line 4), read as committed: render the template (helm template, say) and "
            "commit what it gives",
        ),
        (
            "jobs/extra.yaml",
            LFS_POINTER,
            "a Git LFS pointer to a file of 1,234 bytes, not the file",
        ),
        (
            "spokes/lyon.yaml",
            LFS_POINTER,
            "a Git LFS pointer to a file of 1,234 bytes, not the file",
        ),
        (
            "jobs/extra.yaml",
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n",
            "Caspian reads each file in jobs/ as it is, not through kustomize; move it out",
        ),
    ],
)
def test_what_a_file_holds_instead_of_yaml_is_said_with_the_way_out(file, text, said) -> None:
    fleet = fleet_with(**{file.removesuffix(".yaml").replace("/", "__"): text})
    (line,) = [line for line in problems_of(fleet) if line.startswith(file)]
    assert said in line


def test_template_marks_in_a_file_that_parses_are_said_once_beside_its_problems() -> None:
    quoted = appwrapper().replace("name: extra", "name: '{{ .Values.name }}'", 1)
    lines = [line for line in problems_of(fleet_with(jobs__extra=quoted)) if "jobs/" in line]
    assert len(lines) == 2
    assert lines[0].startswith("jobs/extra.yaml: metadata.name: '{{ .Values.name }}' is not a")
    assert lines[1] == (
        "jobs/extra.yaml: it holds a template's {{ }} (line 4), read as committed: render the "
        "template (helm template, say) and commit what it gives"
    )
    # A Go template in a command is a Job's own business: no word where nothing is wrong.
    fine = appwrapper(annotations={"example.com/format": "go-template={{.status}}"})
    assert problems_of(fleet_with(jobs__extra=fine)) == []
