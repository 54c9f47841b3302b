"""Argo's Python client, hera (from PyPI), against `onyx server`: it defines and submits
workflows with its own Argo Server client and sees them succeed."""

import os
import re
import shlex
import subprocess
import tempfile
import time

import pytest
from hera.shared import global_config
from hera.workflows import Container, Parameter, Workflow, WorkflowsService, WorkflowTemplate
from hera.workflows.models import SubmitOpts, WorkflowSubmitRequest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ONYX = os.environ.get("ONYX_BIN", os.path.join(ROOT, "target", "debug", "onyx"))


@pytest.fixture(scope="module")
def server():
    home = tempfile.mkdtemp(prefix="onyx-hera-")
    env = dict(os.environ, ONYX_HOME=home, PATH=os.environ.get("PATH", "") + ":/usr/games")
    # The same tests run against other set-ups of the server (crates/onyx/tests/sign_in.rs:
    # PostgreSQL, `--auth-mode client` and a token from an OpenID provider): the server's extra
    # arguments and the token hera sends come from the environment.
    extra = shlex.split(os.environ.get("ONYX_SERVER_ARGS", ""))
    if os.environ.get("ONYX_TOKEN"):
        global_config.token = os.environ["ONYX_TOKEN"]
    proc = subprocess.Popen(
        [ONYX, "server", "--listen", "127.0.0.1:0", *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    address = None
    for line in proc.stderr:
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            address = m.group(1)
            break
    assert address, "onyx server did not say where it listens"
    # A server with no token configured makes its own at first start (HOME/token, 0600), as
    # a user's CLI on the same machine reads it.
    token_file = os.path.join(home, "token")
    if not os.environ.get("ONYX_TOKEN") and os.path.exists(token_file):
        global_config.token = open(token_file).read().strip()
    yield address
    proc.kill()
    proc.wait()


def wait_for(svc, name, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        wf = svc.get_workflow(name=name, namespace="default")
        if wf.status and wf.status.phase in ("Succeeded", "Failed", "Error"):
            return wf
        time.sleep(0.2)
    raise AssertionError(f"{name} did not finish")


def test_hera_submits_a_workflow_and_it_succeeds(server):
    svc = WorkflowsService(host=server, verify_ssl=False, namespace="default")
    with Workflow(
        generate_name="hera-hello-",
        entrypoint="say",
        namespace="default",
        workflows_service=svc,
        arguments=[Parameter(name="ticket_id", value="T-100"), Parameter(name="msg", value="hello from hera")],
    ) as w:
        Container(
            name="say",
            image="argoproj/argosay:v2",
            args=["echo", "{{workflow.parameters.msg}}"],
        )
    created = w.create(wait=True)
    assert created.status.phase == "Succeeded"
    node = [n for n in created.status.nodes.values() if n.type == "Pod"][0]
    assert node.outputs.result == "hello from hera"


def test_hera_submits_from_a_workflow_template_with_ticket_id(server):
    svc = WorkflowsService(host=server, verify_ssl=False, namespace="default")
    with WorkflowTemplate(
        name="hera-greet",
        entrypoint="greet",
        namespace="default",
        workflows_service=svc,
        arguments=[Parameter(name="who", value="world")],
    ) as wt:
        Container(
            name="greet",
            image="argoproj/argosay:v2",
            inputs=[Parameter(name="who")],
            args=["echo", "hello {{inputs.parameters.who}}"],
        )
    wt.create()
    # Without ticket_id the audit rule refuses it, naming the parameter.
    with pytest.raises(Exception) as refused:
        svc.submit_workflow(
            WorkflowSubmitRequest(
                resource_kind="WorkflowTemplate",
                resource_name="hera-greet",
                submit_options=SubmitOpts(parameters=["who=onyx"]),
            ),
            namespace="default",
        )
    assert "ticket_id" in str(refused.value)
    submitted = svc.submit_workflow(
        WorkflowSubmitRequest(
            resource_kind="WorkflowTemplate",
            resource_name="hera-greet",
            submit_options=SubmitOpts(parameters=["who=onyx", "ticket_id=T-200"]),
        ),
        namespace="default",
    )
    done = wait_for(svc, submitted.metadata.name)
    assert done.status.phase == "Succeeded"
    assert done.metadata.labels["workflows.argoproj.io/workflow-template"] == "hera-greet"
    params = {p.name: p.value for p in done.spec.arguments.parameters}
    assert params["ticket_id"] == "T-200"
    node = [n for n in done.status.nodes.values() if n.type == "Pod"][0]
    assert node.outputs.result == "hello onyx"
