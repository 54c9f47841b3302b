"""The UI's benchmark (not a test): how long the workflow list takes to show 2,000 workflows and
a workflow page to draw a 5,000-node graph, and the page's JavaScript heap then, in Debian's
headless Chromium. Run from the repository root after a release build:

    cargo build --release -p onyx && python3 tests/ui/bench_ui.py

Figures go to docs/benchmarks.md with the machine. Neither workflow runs a pod: the list's are
held by a suspend node, the graph's 5,000 steps are zero-length suspend nodes, so what is
measured is the server's answer and the page, not process start-up."""

import json
import os
import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("ONYX_BIN", os.path.join(os.getcwd(), "target", "release", "onyx"))
from test_ui import CHROMIUM, api, signed_in_context, start_server  # noqa: E402

LIST = int(os.environ.get("BENCH_LIST", "2000"))
NODES = int(os.environ.get("BENCH_NODES", "5000"))


def post(base, path, body):
    return api(base, "POST", path, body)


def get(base, path):
    return api(base, "GET", path)


def heap(page):
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    cdp.send("HeapProfiler.collectGarbage")
    after = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return metrics["JSHeapUsedSize"] / 2**20, after["JSHeapUsedSize"] / 2**20, metrics["Nodes"]


def main():
    proc, base = start_server()
    params = {"parameters": [{"name": "ticket_id", "value": "BENCH"}]}
    t0 = time.time()
    for i in range(LIST):
        post(base, "/api/v1/workflows/default", {"workflow": {
            "metadata": {"name": f"bench-{i:05d}"},
            "spec": {"entrypoint": "hold", "arguments": params,
                     "templates": [{"name": "hold", "suspend": {}}]}}})
    print(f"submitted {LIST} workflows in {time.time() - t0:.1f} s")
    post(base, "/api/v1/workflows/default", {"workflow": {
        "metadata": {"name": "big-graph"},
        "spec": {"entrypoint": "main", "arguments": params, "templates": [
            {"name": "main", "steps": [[{"name": "s", "template": "zero",
                                         "withSequence": {"count": str(NODES)}}]]},
            {"name": "zero", "suspend": {"duration": "0"}}]}}})
    deadline = time.time() + 300
    while get(base, "/api/v1/workflows/default/big-graph").get("status", {}).get("phase") != "Succeeded":
        assert time.time() < deadline, "the big graph did not finish"
        time.sleep(0.5)
    nodes = len(get(base, "/api/v1/workflows/default/big-graph")["status"]["nodes"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = signed_in_context(browser, base, viewport={"width": 1280, "height": 800}).new_page()
        t = time.time()
        page.goto(f"{base}/#/workflows")
        page.wait_for_function(f"document.querySelectorAll('#workflows tbody tr').length >= {LIST + 1}", timeout=120000)
        list_s = time.time() - t
        used, after_gc, dom = heap(page)
        # Responsive: a filter applied while the list is live answers at once.
        t = time.time()
        page.evaluate("location.hash = '#/workflows?phase=Succeeded'")
        page.wait_for_function("document.querySelectorAll('#workflows tbody tr').length === 1", timeout=60000)
        filter_s = time.time() - t
        print(f"list: {LIST + 1} workflows shown in {list_s:.2f} s; JS heap {used:.1f} MiB "
              f"({after_gc:.1f} after GC), {dom:.0f} DOM nodes; phase filter {filter_s:.2f} s")
        page = signed_in_context(browser, base, viewport={"width": 1280, "height": 800}).new_page()
        t = time.time()
        page.goto(f"{base}/#/workflows/default/big-graph")
        page.wait_for_selector("g.more", timeout=120000)
        shown = page.locator("g.node").count()
        graph_s = time.time() - t
        used, after_gc, dom = heap(page)
        print(f"graph: {nodes} nodes, drawn collapsed ({shown} shown and '+N more') in {graph_s:.2f} s; "
              f"JS heap {used:.1f} MiB ({after_gc:.1f} after GC), {dom:.0f} DOM nodes")
        t = time.time()
        page.locator("g.more").click()
        page.wait_for_function(f"document.querySelectorAll('g.node').length === {nodes}", timeout=300000)
        expand_s = time.time() - t
        used, after_gc, dom = heap(page)
        t = time.time()
        page.locator("g.node[data-node-name='s(4999:4999)']").click()
        page.wait_for_function("document.querySelector('#details h2').textContent.startsWith('s(4999')")
        click_s = time.time() - t
        print(f"graph: all {nodes} nodes drawn (expanded) in {expand_s:.2f} s; JS heap {used:.1f} MiB "
              f"({after_gc:.1f} after GC), {dom:.0f} DOM nodes; selecting a node then {click_s:.2f} s")
        browser.close()
    proc.kill()


if __name__ == "__main__":
    main()
