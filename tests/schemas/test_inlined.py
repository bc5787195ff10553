"""The Job schema with its references inlined checks exactly as the schema does."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema

from reconciler import crd

BAD_JOBS = [
    {"apiVersion": "batch/v1", "kind": "Job", "spec": {"parallelism": "two"}},
    {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"labels": {"a": 1}, "annotations": []},
        "spec": {
            "template": {
                "spec": {
                    "initContainers": {"name": "x"},
                    "containers": [None, {"name": 1, "resources": {"requests": {"cpu": []}}}],
                    "tolerations": [{"tolerationSeconds": "soon"}],
                }
            }
        },
    },
    {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {"volumes": [{}]}}}},
]


def errors(schema, doc):
    return sorted(
        (list(map(str, e.absolute_path)), e.message)
        for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)
    )


def test_inlining_changes_no_error() -> None:
    job = json.loads(
        (
            resources.files("reconciler") / "schemas" / crd.WRAPPED_FILES["batch/v1", "Job"]
        ).read_text()
    )
    flat = crd._inlined(job, job["$defs"])
    assert "$ref" not in json.dumps(flat) and "$defs" not in flat
    for doc in BAD_JOBS:
        found = errors(job, doc)
        assert found and errors(flat, doc) == found


def test_a_definition_that_reaches_itself_keeps_its_reference() -> None:
    defs = {"Tree": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Tree"}}}}
    flat = crd._inlined({"$ref": "#/$defs/Tree"}, defs)
    assert flat["$defs"] == defs
    deep_bad = {"child": {"child": {"child": 5}}}
    assert errors(flat, deep_bad) == errors({"$defs": defs, "$ref": "#/$defs/Tree"}, deep_bad)
    assert errors(flat, deep_bad)
