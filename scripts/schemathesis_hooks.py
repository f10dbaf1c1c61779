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

`PUT /v1/projects/{id}/items/{item}/regions` takes boxes inside the item's
image, with x0 < x1 and y0 < y1, and an `id` only if it names one of the
item's regions: the image's size and the item's regions are its state. For
three positive cases in four that reach a fixture page, each box is fitted
into the page (its generated numbers folded into the image, corners put in
order) and sent as a new box (no `id`).

The fixture comes from scripts/schemathesis.sh in $LABELLOOP_FIXTURE (JSON:
`text_project`, `image_project`, `image_paths`, and `detection_project`
with `pages`, each page's id to its `[width, height]`).
"""

import json
import os
import zlib

import schemathesis
from schemathesis import GenerationMode

FIXTURE = json.loads(os.environ.get("LABELLOOP_FIXTURE", "{}"))
ITEMS = "POST /v1/projects/{id}/items"
REGIONS = "PUT /v1/projects/{id}/items/{item}/regions"


def _positive(case) -> bool:
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode == GenerationMode.POSITIVE


def _digest(body) -> int:
    return zlib.crc32(json.dumps(body, sort_keys=True, default=str).encode())


def _span(a, b, side: int) -> tuple:
    """Two numbers folded into [0, side], in order, at least 1 apart."""
    lo, hi = sorted(abs(float(v)) % side if abs(float(v)) != float("inf") else 0.0 for v in (a, b))
    if hi - lo < 1:
        lo, hi = (lo, lo + 1) if lo + 1 <= side else (side - 1, side)
    return lo, hi


def _fit_regions(case):
    pages = {int(k): v for k, v in FIXTURE.get("pages", {}).items()}
    params = case.path_parameters or {}
    try:
        project, item = int(params.get("id")), int(params.get("item"))
    except (TypeError, ValueError):
        return case
    body = case.body
    if project != FIXTURE.get("detection_project") or item not in pages or not isinstance(body, dict):
        return case
    regions = body.get("regions")
    if not isinstance(regions, list) or not all(isinstance(r, dict) for r in regions):
        return case
    if _digest(body) % 4 == 0:
        return case
    width, height = pages[item]
    fitted = []
    for region in regions:
        corners = region.get("box")
        if not (isinstance(corners, list) and len(corners) == 4):
            return case
        x0, x1 = _span(corners[0], corners[2], width)
        y0, y1 = _span(corners[1], corners[3], height)
        fitted.append({"label": region.get("label"), "box": [x0, y0, x1, y1]})
    case.body = {**body, "regions": fitted}
    return case


@schemathesis.hook
def map_case(context, case):
    operation = context.operation
    if operation is None or not FIXTURE or not _positive(case):
        return case
    if operation.label == REGIONS:
        return _fit_regions(case)
    if operation.label != ITEMS:
        return case
    body = case.body
    if not isinstance(body, list) or not body or not all(isinstance(i, dict) for i in body):
        return case
    digest = _digest(body)
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
