"""OCR step of scripts/labelstudio/e2e.py (issue #23): labelloop's `ocr`
model (PP-OCRv6 det + rec) as the backend of a Label Studio project with
Label Studio's OCR template (<Labels>, <Rectangle>, <Polygon> and a
<TextArea perRegion="true"> on one <Image>), on rendered pages with exact
line truth (data/ocr-pages, synthetic pages made by scripts/setup.sh).

  1. a labelloop OCR project and a Label Studio project with the template;
     the pages uploaded into Label Studio (served at /data/upload/, fetched
     by labelloop with the token);
  2. the backend connected through the closed door (keyed URL + Basic);
     a config whose TextArea is not per-region is refused (422, saying so);
  3. a sync pre-labels the pages and writes their predictions; those are
     deleted and "Retrieve predictions" run: every page gets, per line
     labelloop stored (the same results as the sync), a
     rectangle, a textarea and a labels result sharing the region id
     m<region id>, in percent of the page with original_width/height and
     the line's score; the texts are labelloop's stored texts; line
     exact-match against the truth;
  4. annotations made through Label Studio's API (Label Studio fires the
     webhook): each page's predicted lines kept, with 10 lines' texts
     corrected in all (to the true text where the machine misread it, else
     a marked edit): labelloop records them as the pages' reviewed lines,
     the 10 corrected with exactly those texts and the rest accepted, by
     ls:<e-mail>; the same annotation saved again changes nothing.
"""
import json
import math
import os
import time

from audio_step import wait_for  # the same polling as the speech step

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PAGES = os.path.join(ROOT, "data/ocr-pages")
EMAIL = "admin@example.com"
TOL = 1e-9
CORRECTIONS = 10

CONFIG = """<View>
  <Image name="image" value="$ocr"/>
  <Labels name="label" toName="image"><Label value="Text" background="green"/><Label value="Handwriting" background="blue"/></Labels>
  <Rectangle name="bbox" toName="image" strokeWidth="3"/>
  <Polygon name="poly" toName="image" strokeWidth="3"/>
  <TextArea name="transcription" toName="image" editable="true" perRegion="true" required="true"
            maxSubmissions="1" rows="5" placeholder="Recognized Text" displayMode="region-list"/>
</View>"""


def centre_in(a, b):
    cx, cy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    return b[0] <= cx <= b[2] and b[1] <= cy <= b[3]


def true_text(box, truth):
    """The true line a box reads: centres in each other's boxes (tests/ocr.rs)."""
    for t in truth:
        if centre_in(box, t["box"]) and centre_in(t["box"], box):
            return t["text"]
    return None


def run_ocr(ls, ll, backend, args, figures, log, check, connect, retrieve):
    t0 = time.time()
    with open(os.path.join(PAGES, "lines.json")) as f:
        truth_pages = {p["id"]: p for p in json.load(f)["pages"]}
    names = sorted(k for k in truth_pages if k.endswith(".png"))[: args.n_ocr_pages]
    llp = ll.req("POST", "/v1/projects", json={"name": f"ls-ocr-{args.tag}", "model": "ocr",
                                                "threshold": 0.95, "settings": {"audit_rate": 0.0}})
    check(llp.get("task") == "lines" and llp["labels"] == ["Text"],
          f"ocr: labelloop project {llp['id']} is an OCR project (task lines, label Text)")
    lsp = ls.req("POST", "/api/projects", json={"title": f"OCR {args.tag}", "label_config": CONFIG})
    files = []
    for k, name in enumerate(names):
        with open(os.path.join(PAGES, name), "rb") as f:
            files.append((f"file{k}", (os.path.basename(name), f.read(), "image/png")))
    ls.req("POST", f"/api/projects/{lsp['id']}/import", files=files)
    tasks = ls.tasks(lsp["id"])
    check(len(tasks) == len(names) and all(t["data"].get("ocr", "").startswith("/data/upload/") for t in tasks),
          f"ocr: {len(tasks)} rendered pages uploaded into Label Studio, served from /data/upload/")
    truth = {}
    for t in tasks:
        up = t["data"]["ocr"].rsplit("/", 1)[-1]
        truth[t["id"]] = next(truth_pages[n] for n in names if up.endswith(os.path.basename(n)))
    p = {"kind": "ocr", "ll": llp["id"], "ls": lsp["id"], "tasks": tasks, "creds": ll.credentials(llp["id"])}
    connect(ls, p, backend)
    # A config whose TextArea is not per-region: refused by the backend, by name.
    bad = ll.req_raw("POST", f"/labelstudio/{llp['id']}/setup", auth=p["creds"][:2],
                     json={"project": f"{lsp['id']}.0", "hostname": ls.url, "access_token": "x",
                           "schema": CONFIG.replace(' perRegion="true"', "")})
    msg = bad.json().get("error", {}).get("message", "") if bad.headers.get("content-type", "").startswith(
        "application/json") else ""
    check(bad.status_code == 422 and "not per-region" in msg,
          f"ocr: a TextArea that is not per-region is refused ({bad.status_code}: {msg[:120]})")

    # 3. Pages are pre-labeled by a sync first: reading a page takes seconds
    # (more on a debug build on a busy machine), and "Retrieve predictions"
    # is one request Label Studio gives up on after 100 s. The sync's
    # predictions are then deleted in Label Studio and retrieved through
    # its own action, which labelloop answers from the lines it stored.
    token = ls.s.headers["Authorization"].split()[1]
    t = time.time()
    job = ll.req("POST", f"/v1/projects/{llp['id']}/labelstudio/sync",
                 json={"url": ls.url, "token": token, "ls_project": lsp["id"]})
    j = wait_for("the sync", lambda: (lambda j: j if j["state"] in ("done", "failed") else None)(
        ll.req("GET", f"/v1/jobs/{job['id']}")), secs=1200, every=0.5)
    figures["ocr_sync_secs"] = round(time.time() - t, 2)
    check(j["state"] == "done" and j["done"] == len(tasks),
          f"ocr: sync done, {j['done']}/{j['total']} pages pre-labeled and predicted ({figures['ocr_sync_secs']} s)")
    synced = {}
    for pr in ls.predictions(lsp["id"]):
        synced.setdefault(pr["task"], []).append(pr)
    check(all(len(synced.get(t["id"], [])) == 1 for t in tasks), "ocr: the sync wrote one prediction per page")
    for prs in synced.values():
        r = ls.s.delete(f"{ls.url}/api/predictions/{prs[0]['id']}/", timeout=60)
        if r.status_code not in (200, 204):
            check(False, f"ocr: deleted the sync's prediction {prs[0]['id']} ({r.status_code})")
    secs, status, text = retrieve(ls, p)
    figures["ocr_retrieve_secs"] = round(secs, 2)
    log(f"ocr: Retrieve predictions answered {status} in {secs:.2f} s: {text}")
    preds = ls.predictions(lsp["id"])
    by_task = {}
    for pr in preds:
        by_task.setdefault(pr["task"], []).append(pr)
    check(all(len(by_task.get(t["id"], [])) == 1 for t in tasks), "ocr: one prediction per page in Label Studio")
    same = all(sorted(json.dumps(r, sort_keys=True) for r in by_task[t["id"]][0]["result"]) ==
               sorted(json.dumps(r, sort_keys=True) for r in synced[t["id"]][0]["result"]) for t in tasks)
    check(same, "ocr: Retrieve predictions gave the same results as the sync (the stored lines)")
    items = {i["client_id"]: i["id"] for i in ll.items(llp["id"])}
    regions_path = lambda task_id: f"/v1/projects/{llp['id']}/items/{items[f'ls-task-{task_id}']}/regions"
    n_lines, exact, n_true, stored_of = 0, 0, 0, {}
    for t in tasks:
        pr = by_task[t["id"]][0]
        score = pr.get("score")
        if not (pr.get("model_version", "").startswith("ocr") and score is not None and math.isfinite(score)):
            check(False, f"task {t['id']}: an ocr model_version and a finite score ({pr})")
        stored = ll.req("GET", regions_path(t["id"]))
        stored_of[t["id"]] = stored
        machine = {f"m{r['id']}": r for r in stored["regions"] if r["source"] == "machine"}
        groups = {}
        for r in pr["result"]:
            groups.setdefault(r["id"], []).append(r)
        ok = len(groups) == len(machine) > 0
        w, h = stored["width"], stored["height"]
        for rid, rs in groups.items():
            m = machine.get(rid)
            kinds = sorted(r["type"] for r in rs)
            ok &= m is not None and kinds == ["labels", "rectangle", "textarea"]
            if not ok:
                break
            x0, y0, x1, y1 = m["box"]
            for r in rs:
                v = r["value"]
                ok &= (r["original_width"] == w and r["original_height"] == h and r["to_name"] == "image"
                       and abs(v["x"] * w / 100 - x0) <= TOL * w and abs(v["y"] * h / 100 - y0) <= TOL * h
                       and abs((v["x"] + v["width"]) * w / 100 - x1) <= TOL * w
                       and abs((v["y"] + v["height"]) * h / 100 - y1) <= TOL * h
                       and r.get("score") == m["score"])
            text_r = next(r for r in rs if r["type"] == "textarea")
            ok &= text_r["from_name"] == "transcription" and text_r["value"]["text"] == [m["text"]]
            ok &= next(r for r in rs if r["type"] == "labels")["value"]["labels"] == ["Text"]
            exact += true_text(m["box"], truth[t["id"]]["lines"]) == m["text"]
        if not ok:
            check(False, f"task {t['id']}: Label Studio's lines are labelloop's stored lines, a rectangle, a "
                         f"textarea and a labels result per region id ({len(groups)} regions, "
                         f"{len(machine)} machine lines): {pr['result'][:3]}")
        n_lines += len(groups)
        n_true += len(truth[t["id"]]["lines"])
    figures["ocr_pages"] = len(tasks)
    figures["ocr_lines_predicted"] = n_lines
    figures["ocr_line_exact_match"] = round(exact / max(n_true, 1), 3)
    log(f"ok: ocr: {n_lines} lines on {len(tasks)} pages are labelloop's stored lines (box within {TOL} of the "
        f"page, text, score), each a rectangle + textarea + labels sharing its region id; {exact} of {n_true} "
        f"true lines read exactly (synthetic pages)")

    # 4. Annotations through Label Studio's API: every line kept, 10 texts corrected.
    made, left = [], CORRECTIONS
    t = time.time()
    for task in tasks:
        if left == 0:
            break
        pred = by_task[task["id"]][0]["result"]
        stored = {f"m{r['id']}": r for r in stored_of[task["id"]]["regions"]}
        ids = list(dict.fromkeys(r["id"] for r in pred))
        # Misread lines first (the true text), then marked edits.
        order = sorted(ids, key=lambda i: true_text(stored[i]["box"], truth[task["id"]]["lines"]) == stored[i]["text"])
        fixes = {}
        for rid in order[: min(left, 5)]:
            want = true_text(stored[rid]["box"], truth[task["id"]]["lines"])
            machine = stored[rid]["text"]
            fixes[rid] = want if want is not None and want != machine else f"{machine} [checked]"
        left -= len(fixes)
        result = []
        for r in pred:
            r = {k: v for k, v in r.items() if k != "score"}
            if r["type"] == "textarea" and r["id"] in fixes:
                r = json.loads(json.dumps(r))
                r["value"]["text"] = [fixes[r["id"]]]
            result.append(r)
        a = ls.req("POST", f"/api/tasks/{task['id']}/annotations/", json={"result": result})
        made.append({"task": task["id"], "ann": a["id"], "fixes": fixes, "ids": ids, "result": result})
    check(sum(len(m["fixes"]) for m in made) == CORRECTIONS,
          f"ocr: {CORRECTIONS} corrected lines submitted in {len(made)} annotations through Label Studio")
    who = f"ls:{EMAIL}"
    recorded = 0
    for m in made:
        path = regions_path(m["task"])
        got = wait_for(f"task {m['task']} recorded", lambda: (lambda r: r if r["status"] == "labeled" else None)(
            ll.req("GET", path)), secs=60)
        regions = got["regions"]
        status = {f"m{r['id']}": r["status"] for r in regions if r["source"] == "machine"}
        human = [r for r in regions if r["source"] == "human"]
        want_status = {i: ("corrected" if i in m["fixes"] else "accepted") for i in m["ids"]}
        texts = {f"m{r['replaces']}": r["text"] for r in human if r["status"] == "corrected"}
        ok = (status == want_status and len(human) == len(m["fixes"]) and texts == m["fixes"]
              and all(r["annotator"] == who for r in human))
        if not ok:
            check(False, f"task {m['task']}: labelloop recorded annotation {m['ann']} as the page's lines with "
                         f"{len(m['fixes'])} corrected texts by {who}: {status} {texts} vs {m['fixes']}")
        recorded += len(texts)
    check(recorded == CORRECTIONS, f"ocr: labelloop recorded the {recorded} corrected lines with their texts, "
                                   f"every other line accepted, by {who}")
    # The same annotation saved again in Label Studio: nothing changes.
    m = made[0]
    before = ll.req("GET", regions_path(m["task"]))["regions"]
    ls.req("PATCH", f"/api/annotations/{m['ann']}/", json={"result": m["result"]})
    time.sleep(1.5)
    check(ll.req("GET", regions_path(m["task"]))["regions"] == before,
          f"ocr: task {m['task']}: the same annotation saved again changed nothing in labelloop")
    figures["ocr_corrected_lines_recorded"] = recorded
    figures["ocr_annotate_secs"] = round(time.time() - t, 2)
    figures["ocr_secs"] = round(time.time() - t0, 1)
