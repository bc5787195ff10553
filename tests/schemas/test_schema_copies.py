"""The packaged Kubernetes schemas (the batch/v1 Job, and the v1 ConfigMap and
Service an AppWrapper may wrap beside it) are the ones Kubernetes publishes,
reduced.

Each file in `reconciler/schemas/` of these is made from the schemas that the
kubernetes-validate package (version pinned in constraints.txt) ships: the
object with every definition it reaches inlined under `$defs`, and the
descriptions left out (they are three quarters of the size and no check reads
them). This test remakes them and compares; after a version bump, run
`python -m tests.schemas.test_schema_copies` to write the new copies.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

VERSION = "1.37.0"
PACKAGED = Path(__file__).parents[2] / "reconciler" / "schemas"
FILES = ("job-batch-v1.json", "configmap-v1.json", "service-v1.json")
REF = re.compile(r'"#/\$defs/([^"]+)"')


def reduced_schema(name: str, version: str = VERSION) -> dict[str, Any]:
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    source = source / f"v{version}-local"
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    # The object's file points into a sibling file; the copy holds both, so
    # the pointers become local ones.
    text = (source / name).read_text()
    text = text.replace("/api/_definitions.json#/$defs/", "#/$defs/")
    needed: set[str] = set()
    pending = REF.findall(text)
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending += REF.findall(json.dumps(definitions[name]))
    schema = json.loads(text)
    schema.pop("$id", None)  # the copy is not the published document
    schema["$defs"] = {name: definitions[name] for name in sorted(needed)}
    return _without_descriptions(schema)


def _without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_without_descriptions(v) for v in node]
    return node


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=1, sort_keys=True) + "\n"


@pytest.mark.parametrize("name", FILES)
def test_each_packaged_schema_is_the_published_one_reduced(name: str) -> None:
    assert kubernetes_validate.__version__ == VERSION, "update VERSION and the copies together"
    assert (PACKAGED / name).read_text() == render(reduced_schema(name))


if __name__ == "__main__":
    for name in FILES:
        (PACKAGED / name).write_text(render(reduced_schema(name)))
        print(f"wrote {PACKAGED / name}")
