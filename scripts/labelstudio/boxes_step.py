"""Detection step of scripts/labelstudio/e2e.py (issue #22): labelloop's
`layout` model as the backend of a Label Studio project with a
<RectangleLabels> config, on synthetic pages (data/layout-pages, rendered by
scripts/render_layout_pages.py; not real scans).

  1. a labelloop detection project and a Label Studio project whose
     <RectangleLabels> holds the layout classes; the pages uploaded into
     Label Studio (served at /data/upload/, fetched with the token);
  2. the backend connected through the closed door (keyed URL + Basic);
  3. "Retrieve predictions": every task gets rectanglelabels in percent that
     match, within 1e-6, the pixel boxes labelloop stored as machine regions;
  4. a sync pre-annotates the same tasks from the stored boxes (result ids
     m<region id>, as Label Studio's editor then keeps them in annotations);
  5. annotations made through Label Studio's API, each with a moved box, a
     relabeled box and an added box (the first also deletes one): labelloop
     records each as the item's human regions, coordinates converted back to
     pixels, annotator ls:<e-mail>;
  6. one annotation deleted in Label Studio: its regions are withdrawn and
     the page needs review again, its machine boxes as routed.
"""
import copy
import json
import math
import os
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EMAIL = "admin@example.com"
TOL = 1e-6


def rect_config(labels):
    tags = "".join(f'<Label value="{l}"/>' for l in labels)
    return (f'<View><Image name="image" value="$image"/>'
            f'<RectangleLabels name="block" toName="image">{tags}</RectangleLabels></View>')


def pages(n):
    rows = []
    with open(os.path.join(ROOT, "data/layout-pages/pages.jsonl")) as f:
        for line in f:
            if len(rows) >= n:
                break
            rows.append(json.loads(line))
    return rows


def to_px(v, w, h):
    """Label Studio's percent rectangle as [x0, y0, x1, y1] pixels (labelloop's
    region::BoxPx::from_label_studio)."""
    return [v["x"] * w / 100.0, v["y"] * h / 100.0,
            (v["x"] + v["width"]) * w / 100.0, (v["y"] + v["height"]) * h / 100.0]


def close(a, b):
    return all(abs(x - y) <= TOL for x, y in zip(a, b))


def wait_for(what, fn, secs=30.0, every=0.1):
    deadline = time.time() + secs
    while True:
        got = fn()
        if got is not None:
            return got
        if time.time() > deadline:
            raise SystemExit(f"FAIL: timed out waiting for {what}")
        time.sleep(every)


def run_boxes(ls, ll, backend, args, figures, log, check, connect, retrieve):
    t0 = time.time()
    n = args.n_pages
    llp = ll.req("POST", "/v1/projects", json={"name": f"ls-layout-{args.tag}", "model": "layout"})
    check(llp.get("task") == "detect", f"layout: labelloop project {llp['id']} is a detection project")
    labels = llp["labels"]
    lsp = ls.req("POST", "/api/projects", json={"title": f"Layout {args.tag}", "label_config": rect_config(labels)})
    rows = pages(n)
    files = []
    for r in rows:
        with open(os.path.join(ROOT, "data/layout-pages", r["image"]), "rb") as f:
            name = os.path.basename(r["image"])
            files.append((f"file{len(files)}", (name, f.read(), "image/png" if name.endswith(".png") else "image/jpeg")))
    ls.req("POST", f"/api/projects/{lsp['id']}/import", files=files)
    tasks = ls.tasks(lsp["id"])
    check(len(tasks) == n and all(t["data"]["image"].startswith("/data/upload/") for t in tasks),
          f"layout: {len(tasks)} synthetic pages uploaded into Label Studio")
    p = {"kind": "layout", "ll": llp["id"], "ls": lsp["id"], "tasks": tasks, "creds": ll.credentials(llp["id"])}
    connect(ls, p, backend)

    # 3. Retrieve predictions, checked against the boxes labelloop stored.
    secs, status, text = retrieve(ls, p)
    figures["layout_retrieve_secs"] = round(secs, 2)
    log(f"layout: Retrieve predictions answered {status} in {secs:.2f} s: {text}")
    preds = ls.predictions(lsp["id"])
    by_task = {}
    for pr in preds:
        by_task.setdefault(pr["task"], []).append(pr)
    check(all(len(by_task.get(t["id"], [])) == 1 for t in tasks), "layout: one prediction per task in Label Studio")

    def items_done():
        items = ll.items(llp["id"])
        if len(items) == n and all(i["status"] != "pending" for i in items):
            return {i["client_id"]: i["id"] for i in items}
        return None

    item_of = wait_for("labelloop to pre-label the pages", items_done, secs=120, every=0.25)
    regions_path = lambda task_id: f"/v1/projects/{llp['id']}/items/{item_of[f'ls-task-{task_id}']}/regions"
    n_boxes = 0
    for t in tasks:
        pr = by_task[t["id"]][0]
        results = pr["result"]
        if not (pr.get("model_version") and math.isfinite(pr.get("score") if pr.get("score") is not None else math.nan)):
            check(False, f"task {t['id']}: a model_version and a finite score ({pr})")
        stored = ll.req("GET", regions_path(t["id"]))
        machine = [r for r in stored["regions"] if r["source"] == "machine"]
        w, h = stored["width"], stored["height"]
        ok = len(results) == len(machine) > 0
        unmatched = list(machine)
        for r in results:
            v = r["value"]
            ok &= r["type"] == "rectanglelabels" and r["original_width"] == w and r["original_height"] == h
            pct = [v["x"], v["y"], v["width"], v["height"]]
            best = None
            for m in unmatched:
                x0, y0, x1, y1 = m["box"]
                want = [x0 / w * 100, y0 / h * 100, (x1 - x0) / w * 100, (y1 - y0) / h * 100]
                if m["label"] == v["rectanglelabels"][0] and close(pct, want):
                    best = m
                    break
            ok &= best is not None
            if best is not None:
                unmatched.remove(best)
        if not ok:
            check(False, f"task {t['id']}: Label Studio's rectangles are labelloop's stored boxes in percent "
                         f"({len(results)} results, {len(machine)} machine regions, {w}x{h})")
        n_boxes += len(results)
    figures["layout_pages"] = n
    figures["layout_boxes_predicted"] = n_boxes
    log(f"ok: layout: {n_boxes} rectangles on {n} synthetic pages match labelloop's stored pixel boxes within {TOL}")

    # 4. A sync pre-annotates from the stored boxes, with region ids.
    t = time.time()
    token = ls.s.headers["Authorization"].split()[1]
    job = ll.req("POST", f"/v1/projects/{llp['id']}/labelstudio/sync",
                 json={"url": ls.url, "token": token, "ls_project": lsp["id"]})
    j = wait_for("the sync", lambda: (lambda j: j if j["state"] in ("done", "failed") else None)(
        ll.req("GET", f"/v1/jobs/{job['id']}")), secs=120, every=0.25)
    figures["layout_sync_secs"] = round(time.time() - t, 2)
    check(j["state"] == "done", f"layout: sync job {job['id']} done ({j['done']}/{j['total']})")
    synced = {}
    for pr in ls.predictions(lsp["id"]):
        if pr["result"] and all(str(r.get("id", "")).startswith("m") for r in pr["result"]):
            synced.setdefault(pr["task"], []).append(pr)
    check(all(len(synced.get(t["id"], [])) == 1 for t in tasks),
          "layout: the sync wrote one prediction per task, result ids m<region id>")
    # A second sync writes nothing twice, and no page gets a second machine set.
    job = ll.req("POST", f"/v1/projects/{llp['id']}/labelstudio/sync",
                 json={"url": ls.url, "token": token, "ls_project": lsp["id"]})
    wait_for("the second sync", lambda: (lambda j: j if j["state"] in ("done", "failed") else None)(
        ll.req("GET", f"/v1/jobs/{job['id']}")), secs=120, every=0.25)
    machine_now = sum(sum(r["source"] == "machine" for r in ll.req("GET", regions_path(t["id"]))["regions"])
                      for t in tasks)
    check(len(ls.predictions(lsp["id"])) == 2 * n and machine_now == n_boxes,
          f"layout: a second sync wrote no prediction and no machine box twice ({machine_now} machine boxes)")

    # 5. Annotations through Label Studio's API: a moved, a relabeled and an
    # added box each, one box deleted in the first.
    chosen = [t for t in tasks if len(synced[t["id"]][0]["result"]) >= 3][: args.box_annotations]
    check(len(chosen) == args.box_annotations, f"layout: {len(chosen)} pages with 3 boxes or more to annotate")
    made = []
    t = time.time()
    for k, task in enumerate(chosen):
        res = []
        for r in synced[task["id"]][0]["result"]:
            r = copy.deepcopy(r)
            r.pop("score", None)
            res.append(r)
        moved, relabeled = res[0], res[1]
        v = moved["value"]
        shift = 0.02 * v["width"]
        v["x"] = v["x"] + shift if v["x"] + v["width"] + shift <= 100 else v["x"] - shift
        old = relabeled["value"]["rectanglelabels"][0]
        relabeled["value"]["rectanglelabels"] = [labels[(labels.index(old) + 1) % len(labels)]]
        deleted = res.pop(2) if k == 0 else None
        added = {"id": f"add{k}", "from_name": "block", "to_name": "image", "type": "rectanglelabels",
                 "original_width": moved["original_width"], "original_height": moved["original_height"],
                 "image_rotation": 0,
                 "value": {"x": 1.5 + 0.25 * k, "y": 0.75, "width": 12.125, "height": 1.875, "rotation": 0,
                           "rectanglelabels": ["figure"]}}
        res.append(added)
        a = ls.req("POST", f"/api/tasks/{task['id']}/annotations/", json={"result": res})
        made.append({"task": task["id"], "ann": a["id"], "result": res, "moved": moved, "relabeled": relabeled,
                     "added": added, "deleted": deleted})
    recorded, human_checked = 0, 0
    who = f"ls:{EMAIL}"
    for m in made:
        path = regions_path(m["task"])
        got = wait_for(f"task {m['task']} recorded", lambda: (lambda r: r if r["status"] == "labeled" else None)(
            ll.req("GET", path)), secs=30)
        w, h = got["width"], got["height"]
        human = [r for r in got["regions"] if r["source"] == "human"]
        mach = {r["id"]: r for r in got["regions"] if r["source"] == "machine"}
        mid = lambda r: int(r["id"][1:])
        ok = len(human) == 3 and all(r["annotator"] == who for r in human)
        mv = [r for r in human if r["replaces"] == mid(m["moved"])]
        ok &= len(mv) == 1 and mv[0]["status"] == "corrected" and mv[0]["label"] == mach[mid(m["moved"])]["label"] \
            and close(mv[0]["box"], to_px(m["moved"]["value"], w, h))
        rl = [r for r in human if r["replaces"] == mid(m["relabeled"])]
        ok &= len(rl) == 1 and rl[0]["status"] == "corrected" \
            and rl[0]["label"] == m["relabeled"]["value"]["rectanglelabels"][0] \
            and close(rl[0]["box"], mach[mid(m["relabeled"])]["box"])
        ad = [r for r in human if r["status"] == "added"]
        ok &= len(ad) == 1 and ad[0]["label"] == "figure" and close(ad[0]["box"], to_px(m["added"]["value"], w, h))
        named = {mid(r) for r in m["result"] if str(r["id"]).startswith("m")}
        for rid, r in mach.items():
            want = ("corrected" if rid in (mid(m["moved"]), mid(m["relabeled"])) else
                    "accepted" if rid in named else "deleted")
            ok &= r["status"] == want and r["annotator"] == who
        if m["deleted"] is not None:
            ok &= mach[mid(m["deleted"])]["status"] == "deleted"
        check(ok, f"task {m['task']}: labelloop recorded annotation {m['ann']} as human regions "
                  f"(moved, relabeled, added{', deleted' if m['deleted'] else ''}) in pixels by {who}") \
            if not ok else None
        recorded += 1
        human_checked += len(human)
    figures["layout_annotations_recorded"] = recorded
    figures["layout_human_regions_checked"] = human_checked
    figures["layout_annotate_secs"] = round(time.time() - t, 2)
    log(f"ok: layout: {recorded} of {len(made)} box annotations recorded as human regions "
        f"({human_checked} regions, coordinates within {TOL} px, annotator {who})")

    # 6. One annotation deleted in Label Studio.
    gone = made[0]
    r = ls.s.delete(f"{ls.url}/api/annotations/{gone['ann']}/", timeout=60)
    check(r.status_code in (200, 204), f"layout: deleted annotation {gone['ann']} in Label Studio")
    path = regions_path(gone["task"])
    got = wait_for(f"task {gone['task']} back to review", lambda: (lambda r: r if r["status"] == "needs_review"
                                                                    else None)(ll.req("GET", path)), secs=30)
    human = [r for r in got["regions"] if r["source"] == "human"]
    machine = [r for r in got["regions"] if r["source"] == "machine"]
    check(not human and all(r["status"] == "review" and r["annotator"] is None for r in machine),
          f"layout: task {gone['task']} needs review again: no human regions, {len(machine)} machine boxes as routed")
    figures["layout_deleted_withdrawn"] = 1
    figures["layout_secs"] = round(time.time() - t0, 1)
