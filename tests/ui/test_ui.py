"""The web UI in a real browser: Debian's headless Chromium, driven by Playwright (PyPI), against
a real `onyx server`. Each test asserts what a user sees and that what they click changes the
workflow on the server. Screenshots of every page go to $ONYX_UI_SHOTS when it is set (that is
how docs/ui/ is made: `ONYX_UI_SHOTS=docs/ui ./test.sh`)."""

import json
import os
import re
import subprocess
import tempfile
import time
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ONYX = os.environ.get("ONYX_BIN", os.path.join(ROOT, "target", "debug", "onyx"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = os.environ.get("ONYX_UI_SHOTS")


# The token each server made for itself at first start (HOME/token), by its address.
TOKENS = {}


def start_server(*args):
    home = tempfile.mkdtemp(prefix="onyx-ui-")
    env = dict(os.environ, ONYX_HOME=home, PATH=os.environ.get("PATH", "") + ":/usr/games")
    proc = subprocess.Popen(
        [ONYX, "server", "--listen", "127.0.0.1:0", *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    for line in proc.stderr:
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            base = m.group(1)
            token_file = os.path.join(home, "token")
            if os.path.exists(token_file):
                TOKENS[base] = open(token_file).read().strip()
            return proc, base
    raise AssertionError("onyx server did not say where it listens")


def signed_in_context(browser, base, **options):
    """A browser context signed in to `base` with its own token, as the link the server
    prints does (the UI keeps the token in localStorage)."""
    ctx = browser.new_context(**options)
    if base in TOKENS:
        ctx.add_init_script(f"localStorage.setItem('onyx.token', {json.dumps(TOKENS[base])})")
    return ctx


def api(base, method, path, body=None):
    headers = {"Content-Type": "application/json"}
    if base in TOKENS:
        headers["Authorization"] = f"Bearer {TOKENS[base]}"
    req = urllib.request.Request(
        base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers=headers,
    )
    with urllib.request.urlopen(req) as res:
        return json.loads(res.read() or b"{}")


def submit(base, workflow):
    return api(base, "POST", "/api/v1/workflows/default", {"workflow": workflow})


def shot(page, name):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"))


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is not installed (Debian package chromium); the UI tests need it")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def local_server():
    proc, base = start_server()
    yield base
    proc.kill()
    proc.wait()


@pytest.fixture
def page(browser, local_server):
    ctx = signed_in_context(browser, local_server, viewport={"width": 1280, "height": 800})
    pg = ctx.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, f"the page threw: {errors}"


DAG = {
    "metadata": {"name": "ui-dag"},
    "spec": {
        "entrypoint": "main",
        "arguments": {"parameters": [{"name": "ticket_id", "value": "T-UI"}]},
        "templates": [
            {"name": "main", "dag": {"tasks": [
                {"name": "prepare", "template": "say"},
                {"name": "flaky", "template": "flaky", "depends": "prepare"},
                {"name": "broken", "template": "broken", "depends": "prepare"},
                {"name": "train", "template": "slow", "depends": "prepare"},
                {"name": "report", "template": "say", "depends": "flaky && train"},
            ]}},
            {"name": "say", "container": {"image": "alpine", "command": ["sh", "-c", "echo ready"]}},
            # Fails its first attempt, succeeds on the retry.
            {"name": "flaky", "retryStrategy": {"limit": 2},
             "container": {"image": "alpine", "command": ["sh", "-c", "echo attempt {{retries}}; [ {{retries}} -ge 1 ]"]}},
            {"name": "broken", "container": {"image": "alpine", "command": ["sh", "-c", "echo broken; exit 3"]}},
            {"name": "slow", "container": {"image": "alpine", "command": ["sh", "-c",
                "for i in 1 2 3 4 5 6 7 8; do echo epoch $i; sleep 1; done"]}},
        ],
    },
}


def test_a_dag_page_shows_every_node_with_its_phase_and_streams_the_log(local_server, page):
    submit(local_server, DAG)
    page.goto(f"{local_server}/#/workflows/default/ui-dag")
    train = page.locator('g.node[data-node-name="train"]')
    expect(train).to_have_attribute("data-phase", "Running", timeout=15000)
    # The log of the running step grows while it runs (streamed, not loaded once).
    train.click()
    logs = page.locator("#logs")
    expect(logs).to_contain_text("epoch 2", timeout=10000)
    early = logs.inner_text()
    assert "epoch 8" not in early, "the log was read after the step ended, not streamed"
    expect(logs).to_contain_text("epoch 8", timeout=15000)
    # When the workflow ends, every node is drawn with the phase the server gives it.
    expect(page.locator(".bar .phase")).to_have_text("Failed", timeout=20000)
    wf = api(local_server, "GET", "/api/v1/workflows/default/ui-dag")
    nodes = wf["status"]["nodes"]
    page.wait_for_timeout(1200)  # the graph redraws at most once a second
    drawn = {g.get_attribute("data-node-id"): g.get_attribute("data-phase")
             for g in page.locator("g.node").all()}
    assert drawn == {i: n["phase"] for i, n in nodes.items()}, drawn
    phases = {g.get_attribute("data-node-name"): g.get_attribute("data-phase")
              for g in page.locator("g.node").all()}
    assert phases["broken"] == "Failed"
    assert phases["flaky"] == "Succeeded", "the retried task succeeded on its second attempt"
    assert phases["flaky(0)"] == "Failed" and phases["flaky(1)"] == "Succeeded"
    assert phases["report"] == "Succeeded"
    page.locator('g.node[data-node-name="broken"]').click()
    expect(page.locator("#details")).to_contain_text("exit code 3")
    shot(page, "workflow")
    page.set_viewport_size({"width": 390, "height": 844})
    # At phone width the details stack under the graph, and nothing is wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "workflow-phone")


def test_a_wide_loop_is_drawn_collapsed_and_expands_on_demand(local_server, page):
    submit(local_server, {
        "metadata": {"name": "ui-wide"},
        "spec": {"entrypoint": "main", "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
                 "templates": [
                     {"name": "main", "steps": [[{"name": "item", "template": "zero", "withSequence": {"count": "100"}}]]},
                     {"name": "zero", "suspend": {"duration": "0"}}]},
    })
    page.goto(f"{local_server}/#/workflows/default/ui-wide")
    expect(page.locator(".bar .phase")).to_have_text("Succeeded", timeout=15000)
    more = page.locator("g.more")
    expect(more).to_have_attribute("aria-label", "+80 more: 80 Succeeded; show them")
    items = page.locator('g.node[data-type="Suspend"]')
    expect(items).to_have_count(20)
    more.focus()
    page.keyboard.press("Enter")
    expect(items).to_have_count(100)
    expect(page.locator("g.more")).to_have_count(0)


def test_suspend_and_resume_from_the_page_change_the_workflow_on_the_server(local_server, page):
    wf = {
        "metadata": {"name": "ui-suspend"},
        "spec": {"entrypoint": "main",
                 "arguments": {"parameters": [{"name": "ticket_id", "value": "T-UI"}]},
                 "templates": [
                     {"name": "main", "steps": [[{"name": "a", "template": "nap"}], [{"name": "b", "template": "nap"}]]},
                     {"name": "nap", "container": {"image": "alpine", "command": ["sh", "-c", "sleep 4"]}},
                 ]},
    }
    submit(local_server, wf)
    page.goto(f"{local_server}/#/workflows/default/ui-suspend")
    page.locator("[data-action=suspend]").click()
    expect(page.locator("[data-action=resume]")).to_be_visible(timeout=5000)
    suspended = api(local_server, "GET", "/api/v1/workflows/default/ui-suspend")
    assert suspended["spec"].get("suspend") is True
    running = [n["displayName"] for n in suspended["status"]["nodes"].values() if n["type"] == "Pod"]
    assert running == ["a"], f"suspended while {running} ran: the test needs a to still run"
    time.sleep(5)  # step a ends; b must not start while suspended
    nodes = api(local_server, "GET", "/api/v1/workflows/default/ui-suspend")["status"]["nodes"]
    b = [n for n in nodes.values() if n["displayName"] == "b"]
    assert all(n["phase"] == "Pending" for n in b), f"b ran while suspended: {b}"
    page.locator("[data-action=resume]").click()
    expect(page.locator("[data-action=suspend]")).to_be_visible(timeout=5000)
    assert not api(local_server, "GET", "/api/v1/workflows/default/ui-suspend")["spec"].get("suspend")
    expect(page.locator(".bar .phase")).to_have_text("Succeeded", timeout=20000)


def test_the_list_updates_live_and_filters(local_server, page):
    page.goto(f"{local_server}/#/workflows")
    expect(page.locator(".live")).to_be_visible()
    submit(local_server, {
        "metadata": {"name": "ui-live", "labels": {"team": "vision"}},
        "spec": {"entrypoint": "s", "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
                 "templates": [{"name": "s", "container": {"image": "alpine", "command": ["true"]}}]},
    })
    row = page.locator('tr[data-name="ui-live"]')
    expect(row).to_have_attribute("data-phase", "Succeeded", timeout=15000)
    shot(page, "workflows")
    page.goto(f"{local_server}/#/workflows?labels=team%3Dvision")
    expect(page.locator('tr[data-name="ui-live"]')).to_be_visible()
    expect(page.locator('tr[data-name="ui-dag"]')).to_have_count(0)


def test_submit_from_a_template_form_shows_the_apis_refusal_then_submits(local_server, page):
    api(local_server, "POST", "/api/v1/workflow-templates/default", {"template": {
        "metadata": {"name": "ui-train", "annotations": {"workflows.argoproj.io/description": "Train a model on one GPU."}},
        "spec": {"entrypoint": "t",
                 "arguments": {"parameters": [{"name": "size", "value": "small", "enum": ["small", "large"]}]},
                 "templates": [{"name": "t", "container": {"image": "alpine", "command": ["sh", "-c", "echo {{workflow.parameters.size}}"]}}]},
    }})
    page.goto(f"{local_server}/#/catalog")
    card = page.locator('article.card[data-name="ui-train"]')
    expect(card).to_contain_text("Train a model on one GPU.")
    expect(card).to_contain_text("one of small, large")
    shot(page, "catalog")
    card.get_by_role("link", name="Submit…").click()
    expect(page.locator("select#p-size option")).to_have_count(2)
    page.select_option("select#p-size", "large")
    # Without a ticket_id the server refuses, and the form says so in the server's words.
    page.get_by_role("button", name="Submit", exact=True).click()
    refusal = page.locator(".form-error")
    expect(refusal).to_contain_text("ticket_id")
    try:
        api(local_server, "POST", "/api/v1/workflows/default/submit",
            {"resourceKind": "WorkflowTemplate", "resourceName": "ui-train"})
        raise AssertionError("the API accepted a submission without ticket_id")
    except urllib.error.HTTPError as e:
        message = json.loads(e.read())["message"]
    generated = re.compile(r'workflow "ui-train-[a-z0-9]+"')
    assert generated.sub("W", message) in generated.sub("W", refusal.inner_text()), message
    shot(page, "submit")
    page.locator("input.extra-value").first.fill("T-42")
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.locator(".bar .phase")).to_have_text("Succeeded", timeout=15000)
    name = page.locator(".bar h1").inner_text()
    wf = api(local_server, "GET", f"/api/v1/workflows/default/{name}")
    params = {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}
    assert params == {"size": "large", "ticket_id": "T-42"}, params


def test_an_archived_workflow_opens_as_its_graph_and_resubmits(local_server, page):
    submit(local_server, {
        "metadata": {"name": "ui-arch"},
        "spec": {"entrypoint": "main", "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
                 "templates": [{"name": "main", "steps": [[{"name": "only", "template": "s"}]]},
                               {"name": "s", "container": {"image": "alpine", "command": ["true"]}}]},
    })
    deadline = time.time() + 20
    while api(local_server, "GET", "/api/v1/workflows/default/ui-arch")["status"].get("phase") != "Succeeded":
        assert time.time() < deadline
        time.sleep(0.2)
    api(local_server, "DELETE", "/api/v1/workflows/default/ui-arch")
    page.goto(f"{local_server}/#/archive")
    expect(page.get_by_role("link", name="ui-arch")).to_be_visible()
    shot(page, "archive")
    page.get_by_role("link", name="ui-arch").click()
    expect(page.locator('g.node[data-node-name="only"]')).to_have_attribute("data-phase", "Succeeded")
    expect(page.locator(".bar .badge")).to_have_text("archived")
    page.locator("[data-action=resubmit]").click()
    expect(page.locator(".bar h1")).not_to_have_text("ui-arch", timeout=5000)
    expect(page.locator(".bar .phase")).to_have_text("Succeeded", timeout=15000)
    assert page.locator(".bar h1").inner_text().startswith("ui-arch")


def test_argo_addresses_open_the_matching_page(local_server, page):
    """The links Argo users bookmark and paste (`/workflows/NS/NAME`, `/workflow-templates/...`,
    `/cron-workflows/...`, `/archived-workflows/...`) open this UI's page for the same thing,
    never the API's JSON."""
    params = {"parameters": [{"name": "ticket_id", "value": "T-URL"}]}
    body = [{"name": "main", "container": {"image": "alpine", "command": ["true"]}}]
    spec = {"entrypoint": "main", "arguments": params, "templates": body}
    submit(local_server, {"metadata": {"name": "ui-url-live"}, "spec": spec})
    api(local_server, "POST", "/api/v1/workflow-templates/default",
        {"template": {"metadata": {"name": "ui-url-tmpl"}, "spec": spec}})
    api(local_server, "POST", "/api/v1/cron-workflows/default",
        {"cronWorkflow": {"metadata": {"name": "ui-url-cron"}, "spec": {"schedule": "0 3 * * *", "workflowSpec": spec}}})
    uid = submit(local_server, {"metadata": {"name": "ui-url-gone"}, "spec": spec})["metadata"]["uid"]
    deadline = time.time() + 20
    for name in ("ui-url-live", "ui-url-gone"):
        while api(local_server, "GET", f"/api/v1/workflows/default/{name}")["status"].get("phase") != "Succeeded":
            assert time.time() < deadline
            time.sleep(0.2)
    api(local_server, "DELETE", "/api/v1/workflows/default/ui-url-gone")
    node = api(local_server, "GET", "/api/v1/workflows/default/ui-url-live")["metadata"]["name"]

    def opens(path, check):
        page.goto(local_server + path)
        assert "#/" in page.url, page.url
        assert not page.locator("body > pre").count(), page.content()
        check()
        shot(page, "argo-url" + re.sub(r"[^a-z]+", "-", path.split("?")[0]).rstrip("-"))

    opens("/workflows/default/ui-url-live?tab=workflow&nodeId=" + node,
          lambda: expect(page.locator(".bar h1")).to_have_text("ui-url-live"))
    opens("/workflows/default", lambda: expect(page.locator("#workflows")).to_contain_text("ui-url-live"))
    opens("/workflows", lambda: expect(page.locator("#workflows")).to_contain_text("ui-url-live"))
    opens("/workflow-templates/default/ui-url-tmpl", lambda: expect(page.locator("main")).to_contain_text("ui-url-tmpl"))
    opens("/cron-workflows/default/ui-url-cron", lambda: expect(page.locator("main")).to_contain_text("ui-url-cron"))
    opens("/cron-workflows", lambda: expect(page.locator('article.card[data-name="ui-url-cron"]')).to_be_visible())
    opens(f"/archived-workflows/default/{uid}", lambda: expect(page.locator(".bar .badge")).to_have_text("archived"))


def test_names_are_text_and_links_only_go_to_safe_places(local_server, page):
    """A workflow named like markup shows as its text, and the UI's element builder makes no
    `javascript:` or `data:` link whatever a name holds."""
    submit(local_server, {"metadata": {"name": "ui-xss", "labels": {"note": "x"}},
                          "spec": {"entrypoint": "main",
                                   "arguments": {"parameters": [{"name": "ticket_id", "value": "<img src=x onerror=alert(1)>"}]},
                                   "templates": [{"name": "main", "suspend": {"duration": "0"}}]}})
    page.goto(f"{local_server}/#/workflows")
    expect(page.locator("#workflows")).to_contain_text("ui-xss")
    assert page.locator("img[src=x]").count() == 0
    made = page.evaluate("""async () => {
        const { h } = await import('/ui/lib.js');
        const hrefs = ['javascript:alert(1)', ' javascript:alert(1)', 'data:text/html,x', '//evil.example/', '/\\\\evil.example',
                       '#/workflows/a/b', '/ui/app.js', './x', 'https://argo.example/']
          .map(u => h('a', { href: u }, 'x').getAttribute('href'));
        return hrefs;
    }""")
    assert made == [None, None, None, None, None, "#/workflows/a/b", "/ui/app.js", "./x", "https://argo.example/"], made


def test_an_unreachable_api_is_said_in_words(browser):
    proc, base = start_server()
    ctx = signed_in_context(browser, base)
    pg = ctx.new_page()
    pg.goto(f"{base}/#/workflows")
    expect(pg.locator(".live")).to_be_visible()
    proc.kill()
    proc.wait()
    # The page is loaded; going to another page of it asks the (dead) API.
    pg.evaluate("location.hash = '#/catalog'")
    err = pg.locator(".error").first
    expect(err).to_contain_text("did not answer")
    expect(err).to_contain_text("Check that `onyx server` is running")
    assert "{" not in err.inner_text(), "a raw JSON error was shown"
    ctx.close()


def test_the_cluster_page_draws_the_gpus_a_gang_and_mig_steps_hold(browser):
    config = os.path.join(tempfile.mkdtemp(prefix="onyx-ui-cfg-"), "onyx.toml")
    with open(config, "w") as f:
        f.write('[namespaces.default]\ngpu_quota = 20\nrequired_parameters = ["ticket_id"]\n')
    proc, base = start_server("--cluster", "onyx", "--config", config)
    try:
        gang = {"schedulerName": "volcano",
                "metadata": {"annotations": {"scheduling.k8s.io/group-name": "ddp",
                                             "scheduling.volcano.sh/group-min-member": "2",
                                             "scheduling.volcano.sh/queue-name": "dedicated"}},
                "container": {"image": "alpine", "command": ["sh", "-c", "sleep 30"],
                              "resources": {"limits": {"nvidia.com/gpu": 8}}}}
        mig = {"schedulerName": "volcano",
               "metadata": {"annotations": {"scheduling.volcano.sh/queue-name": "shared"}},
               "container": {"image": "alpine", "command": ["sh", "-c", "sleep 30"],
                             "resources": {"limits": {"nvidia.com/gpu-mig-1g.10gb": 1}}}}
        submit(base, {"metadata": {"name": "train"}, "spec": {
            "entrypoint": "main", "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
            "templates": [{"name": "main", "steps": [[{"name": "w0", "template": "w"}, {"name": "w1", "template": "w"}]]},
                          {"name": "w", **gang}]}})
        submit(base, {"metadata": {"name": "infer"}, "spec": {
            "entrypoint": "main", "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
            "templates": [{"name": "main", "steps": [[{"name": "a", "template": "m"}, {"name": "b", "template": "m"}]]},
                          {"name": "m", **mig}]}})
        # Wait until the scheduler holds what both asked for, then look at the page.
        deadline = time.time() + 20
        while time.time() < deadline:
            nodes = api(base, "GET", "/api/v1/onyx/nodes")["items"]
            whole = [(n["name"], d["index"]) for n in nodes for d in n["devices"] if d["holders"]]
            slices = [(n["name"], d["index"], j) for n in nodes for d in n["devices"]
                      for j, i in enumerate(d["instances"]) if i["holder"]]
            if len(whole) == 16 and len(slices) == 2:
                break
            time.sleep(0.2)
        assert len(whole) == 16 and len(slices) == 2, (whole, slices)
        ctx = signed_in_context(browser, base, viewport={"width": 1280, "height": 800})
        pg = ctx.new_page()
        pg.goto(f"{base}/#/cluster")
        expect(pg.locator("#nodes article.node")).to_have_count(len(nodes))
        for node, index in whole:
            gpu = pg.locator(f'[data-gpu="{node}/{index}"]')
            expect(gpu).to_have_attribute("data-state", "held")
            assert gpu.get_attribute("data-holder").startswith("train-")
        for node, index, j in slices:
            inst = pg.locator(f'[data-gpu="{node}/{index}"] [data-mig="{index}/{j}"]')
            expect(inst).to_have_attribute("data-state", "held")
            assert inst.get_attribute("data-holder").startswith("infer-")
        held = pg.locator('.gpu[data-state="held"]').count()
        assert held == 16 + len({(n, i) for n, i, _ in slices}), held
        expect(pg.locator('#queues tr[data-queue="dedicated"]')).to_contain_text("2")
        # The namespace's GPUs against its quota: 16 whole and two 1/7 instances of 20.
        expect(pg.locator('#ns-usage tr[data-namespace="default"]')).to_contain_text(f"{16 + 2 / 7:.2f} / 20")
        shot(pg, "cluster")
        # Cordon state as the page shows it.
        api(base, "PUT", "/api/v1/onyx/nodes/gpu-r1-03/cordon", {})
        pg.reload()
        expect(pg.locator('article.node[data-node="gpu-r1-03"]')).to_have_attribute("data-state", "cordoned")
        expect(pg.locator('article.node[data-node="gpu-r1-03"] .badge')).to_have_text("cordoned")
        api(base, "PUT", "/api/v1/onyx/nodes/gpu-r1-03/uncordon", {})
        # A step's page says which GPUs it holds (from the usage ledger).
        pg.goto(f"{base}/#/workflows/default/infer")
        pg.locator('g.node[data-node-name="a"]').click()
        expect(pg.locator("#node-gpus")).to_contain_text("MIG instance")
        expect(pg.locator("#node-gpus")).to_contain_text("(0.143 GPU)")
        pg.goto(f"{base}/#/cluster")
        pg.set_viewport_size({"width": 390, "height": 844})
        shot(pg, "cluster-phone")
        # Usage: once both have ended, the month's GPU-hours per namespace are the ledger's,
        # MIG counted as 1/7 of a GPU an instance.
        for name in ("train", "infer"):
            deadline = time.time() + 60
            while api(base, "GET", f"/api/v1/workflows/default/{name}")["status"].get("phase") != "Succeeded":
                assert time.time() < deadline, f"{name} did not succeed"
                time.sleep(0.5)
        time.sleep(0.5)
        usage = api(base, "GET", "/api/v1/onyx/usage")
        queues = usage["namespaces"][0]["queues"]
        # 16 GPUs and two 1/7 instances, each for its 30 s step (and its start and end): the
        # ratio is the GPU equivalents' whatever the machine's load.
        assert 16 * 29 / 3600 < queues["dedicated"] < 16 * 120 / 3600, usage
        ratio = queues["shared"] / queues["dedicated"]
        assert abs(ratio - (2 / 7) / 16) < 0.1 * (2 / 7) / 16, usage
        pg.set_viewport_size({"width": 1280, "height": 800})
        pg.goto(f"{base}/#/usage")
        row = pg.locator('#usage tr[data-namespace="default"]')
        expect(row).to_contain_text(f"{usage['namespaces'][0]['gpuHours']:.2f}")
        expect(row).to_contain_text("dedicated")
        expect(pg.locator("#gpu-chart canvas")).to_have_count(1)
        expect(pg.locator("#success-total")).to_contain_text("2 finished, 2 succeeded (100.0 %)")
        expect(pg.locator("#wait-total")).to_contain_text(f"{usage['meanWaitSeconds']:.1f} s on average over 4 pods")
        shot(pg, "usage")
        pg.goto(f"{base}/#/usage?month=1999-01")
        expect(pg.locator("#usage")).to_contain_text("No GPU was held in 1999-01.")
        ctx.close()
    finally:
        proc.kill()
        proc.wait()


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_single_sign_on_signs_the_browser_in_through_the_issuer(browser, tmp_path):
    """Auth mode sso: the page asks the user to sign in; the button goes through the OpenID
    provider's sign-in (npm's oidc-provider, started here) and back to the page, now showing
    what the user's group may see."""
    oidc = os.path.join(ROOT, "tests", "oidc")
    if not os.path.isdir(os.path.join(oidc, "node_modules", "oidc-provider")):
        pytest.fail("the OpenID provider is not installed: npm ci --prefix tests/oidc (.ci/run does)")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    provider = subprocess.Popen(
        ["node", "provider.js"], cwd=oidc, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=dict(os.environ, PORT="0", ACCOUNTS=json.dumps({"alice": {"groups": ["team-a"]}}),
                 REDIRECT_URIS=f"{base}/oauth2/callback"),
    )
    issuer = provider.stdout.readline().split()[1]
    (tmp_path / "secret").write_text("onyx-secret\n")
    (tmp_path / "token").write_text("an-admin-token-of-the-server\n")
    (tmp_path / "onyx.toml").write_text(f"""
auth_token_file = "{tmp_path / 'token'}"
[auth]
mode = "sso"
issuer = "{issuer}"
client_id = "onyx"
client_secret_file = "{tmp_path / 'secret'}"
redirect_url = "{base}/oauth2/callback"
[[auth.grants]]
group = "team-a"
namespaces = ["team-a"]
""")
    env = dict(os.environ, ONYX_HOME=str(tmp_path / "home"), PATH=os.environ.get("PATH", "") + ":/usr/games")
    server = subprocess.Popen(
        [ONYX, "server", "--listen", f"127.0.0.1:{port}", "--config", str(tmp_path / "onyx.toml")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        for line in server.stderr:
            if "listening on" in line:
                break
        # A workflow in alice's namespace, submitted with the server's own token.
        req = urllib.request.Request(
            base + "/api/v1/workflows/team-a", method="POST",
            data=json.dumps({"workflow": {
                "metadata": {"name": "team-a-train"},
                "spec": {"entrypoint": "main",
                         "arguments": {"parameters": [{"name": "ticket_id", "value": "T-SSO"}]},
                         "templates": [{"name": "main", "container": {"image": "alpine", "command": ["true"]}}]}}}).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer an-admin-token-of-the-server"},
        )
        urllib.request.urlopen(req).read()
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        page = ctx.new_page()
        page.goto(base + "/")
        sign_in = page.get_by_role("link", name="Sign in")
        expect(sign_in).to_be_visible()
        shot(page, "sso-sign-in")
        sign_in.click()
        # The provider's own sign-in form.
        page.locator("input[name=login]").fill("alice")
        page.locator("input[name=password]").fill("any")
        page.locator("button[type=submit]").click()
        # Back on ONYX, signed in: alice's namespace's workflow is listed.
        page.wait_for_url(re.compile(re.escape(base) + r"/.*"))
        expect(page.get_by_text("team-a-train")).to_be_visible(timeout=15000)
        shot(page, "sso-signed-in")
        cookies = {c["name"] for c in ctx.cookies(base)}
        assert "authorization" in cookies
        ctx.close()
    finally:
        server.kill()
        provider.kill()
