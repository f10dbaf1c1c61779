"""Speech step of scripts/labelstudio/e2e.py (issue #24): labelloop's `vad`
model (Silero VAD) as the backend of a Label Studio project with an
<Audio> + <Labels> config, on calls built from real Asterisk prompts
(data/asterisk, Digium / Allison Smith, CC-BY-SA-3.0) with silent gaps; the
true segments are each prompt's extent trimmed at -40 dB.

  1. a labelloop speech project and a Label Studio project whose <Labels>
     holds `Speech`; the calls uploaded into Label Studio as WAV files
     (served at /data/upload/, fetched by labelloop with the token);
  2. the backend connected through the closed door (keyed URL + Basic);
  3. "Retrieve predictions": every task gets one `labels` result per
     segment, start/end in seconds equal to the machine segments labelloop
     stored, result id m<region id>; segment F1 against the truth; a sync
     (run twice) writes the same results once;
  4. annotations made through Label Studio's API (Label Studio fires the
     webhook): the first segment kept, the second's end moved, the others
     dropped, one segment drawn in the trailing silence: labelloop records
     each as the recording's reviewed set (accepted, corrected, deleted,
     added), by ls:<e-mail>; one more annotation with an inverted segment
     changes nothing;
  5. one annotation deleted in Label Studio: its segments are withdrawn.
"""
import io
import json
import math
import os
import random
import time
import wave
from array import array

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SOUNDS = os.path.join(ROOT, "data/asterisk/sounds")
EMAIL = "admin@example.com"
RATE = 8000
TOL = 1e-9
CALLS = [
    ["hello", "vm-password"],
    ["goodbye", "activated", "auth-thankyou"],
    ["agent-loginok", "queue-thankyou"],
    ["auth-incorrect", "call-waiting", "conf-getpin"],
]

CONFIG = """<View>
  <Audio name="audio" value="$audio"/>
  <Labels name="vad" toName="audio"><Label value="Speech"/><Label value="Music"/></Labels>
</View>"""


def prompt(name):
    with wave.open(os.path.join(SOUNDS, f"{name}.wav")) as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2
        return array("h", w.readframes(w.getnframes()))


def extent(x):
    """First and last sample at or above 40 dB below the peak (tests/common/audio.rs)."""
    peak = max(abs(v) for v in x)
    hot = [i for i, v in enumerate(x) if abs(v) * 100 >= peak]
    return hot[0], hot[-1] + 1


def build_call(picks, seed):
    rng = random.Random(seed)
    out, truth = array("h"), []
    for name in picks:
        out.extend(array("h", [0]) * int((0.6 + 1.4 * rng.random()) * RATE))
        x = prompt(name)
        s, e = extent(x)
        truth.append(((len(out) + s) / RATE, (len(out) + e) / RATE))
        out.extend(x)
    out.extend(array("h", [0]) * int((0.6 + 1.4 * rng.random()) * RATE))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(out.tobytes())
    return buf.getvalue(), truth, len(out) / RATE


def iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def matched(truth, pred):
    pairs = sorted(((iou(t, p), i, j) for i, t in enumerate(truth) for j, p in enumerate(pred)), reverse=True)
    ti, pj, tp = set(), set(), 0
    for v, i, j in pairs:
        if v < 0.5:
            break
        if i not in ti and j not in pj:
            ti.add(i)
            pj.add(j)
            tp += 1
    return tp


def wait_for(what, fn, secs=30.0, every=0.1):
    deadline = time.time() + secs
    while True:
        got = fn()
        if got is not None:
            return got
        if time.time() > deadline:
            raise SystemExit(f"FAIL: timed out waiting for {what}")
        time.sleep(every)


def span(r):
    return (r["value"]["start"], r["value"]["end"])


def run_audio(ls, ll, backend, args, figures, log, check, connect, retrieve):
    t0 = time.time()
    llp = ll.req("POST", "/v1/projects", json={"name": f"ls-speech-{args.tag}", "model": "vad", "threshold": 0.5})
    check(llp.get("task") == "segments" and llp["labels"] == ["Speech"],
          f"audio: labelloop project {llp['id']} is a speech project")
    lsp = ls.req("POST", "/api/projects", json={"title": f"Speech {args.tag}", "label_config": CONFIG})
    files, truth_of = [], {}
    for k, picks in enumerate(CALLS):
        wav, truth, duration = build_call(picks, k + 1)
        name = f"call-{k}.wav"
        files.append((f"file{k}", (name, wav, "audio/wav")))
        truth_of[name] = (truth, duration)
    ls.req("POST", f"/api/projects/{lsp['id']}/import", files=files)
    tasks = ls.tasks(lsp["id"])
    check(len(tasks) == len(CALLS) and all(t["data"].get("audio", "").startswith("/data/upload/") for t in tasks),
          f"audio: {len(tasks)} calls uploaded into Label Studio, served from /data/upload/")
    truth = {}
    for t in tasks:
        name = t["data"]["audio"].rsplit("/", 1)[-1]
        truth[t["id"]] = next(v for k, v in truth_of.items() if name.endswith(k))
    p = {"kind": "audio", "ll": llp["id"], "ls": lsp["id"], "tasks": tasks, "creds": ll.credentials(llp["id"])}
    connect(ls, p, backend)

    # 3. Retrieve predictions, checked against the segments labelloop stored.
    secs, status, text = retrieve(ls, p)
    figures["audio_retrieve_secs"] = round(secs, 2)
    log(f"audio: Retrieve predictions answered {status} in {secs:.2f} s: {text}")
    preds = ls.predictions(lsp["id"])
    by_task = {}
    for pr in preds:
        by_task.setdefault(pr["task"], []).append(pr)
    check(all(len(by_task.get(t["id"], [])) == 1 for t in tasks), "audio: one prediction per task in Label Studio")
    items = {i["client_id"]: i["id"] for i in ll.items(llp["id"])}
    regions_path = lambda task_id: f"/v1/projects/{llp['id']}/items/{items[f'ls-task-{task_id}']}/regions"
    n_segments, tp, n_true = 0, 0, 0
    for t in tasks:
        pr = by_task[t["id"]][0]
        score = pr.get("score")
        if not (pr.get("model_version", "").startswith("vad@") and score is not None and math.isfinite(score)):
            check(False, f"task {t['id']}: a vad@ model_version and a finite score ({pr})")
        stored = ll.req("GET", regions_path(t["id"]))
        machine = {f"m{r['id']}": r for r in stored["regions"] if r["source"] == "machine"}
        results = pr["result"]
        ok = len(results) == len(machine) > 0
        for r in results:
            m = machine.get(r.get("id"))
            ok &= (m is not None and r["type"] == "labels" and r["from_name"] == "vad" and r["to_name"] == "audio"
                   and r["value"]["labels"] == ["Speech"] and r["value"].get("channel") == 0
                   and abs(r["value"]["start"] - m["segment"][0]) <= TOL
                   and abs(r["value"]["end"] - m["segment"][1]) <= TOL
                   and abs(r["value"]["start"] - r["value"]["end"]) > 0)
        if not ok:
            check(False, f"task {t['id']}: Label Studio's segments are labelloop's stored machine segments "
                         f"({len(results)} results, {len(machine)} machine regions): {results}")
        n_segments += len(results)
        tp += matched(truth[t["id"]][0], [span(r) for r in results])
        n_true += len(truth[t["id"]][0])
    f1 = 2 * tp / max(n_segments + n_true, 1)
    figures["audio_calls"] = len(tasks)
    figures["audio_segments_predicted"] = n_segments
    figures["audio_segment_f1"] = round(f1, 3)
    log(f"ok: audio: {n_segments} segments on {len(tasks)} calls are labelloop's stored segments within {TOL} s; "
        f"segment F1 {f1:.3f} against the prompts' extents ({n_true} true)")
    check(f1 >= 0.9, f"audio: segment F1 {f1:.3f} >= 0.9 on clean calls")

    # A sync writes the same segments from the store (a second prediction
    # per task), and a second sync writes nothing more.
    token = ls.s.headers["Authorization"].split()[1]
    for run in (1, 2):
        job = ll.req("POST", f"/v1/projects/{llp['id']}/labelstudio/sync",
                     json={"url": ls.url, "token": token, "ls_project": lsp["id"]})
        j = wait_for("the sync", lambda: (lambda j: j if j["state"] in ("done", "failed") else None)(
            ll.req("GET", f"/v1/jobs/{job['id']}")), secs=120, every=0.25)
        check(j["state"] == "done", f"audio: sync {run} done ({j['done']}/{j['total']})")
    synced = {}
    for pr in ls.predictions(lsp["id"]):
        synced.setdefault(pr["task"], []).append(pr)
    same = all(len(synced[t["id"]]) == 2 and
               sorted(json.dumps(r, sort_keys=True) for r in synced[t["id"]][0]["result"]) ==
               sorted(json.dumps(r, sort_keys=True) for r in synced[t["id"]][1]["result"]) for t in tasks)
    check(same, "audio: the sync wrote each task's stored segments once, the same results as /predict")

    # 4. Annotations through Label Studio's API: kept, moved, dropped, drawn.
    made = []
    t = time.time()
    for task in tasks:
        pred = by_task[task["id"]][0]["result"]
        if len(pred) < 2:
            continue
        kept = {k: v for k, v in pred[0].items() if k != "score"}
        moved = json.loads(json.dumps({k: v for k, v in pred[1].items() if k != "score"}))
        moved["value"]["end"] = moved["value"]["end"] + 0.25
        # Drawn in the trailing silence (at least 0.6 s long), past every
        # predicted segment, so it overlaps none.
        gap_start = max(r["value"]["end"] for r in pred) + 0.15
        gap_end = min(gap_start + 0.25, truth[task["id"]][1] - 0.01)
        added = {"id": f"drawn{task['id']}", "from_name": "vad", "to_name": "audio", "type": "labels",
                 "original_length": truth[task["id"]][1],
                 "value": {"start": gap_start, "end": gap_end, "channel": 0, "labels": ["Speech"]}}
        a = ls.req("POST", f"/api/tasks/{task['id']}/annotations/", json={"result": [kept, moved, added]})
        made.append({"task": task["id"], "ann": a["id"], "pred": pred, "moved": moved, "added": added})
    check(len(made) >= 2, f"audio: {len(made)} segment annotations made in Label Studio")
    who = f"ls:{EMAIL}"
    recorded = 0
    for m in made:
        path = regions_path(m["task"])
        got = wait_for(f"task {m['task']} recorded", lambda: (lambda r: r if r["status"] == "labeled" else None)(
            ll.req("GET", path)), secs=30)
        regions = got["regions"]
        mid = lambda r: int(r["id"][1:])
        status = {r["id"]: r["status"] for r in regions if r["source"] == "machine"}
        want = {mid(r): ("accepted" if k == 0 else "corrected" if k == 1 else "deleted") for k, r in enumerate(m["pred"])}
        human = [r for r in regions if r["source"] == "human"]
        corrected = [r for r in human if r["status"] == "corrected"]
        added = [r for r in human if r["status"] == "added"]
        ok = (status == want and len(human) == 2 and all(r["annotator"] == who for r in human)
              and len(corrected) == 1 and corrected[0]["replaces"] == mid(m["pred"][1])
              and abs(corrected[0]["segment"][1] - m["moved"]["value"]["end"]) <= TOL
              and len(added) == 1 and abs(added[0]["segment"][0] - m["added"]["value"]["start"]) <= TOL
              and abs(added[0]["segment"][1] - m["added"]["value"]["end"]) <= TOL)
        check(ok, f"task {m['task']}: labelloop recorded annotation {m['ann']} as the reviewed segments "
                  f"(kept, moved, dropped, drawn) by {who}: {regions}") if not ok else None
        recorded += 1
    # A malformed segment (end before start) in a second annotation: Label
    # Studio stores it, labelloop refuses the webhook by name (422, which
    # Label Studio ignores) and writes nothing of it.
    m = made[-1]
    path = regions_path(m["task"])
    before = ll.req("GET", path)["regions"]
    bad = json.loads(json.dumps(m["added"]))
    bad["id"] = "inverted"
    bad["value"]["start"], bad["value"]["end"] = bad["value"]["end"], bad["value"]["start"]
    kept = {k: v for k, v in m["pred"][0].items() if k != "score"}
    ls.req("POST", f"/api/tasks/{m['task']}/annotations/", json={"result": [kept, bad]})
    time.sleep(1.5)
    check(ll.req("GET", path)["regions"] == before,
          f"audio: task {m['task']}: an annotation with an inverted segment changed nothing in labelloop")
    figures["audio_annotations_recorded"] = recorded
    figures["audio_annotate_secs"] = round(time.time() - t, 2)
    log(f"ok: audio: {recorded} of {len(made)} segment annotations recorded as the recordings' reviewed "
        f"segments (accepted, corrected, deleted, added) by {who}")

    # 5. One annotation deleted in Label Studio: its segments are withdrawn,
    # the machine segments routed again with no reviewer.
    gone = made[0]
    r = ls.s.delete(f"{ls.url}/api/annotations/{gone['ann']}/", timeout=60)
    check(r.status_code in (200, 204), f"audio: deleted annotation {gone['ann']} in Label Studio")
    path = regions_path(gone["task"])
    got = wait_for(f"task {gone['task']} withdrawn", lambda: (lambda r: r if r["status"] != "labeled" else None)(
        ll.req("GET", path)), secs=30)
    regions = got["regions"]
    check(all(r["source"] == "machine" and r["annotator"] is None and r["status"] in ("accepted", "review")
              for r in regions) and len(regions) == len(gone["pred"]),
          f"audio: task {gone['task']} is {got['status']} again: no human segments, "
          f"{len(regions)} machine segments routed again")
    figures["audio_deleted_withdrawn"] = 1
    figures["audio_secs"] = round(time.time() - t0, 1)
