"""Schemathesis hooks for scripts/schemathesis.sh: test data that fits the
fixture, where the document cannot tie one part of a request to another.

`POST /v1/projects/{id}/items` takes texts for a text model's project and
images for an image model's (the document says so: a batch is all texts or
all images), and a `path` must name a file under the server's data root.
Which project takes which, and which files exist, is the server's state, so
a generated batch and a generated project id rarely fit each other. For
three positive cases in four (chosen by a hash of the body, so a run stays
reproducible), this hook sends the batch to the fixture's project of its kind
and points its `path` items at the fixture's files; the fourth keeps what was
generated and explores. Negative cases are never touched.

The fixture comes from scripts/schemathesis.sh in $LABELLOOP_FIXTURE (JSON:
`text_project`, `image_project`, `image_paths`).
"""

import json
import os
import zlib

import schemathesis
from schemathesis import GenerationMode

FIXTURE = json.loads(os.environ.get("LABELLOOP_FIXTURE", "{}"))
ITEMS = "POST /v1/projects/{id}/items"


def _positive(case) -> bool:
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode == GenerationMode.POSITIVE


@schemathesis.hook
def map_case(context, case):
    operation = context.operation
    if operation is None or operation.label != ITEMS or not FIXTURE or not _positive(case):
        return case
    body = case.body
    if not isinstance(body, list) or not body or not all(isinstance(i, dict) for i in body):
        return case
    digest = zlib.crc32(json.dumps(body, sort_keys=True, default=str).encode())
    if digest % 4 == 0:
        return case
    texts = all(i.get("text") is not None for i in body)
    project = FIXTURE["text_project"] if texts else FIXTURE["image_project"]
    case.path_parameters = {**(case.path_parameters or {}), "id": project}
    paths = FIXTURE["image_paths"]
    if not texts and paths:
        case.body = [
            {**item, "path": paths[(digest + n) % len(paths)]} if item.get("path") is not None else item
            for n, item in enumerate(body)
        ]
    return case
