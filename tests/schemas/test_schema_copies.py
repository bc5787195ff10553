"""The packaged batch/v1 Job schema is the one Kubernetes publishes, reduced.

`reconciler/schemas/job-batch-v1.json` is made from the schemas that the
kubernetes-validate package (version pinned in constraints.txt) ships: the Job
object with every definition it reaches inlined under `$defs`, and the
descriptions left out (they are three quarters of the size and no check reads
them). This test remakes it and compares; after a version bump, run
`python -m tests.schemas.test_job_schema_copy` to write the new copy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate

VERSION = "1.37.0"
COPY = Path(__file__).parents[2] / "reconciler" / "schemas" / "job-batch-v1.json"
REF = re.compile(r'"#/\$defs/([^"]+)"')


def reduced_job_schema(version: str = VERSION) -> dict[str, Any]:
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    source = source / f"v{version}-local"
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    # The Job file points into a sibling file; the copy holds both, so the
    # pointers become local ones.
    text = (source / "job-batch-v1.json").read_text()
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


def test_the_packaged_job_schema_is_the_published_one_reduced() -> None:
    assert kubernetes_validate.__version__ == VERSION, "update VERSION and the copy together"
    assert COPY.read_text() == render(reduced_job_schema())


if __name__ == "__main__":
    COPY.write_text(render(reduced_job_schema()))
    print(f"wrote {COPY}")
