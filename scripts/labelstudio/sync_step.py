"""Step 6 of scripts/labelstudio/e2e.py: bulk-sync N Fashion-MNIST tasks into
a Label Studio project through labelloop's job, then time Label Studio's own
synchronous "Retrieve predictions" on the same N tasks in a second project.

Tasks reference their images as /data/local-files/?d=fashion-mnist/test/…
(Label Studio's local-files serving, rooted at data/; labelloop reads the
same files under its --data-root), because uploading 10,000 files through
Label Studio's import takes longer than the step itself.
"""
import sys
import time


def run_sync(ls, ll, args, figures, log, check, fashion_rows, fashion_config, labels):
    n = args.sync
    rows = fashion_rows(n)
    truth = {}
    tasks = [{"data": {"image": f"/data/local-files/?d=fashion-mnist/{r['image']}", "ref": r["id"]}} for r in rows]
    ll_p = ll.req("POST", "/v1/projects", json={"name": f"ls-sync-{args.tag}", "model": "fashion-mnist-cnn"})
    synced = ls.req("POST", "/api/projects", json={"title": f"Sync {n} {args.tag}", "label_config": fashion_config()})
    sync_ls = ls.req("POST", "/api/projects", json={"title": f"Retrieve {n} {args.tag}", "label_config": fashion_config()})
    t = time.time()
    for p in (synced, sync_ls):
        ls.req("POST", f"/api/projects/{p['id']}/import", json=tasks, timeout=900)
    figures["sync_import_secs"] = round(time.time() - t, 1)
    for r in rows:
        truth[r["id"]] = r["label"]

    t = time.time()
    job = ll.req("POST", f"/v1/projects/{ll_p['id']}/labelstudio/sync",
                 json={"url": ls.url, "token": ls.s.headers["Authorization"].split()[1], "ls_project": synced["id"]})
    while True:
        j = ll.req("GET", f"/v1/jobs/{job['id']}")
        if j["state"] in ("done", "failed"):
            break
        time.sleep(0.5)
    secs = time.time() - t
    check(j["state"] == "done", f"sync job {job['id']} finished ({j['state']}, {j['done']}/{j['total']})")
    preds = ls.predictions(synced["id"])
    figures["sync_secs"] = round(secs, 1)
    figures["sync_predictions_in_ls"] = len(preds)
    check(len(preds) == n and len({p["task"] for p in preds}) == n,
          f"Label Studio holds {len(preds)} predictions for {n} tasks after the sync ({secs:.1f} s)")
    ls_tasks = {t["id"]: t["data"]["ref"] for t in ls.tasks(synced["id"])}
    correct = sum(p["result"][0]["value"]["choices"][0] == truth[ls_tasks[p["task"]]] for p in preds if p["result"])
    figures["sync_accuracy"] = round(correct / n, 3)
    # A second sync writes nothing again.
    job2 = ll.req("POST", f"/v1/projects/{ll_p['id']}/labelstudio/sync",
                  json={"url": ls.url, "token": ls.s.headers["Authorization"].split()[1], "ls_project": synced["id"]})
    while ll.req("GET", f"/v1/jobs/{job2['id']}")["state"] not in ("done", "failed"):
        time.sleep(0.5)
    check(len(ls.predictions(synced["id"])) == n, "a second sync wrote nothing twice")

    # Label Studio's synchronous action on the same tasks, in the other project.
    user, password, keyed = ll.credentials(ll_p["id"])
    ml = ls.req("POST", "/api/ml", json={"url": f"{ll.url}{keyed}", "project": sync_ls["id"],
                                         "title": "labelloop", "is_interactive": False, "auth_method": "BASIC_AUTH",
                                         "basic_auth_user": user, "basic_auth_pass": password})
    t = time.time()
    try:
        r = ls.s.post(f"{ls.url}/api/dm/actions", params={"id": "retrieve_tasks_predictions",
                                                          "project": sync_ls["id"]},
                      json={"selectedItems": {"all": True, "excluded": []}}, timeout=600)
        status = r.status_code
    except Exception as e:  # noqa: BLE001 - report whatever happened
        status = f"error {type(e).__name__}"
    rsecs = time.time() - t
    got = len(ls.predictions(sync_ls["id"]))
    figures["retrieve_secs"] = round(rsecs, 1)
    figures["retrieve_status"] = status
    figures["retrieve_predictions_in_ls"] = got
    log(f"Retrieve predictions on {n} tasks: {status} after {rsecs:.1f} s, {got} predictions stored (ml {ml['id']})")
