"""End-to-end check of labelloop as a Label Studio ML backend, against a real
Label Studio (see scripts/e2e-labelstudio.sh, which starts both).

Steps (issue #11):
  1. two Label Studio projects: SMS spam text (>= 200 tasks) and Fashion-MNIST
     images uploaded into Label Studio (>= 200 tasks, served at /data/upload/);
  2. labelloop connected to each as an ML backend; GET /api/ml says connected;
  3. "Retrieve predictions" on all tasks; GET /api/predictions: one prediction
     per task, a choice in the label set, a finite score, a model_version;
     accuracy against the true labels (which Label Studio never sees);
  4. >= 20 annotations in Label Studio, each recorded by labelloop with the
     right label, task id and annotator e-mail; an update and a deletion;
  5. training triggered from Label Studio; a new version in /versions, and
     re-predicting gives it;
  (layout) a detection project on synthetic pages with <RectangleLabels>:
     predictions, box annotations and a deletion (boxes_step.py);
  (audio) a speech project on calls built from real prompts with <Audio> +
     <Labels>: segment predictions and segment annotations (audio_step.py);
  (ocr) an OCR project on rendered pages with Label Studio's OCR template
     (<TextArea perRegion="true"> + <Rectangle>): line predictions and 10
     corrected lines recorded (ocr_step.py);
  6. (--sync N) a bulk sync of N Fashion-MNIST tasks, then the synchronous
     "Retrieve predictions" on the same N tasks, both timed.

With --record DIR, a recording proxy sits between Label Studio and labelloop
and writes the first body of each endpoint / webhook action to DIR (the
fixtures of tests/labelstudio_protocol.rs).

Prints one JSON object of figures on the last line.
"""
import argparse
import base64
import json
import math
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot"]
figures = {}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    log(f"ok: {what}")


class LS:
    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Token {token}"

    def req(self, method, path, **kw):
        r = self.s.request(method, self.url + path, timeout=kw.pop("timeout", 600), **kw)
        if r.status_code >= 400:
            raise SystemExit(f"FAIL: Label Studio {method} {path}: {r.status_code} {r.text[:500]}")
        return r.json() if r.content else None

    def predictions(self, project):
        out, page = [], 1
        while True:
            r = self.s.get(f"{self.url}/api/predictions/", params={"project": project, "page": page,
                                                                   "page_size": 1000}, timeout=120)
            if r.status_code == 404:
                break
            body = r.json()
            rows = body if isinstance(body, list) else body.get("results", [])
            out.extend(rows)
            if isinstance(body, list) or not body.get("next"):
                break
            page += 1
        return out

    def tasks(self, project):
        out, page = [], 1
        while True:
            r = self.s.get(f"{self.url}/api/tasks/", params={"project": project, "page": page,
                                                             "page_size": 1000}, timeout=120)
            if r.status_code == 404:
                break
            body = r.json()
            rows = body.get("tasks", [])
            out.extend(rows)
            if len(rows) < 1000:
                break
            page += 1
        return out


class LL:
    """labelloop with token auth on: /v1 with the admin token, a project's
    /labelstudio routes with its Basic credentials (`auth=`)."""

    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.token = token

    def credentials(self, project):
        c = self.req("POST", f"/v1/projects/{project}/labelstudio/credentials")
        return (c["username"], c["password"], c["keyed_backend_path"])

    def req_raw(self, method, path, auth=None, **kw):
        """The answer as it is, whatever its status."""
        return requests.request(method, self.url + path, timeout=600, auth=auth, **kw)

    def req(self, method, path, auth=None, **kw):
        if auth is None:
            kw.setdefault("headers", {})["Authorization"] = f"Bearer {self.token}"
        r = requests.request(method, self.url + path, timeout=600, auth=auth, **kw)
        if r.status_code >= 400:
            raise SystemExit(f"FAIL: labelloop {method} {path}: {r.status_code} {r.text[:500]}")
        return r.json()

    def items(self, project):
        out, cursor = [], None
        while True:
            params = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            body = self.req("GET", f"/v1/projects/{project}/items", params=params)
            rows = body["items"]
            out.extend(rows)
            cursor = body.get("next_cursor")
            if not cursor or not rows:
                return out


# ---- the recording proxy --------------------------------------------------

def start_proxy(target, record_dir):
    os.makedirs(record_dir, exist_ok=True)
    seen = set()

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _forward(self, method):
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(n) if n else b""
            name = self.path.rstrip("/").split("/")[-1] or "root"
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            if method == "POST" and isinstance(parsed, dict):
                key = name
                if name == "webhook":
                    key = f"webhook_{parsed.get('action', 'unknown')}"
                elif name == "predict":
                    key = f"predict_{min(len(parsed.get('tasks', [])), 2)}"
                if key not in seen:
                    seen.add(key)
                    with open(os.path.join(record_dir, f"{key}.json"), "w") as f:
                        json.dump(parsed, f, indent=1, sort_keys=True)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            r = requests.request(method, target + self.path, data=body, headers=headers, timeout=600)
            self.send_response(r.status_code)
            for k, v in r.headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            self.send_header("content-length", str(len(r.content)))
            self.end_headers()
            self.wfile.write(r.content)

        def do_GET(self):
            self._forward("GET")

        def do_POST(self):
            self._forward("POST")

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}"


# ---- steps -----------------------------------------------------------------

SMS_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
  <Choices name="label" toName="text" choice="single">
    <Choice value="Ham" alias="ham"/><Choice value="Spam" predicted_values="spam,junk"/>
  </Choices>
</View>"""


def fashion_config():
    choices = "".join(f'<Choice value="{l}"/>' for l in FASHION)
    return f'<View><Image name="image" value="$image"/><Choices name="label" toName="image">{choices}</Choices></View>'


def sms_rows(n):
    rows = []
    with open(os.path.join(ROOT, "data/sms-spam/sms.jsonl")) as f:
        for line in f:
            rows.append(json.loads(line))
    # Keep both classes: all spam in the first 3n rows and the ham among them.
    spam = [r for r in rows if r["label"] == "spam"][: n // 4]
    ham = [r for r in rows if r["label"] == "ham"][: n - len(spam)]
    mixed = sorted(spam + ham, key=lambda r: r["id"])
    return mixed


def fashion_rows(n, offset=0):
    rows = []
    with open(os.path.join(ROOT, "data/fashion-mnist/test.jsonl")) as f:
        for i, line in enumerate(f):
            if i < offset:
                continue
            if len(rows) >= n:
                break
            rows.append(json.loads(line))
    return rows


def make_projects(ls, ll, n_text, n_image, tag):
    sms_ll = ll.req("POST", "/v1/projects", json={
        "name": f"ls-sms-{tag}", "model": "minilm-l6", "labels": ["ham", "spam"],
        "settings": {"label_descriptions": {"ham": "an ordinary personal text message between friends",
                                            "spam": "an advertisement: win a free prize, call now, claim cash"}}})
    img_ll = ll.req("POST", "/v1/projects", json={"name": f"ls-fashion-{tag}", "model": "fashion-mnist-cnn"})
    sms_ls = ls.req("POST", "/api/projects", json={"title": f"SMS spam {tag}", "label_config": SMS_CONFIG})
    img_ls = ls.req("POST", "/api/projects", json={"title": f"Fashion {tag}", "label_config": fashion_config()})
    sms = sms_rows(n_text)
    t = time.time()
    ls.req("POST", f"/api/projects/{sms_ls['id']}/import",
           json=[{"data": {"text": r["text"], "ref": r["id"]}} for r in sms])
    imgs = fashion_rows(n_image)
    files = []
    for r in imgs:
        with open(os.path.join(ROOT, "data/fashion-mnist", r["image"]), "rb") as f:
            files.append((f"file{len(files)}", (f"{r['id']}.png", f.read(), "image/png")))
    for i in range(0, len(files), 100):
        ls.req("POST", f"/api/projects/{img_ls['id']}/import", files=files[i:i + 100])
    figures["import_secs"] = round(time.time() - t, 2)
    truth_sms = {r["id"]: r["label"] for r in sms}
    truth_img = {r["id"]: r["label"] for r in imgs}
    sms_tasks = ls.tasks(sms_ls["id"])
    img_tasks = ls.tasks(img_ls["id"])
    check(len(sms_tasks) == len(sms) and len(sms) >= 200, f"{len(sms_tasks)} SMS tasks in Label Studio")
    check(len(img_tasks) == len(imgs) and len(imgs) >= 200, f"{len(img_tasks)} uploaded image tasks")
    check(all(t["data"]["image"].startswith("/data/upload/") for t in img_tasks), "images are served from /data/upload/")
    truth = {}
    for t in sms_tasks:
        truth[t["id"]] = truth_sms[t["data"]["ref"]]
    for t in img_tasks:
        name = t["data"]["image"].rsplit("/", 1)[-1]
        ref = next(k for k in truth_img if name.endswith(f"{k}.png"))
        truth[t["id"]] = truth_img[ref]
    return [
        {"kind": "sms", "ll": sms_ll["id"], "ls": sms_ls["id"], "tasks": sms_tasks, "labels": ["ham", "spam"],
         "from": "label", "to": "text", "ls_choice": {"ham": "Ham", "spam": "Spam"},
         "creds": ll.credentials(sms_ll["id"])},
        {"kind": "fashion", "ll": img_ll["id"], "ls": img_ls["id"], "tasks": img_tasks, "labels": FASHION,
         "from": "label", "to": "image", "ls_choice": {l: l for l in FASHION},
         "creds": ll.credentials(img_ll["id"])},
    ], truth


def connect(ls, p, backend_base):
    # The door is closed to callers without the project's credentials.
    anon = requests.get(f"{backend_base}/labelstudio/{p['ll']}/health", timeout=10)
    check(anon.status_code == 401, f"{p['kind']}: the backend refuses a caller without credentials ({anon.status_code})")
    # The keyed URL authenticates every call Label Studio makes, the webhook
    # it creates on connect included (that one sends no Basic auth). Basic
    # auth is set too, as a user following the settings page would.
    user, password, keyed = p["creds"]
    url = f"{backend_base}{keyed}"
    ml = ls.req("POST", "/api/ml", json={"url": url, "project": p["ls"], "title": "labelloop",
                                         "is_interactive": False, "auth_method": "BASIC_AUTH",
                                         "basic_auth_user": user, "basic_auth_pass": password})
    p["ml"] = ml["id"]
    state = ls.req("GET", f"/api/ml?project={p['ls']}")
    mine = [m for m in state if m["id"] == ml["id"]]
    check(mine and mine[0]["state"] not in ("ER", "DI"),
          f"{p['kind']}: Label Studio says the backend is connected (state {mine[0]['state'] if mine else None})")


def retrieve(ls, p, task_ids=None):
    sel = {"all": True, "excluded": []} if task_ids is None else {"all": False, "included": task_ids}
    t = time.time()
    r = ls.s.post(f"{ls.url}/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": p["ls"]},
                  json={"selectedItems": sel}, timeout=900)
    return time.time() - t, r.status_code, r.text[:300]


def check_predictions(ls, p, truth, label):
    preds = ls.predictions(p["ls"])
    by_task = {}
    for pr in preds:
        by_task.setdefault(pr["task"], []).append(pr)
    ids = [t["id"] for t in p["tasks"]]
    check(all(len(by_task.get(i, [])) >= 1 for i in ids), f"{p['kind']}: every task has a prediction")
    allowed = set(p["ls_choice"].values())
    correct, versions = 0, set()
    back = {v: k for k, v in p["ls_choice"].items()}
    latest = {}
    for i in ids:
        pr = max(by_task[i], key=lambda x: x["id"])
        latest[i] = pr
        choices = pr["result"][0]["value"]["choices"] if pr["result"] else []
        check(len(choices) == 1 and choices[0] in allowed, f"task {i}: choice {choices} in the label set") if not choices or choices[0] not in allowed else None
        check(pr.get("score") is not None and math.isfinite(pr["score"]), f"task {i}: finite score") if pr.get("score") is None else None
        check(bool(pr.get("model_version")), f"task {i}: model_version") if not pr.get("model_version") else None
        versions.add(pr["model_version"])
        correct += back[choices[0]] == truth[i]
    acc = correct / len(ids)
    log(f"{p['kind']}: {len(ids)} tasks, {len(preds)} predictions, versions {sorted(versions)}, accuracy {acc:.3f}")
    figures[f"{label}_accuracy"] = round(acc, 3)
    return latest, versions


def annotate(ls, ll, p, truth, n):
    tasks = p["tasks"][:n]
    made = []
    for t in tasks:
        label = truth[t["id"]]
        a = ls.req("POST", f"/api/tasks/{t['id']}/annotations/", json={
            "result": [{"from_name": p["from"], "to_name": p["to"], "type": "choices",
                        "value": {"choices": [p["ls_choice"][label]]}}]})
        made.append((t["id"], a["id"], label))
    time.sleep(1.0)
    items = {i["client_id"]: i for i in ll.items(p["ll"])}
    for task_id, _, label in made:
        it = items.get(f"ls-task-{task_id}")
        check(it is not None and any(a["label"] == label and a["annotator"] == "ls:admin@example.com"
                                     for a in it["annotations"]) and it["final_label"] == label,
              f"{p['kind']}: labelloop recorded task {task_id} as {label!r} by admin@example.com") \
            if it is None or it["final_label"] != label else None
    log(f"ok: {p['kind']}: labelloop recorded all {len(made)} annotations with label, task id and e-mail")
    return made


def update_and_delete(ls, ll, p, made):
    task_id, ann_id, label = made[0]
    other = next(l for l in p["labels"] if l != label)
    ls.req("PATCH", f"/api/annotations/{ann_id}/", json={
        "result": [{"from_name": p["from"], "to_name": p["to"], "type": "choices",
                    "value": {"choices": [p["ls_choice"][other]]}}]})
    time.sleep(0.5)
    it = {i["client_id"]: i for i in ll.items(p["ll"])}[f"ls-task-{task_id}"]
    check(it["final_label"] == other and len(it["annotations"]) == 1, f"update: task {task_id} is now {other!r}")
    task_id2, ann_id2, _ = made[1]
    r = ls.s.delete(f"{ls.url}/api/annotations/{ann_id2}/", timeout=60)
    check(r.status_code in (200, 204), "deleted an annotation in Label Studio")
    time.sleep(0.5)
    it = {i["client_id"]: i for i in ll.items(p["ll"])}[f"ls-task-{task_id2}"]
    check(not it["annotations"] and it["final_label"] is None, f"delete: task {task_id2} has no label in labelloop")
    # Put the first one back to its true label for training.
    ls.req("PATCH", f"/api/annotations/{ann_id}/", json={
        "result": [{"from_name": p["from"], "to_name": p["to"], "type": "choices",
                    "value": {"choices": [p["ls_choice"][label]]}}]})


def train(ls, ll, p, before):
    t = time.time()
    ls.req("POST", f"/api/ml/{p['ml']}/train", json={})
    deadline = time.time() + 120
    cur = before
    while time.time() < deadline:
        cur = ll.req("GET", f"/labelstudio/{p['ll']}/versions", auth=p["creds"][:2])["current"]
        if cur != before:
            break
        time.sleep(0.2)
    figures[f"{p['kind']}_train_secs"] = round(time.time() - t, 2)
    check(cur != before and "+head" in cur, f"{p['kind']}: new version {cur} after START_TRAINING (was {before})")
    return cur


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ls", required=True)
    ap.add_argument("--ls-token", required=True)
    ap.add_argument("--ll", required=True)
    ap.add_argument("--ll-token", required=True, help="an admin token of the labelloop server")
    ap.add_argument("--n-text", type=int, default=200)
    ap.add_argument("--n-image", type=int, default=200)
    ap.add_argument("--annotations", type=int, default=12, help="per project")
    ap.add_argument("--record", help="write the bodies Label Studio sends to this folder")
    ap.add_argument("--sync", type=int, default=0, help="step 6: bulk-sync this many Fashion tasks")
    ap.add_argument("--tag", default=str(int(time.time())))
    ap.add_argument("--kinds", default="sms,fashion,layout,audio,ocr",
                    help="which projects to run: sms and fashion (steps 1-5), layout (boxes_step.py), "
                         "audio (audio_step.py), ocr (ocr_step.py)")
    ap.add_argument("--n-ocr-pages", type=int, default=4, help="rendered pages in the OCR project")
    ap.add_argument("--n-pages", type=int, default=12, help="synthetic layout pages in the detection project")
    ap.add_argument("--box-annotations", type=int, default=10, help="box annotations in the detection project")
    args = ap.parse_args()
    ls, ll = LS(args.ls, args.ls_token), LL(args.ll, args.ll_token)
    backend = start_proxy(args.ll, args.record) if args.record else args.ll
    kinds = args.kinds.split(",")
    if any(k in kinds for k in ("sms", "fashion")):
        steps_1_5(ls, ll, backend, args)
    if "layout" in kinds:
        from boxes_step import run_boxes  # noqa: E402  (the detection step lives beside this file)
        run_boxes(ls, ll, backend, args, figures, log, check, connect, retrieve)
    if "audio" in kinds:
        from audio_step import run_audio  # noqa: E402  (the speech step lives beside this file)
        run_audio(ls, ll, backend, args, figures, log, check, connect, retrieve)
    if "ocr" in kinds:
        from ocr_step import run_ocr  # noqa: E402  (the OCR step lives beside this file)
        run_ocr(ls, ll, backend, args, figures, log, check, connect, retrieve)
    if args.sync:
        from sync_step import run_sync  # noqa: E402  (step 6 lives beside this file)
        run_sync(ls, ll, args, figures, log, check, fashion_rows, fashion_config, FASHION)
    print(json.dumps(figures))


def steps_1_5(ls, ll, backend, args):
    t0 = time.time()
    projects, truth = make_projects(ls, ll, args.n_text, args.n_image, args.tag)
    projects = [p for p in projects if p["kind"] in args.kinds.split(",")]
    for p in projects:
        connect(ls, p, backend)
    for p in projects:
        secs, status, text = retrieve(ls, p)
        figures[f"{p['kind']}_retrieve_secs"] = round(secs, 2)
        log(f"{p['kind']}: Retrieve predictions answered {status} in {secs:.2f} s: {text}")
        p["latest"], p["versions"] = check_predictions(ls, p, truth, p["kind"])
    made = []
    for p in projects:
        made += annotate(ls, ll, p, truth, args.annotations)
    figures["annotations_recorded"] = len(made)
    check(len(made) >= 20 or len(projects) < 2, f"{len(made)} annotations recorded")
    update_and_delete(ls, ll, projects[-1], [m for m in made if any(m[0] == t["id"] for t in projects[-1]["tasks"])])
    for p in projects:
        before = ll.req("GET", f"/labelstudio/{p['ll']}/versions", auth=p["creds"][:2])["current"]
        new = train(ls, ll, p, before)
        # Re-predict one task through the backend as Label Studio would.
        task = p["tasks"][-1]
        r = ll.req("POST", f"/labelstudio/{p['ll']}/predict", auth=p["creds"][:2],
                   json={"tasks": [task], "project": f"{p['ls']}.0"})
        got = r["results"][0]["model_version"]
        # Training also recalibrates, which adds +cal<N> a moment later.
        check(got.startswith(new), f"{p['kind']}: re-predicting gives {got} (from {new})")
        new = got
        secs, status, _ = retrieve(ls, p)
        preds = ls.predictions(p["ls"])
        fresh = [x for x in preds if x["model_version"] not in p["versions"] and "+head" in x["model_version"]]
        figures[f"{p['kind']}_repredicted_in_ls"] = len(fresh)
        log(f"{p['kind']}: after training, Label Studio holds {len(fresh)} predictions of {new} ({secs:.1f} s)")
        if fresh:
            correct = sum(({v: k for k, v in p['ls_choice'].items()}[x["result"][0]["value"]["choices"][0]]
                           == truth[x["task"]]) for x in fresh if x["result"])
            figures[f"{p['kind']}_accuracy_after_training"] = round(correct / max(len(fresh), 1), 3)
    figures["steps_1_5_secs"] = round(time.time() - t0, 1)


if __name__ == "__main__":
    main()
