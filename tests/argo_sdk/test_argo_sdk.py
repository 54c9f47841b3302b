"""Argo's official Python SDK (`argo-workflows` on PyPI, the 6.5 line generated from Argo
v3.5's swagger) against `onyx server`, through the SDK's own models with its strict type
checks on: the workflow, template, cron, archive and info services answer in shapes the SDK
accepts, with the values Argo v3.5.6 gives."""

import json
import os
import re
import subprocess
import tempfile
import threading
import time

import pytest
from argo_workflows import ApiClient, Configuration
from argo_workflows.api.archived_workflow_service_api import ArchivedWorkflowServiceApi
from argo_workflows.api.cron_workflow_service_api import CronWorkflowServiceApi
from argo_workflows.api.info_service_api import InfoServiceApi
from argo_workflows.api.workflow_service_api import WorkflowServiceApi
from argo_workflows.api.workflow_template_service_api import WorkflowTemplateServiceApi
from argo_workflows.exceptions import ApiException
from argo_workflows.model.container import Container
from argo_workflows.model.io_argoproj_workflow_v1alpha1_arguments import (
    IoArgoprojWorkflowV1alpha1Arguments as Arguments,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_create_cron_workflow_request import (
    IoArgoprojWorkflowV1alpha1CreateCronWorkflowRequest as CreateCronRequest,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_cron_workflow import (
    IoArgoprojWorkflowV1alpha1CronWorkflow as CronWorkflow,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_cron_workflow_spec import (
    IoArgoprojWorkflowV1alpha1CronWorkflowSpec as CronSpec,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_parallel_steps import (
    IoArgoprojWorkflowV1alpha1ParallelSteps as ParallelSteps,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_workflow_step import (
    IoArgoprojWorkflowV1alpha1WorkflowStep as WorkflowStep,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_parameter import (
    IoArgoprojWorkflowV1alpha1Parameter as Parameter,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_retry_archived_workflow_request import (
    IoArgoprojWorkflowV1alpha1RetryArchivedWorkflowRequest as RetryArchivedRequest,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_submit_opts import (
    IoArgoprojWorkflowV1alpha1SubmitOpts as SubmitOpts,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_template import (
    IoArgoprojWorkflowV1alpha1Template as Template,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_update_cron_workflow_request import (
    IoArgoprojWorkflowV1alpha1UpdateCronWorkflowRequest as UpdateCronRequest,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_workflow import (
    IoArgoprojWorkflowV1alpha1Workflow as Workflow,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_workflow_create_request import (
    IoArgoprojWorkflowV1alpha1WorkflowCreateRequest as CreateRequest,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_workflow_lint_request import (
    IoArgoprojWorkflowV1alpha1WorkflowLintRequest as LintRequest,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_workflow_retry_request import (
    IoArgoprojWorkflowV1alpha1WorkflowRetryRequest as RetryRequest,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_workflow_spec import (
    IoArgoprojWorkflowV1alpha1WorkflowSpec as WorkflowSpec,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_workflow_stop_request import (
    IoArgoprojWorkflowV1alpha1WorkflowStopRequest as StopRequest,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_workflow_submit_request import (
    IoArgoprojWorkflowV1alpha1WorkflowSubmitRequest as SubmitRequest,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_workflow_template import (
    IoArgoprojWorkflowV1alpha1WorkflowTemplate as WorkflowTemplate,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_workflow_template_create_request import (
    IoArgoprojWorkflowV1alpha1WorkflowTemplateCreateRequest as TemplateCreateRequest,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_workflow_terminate_request import (
    IoArgoprojWorkflowV1alpha1WorkflowTerminateRequest as TerminateRequest,
)
from argo_workflows.model.object_meta import ObjectMeta

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ONYX = os.environ.get("ONYX_BIN", os.path.join(ROOT, "target", "debug", "onyx"))
NS = "default"
DONE = ("Succeeded", "Failed", "Error")


@pytest.fixture(scope="module")
def client():
    home = tempfile.mkdtemp(prefix="onyx-argo-sdk-")
    env = dict(os.environ, ONYX_HOME=home, PATH=os.environ.get("PATH", "") + ":/usr/games")
    proc = subprocess.Popen(
        [ONYX, "server", "--listen", "127.0.0.1:0"],
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
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    config = Configuration(host=address)
    config.api_key["BearerToken"] = open(os.path.join(home, "token")).read().strip()
    config.api_key_prefix["BearerToken"] = "Bearer"
    yield ApiClient(config)
    proc.kill()
    proc.wait()


def container(*script):
    return Container(image="alpine:3.19", command=["sh", "-c"], args=[" ".join(script)])


def workflow(prefix, script, params=()):
    """A one-step workflow, built from the SDK's models."""
    return Workflow(
        metadata=ObjectMeta(generate_name=prefix),
        spec=WorkflowSpec(
            entrypoint="main",
            arguments=Arguments(parameters=[Parameter(name="ticket_id", value="T-1"), *params]),
            templates=[Template(name="main", container=container(script))],
        ),
    )


def wait(api, name, phases=DONE, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        wf = api.get_workflow(NS, name)
        if wf.get("status") and wf.status.get("phase") in phases:
            return wf
        time.sleep(0.1)
    raise AssertionError(f"{name} did not reach {phases}")


def test_info_service_answers_in_the_sdk_models(client):
    info = InfoServiceApi(client)
    version = info.get_version()
    assert version.version.startswith("v3.5.6")
    info.get_info()
    info.get_user_info()


def test_fields_select_what_a_list_and_a_get_send(client):
    api = WorkflowServiceApi(client)
    name = api.create_workflow(NS, CreateRequest(workflow=workflow("fields-", "echo hi"))).metadata.name
    wait(api, name)
    # A selection leaves out fields the SDK's models require (`spec`), so its answers are read
    # as JSON, as with Argo.
    raw = api.list_workflows(
        NS, fields="items.metadata.name,items.status.phase", _preload_content=False
    )
    items = json.loads(raw.data)["items"]
    assert {"metadata": {"name": name}, "status": {"phase": "Succeeded"}} in items
    assert all(set(w) <= {"metadata", "status"} for w in items), items
    assert all(set(w["status"]) == {"phase"} for w in items), items
    got = api.get_workflow(NS, name, fields="-status.nodes", _preload_content=False)
    body = json.loads(got.data)
    assert "nodes" not in body["status"] and body["status"]["phase"] == "Succeeded"
    assert body["spec"]["entrypoint"] == "main"


def test_a_followed_log_streams_while_the_pod_runs(client):
    # The SDK sends Python's `True` for a boolean query parameter.
    api = WorkflowServiceApi(client)
    wf = workflow("follow-", "echo one; sleep 2; echo two")
    name = api.create_workflow(NS, CreateRequest(workflow=wf)).metadata.name
    logs = api.workflow_logs(
        NS, name, log_options_container="main", log_options_follow=True, _preload_content=False
    )
    lines = [json.loads(l)["result"]["content"] for l in logs.data.decode().splitlines() if l]
    assert lines == ["one", "two"]


def test_stop_and_terminate_patch_spec_shutdown(client):
    api = WorkflowServiceApi(client)
    for action, strategy in (("stop", "Stop"), ("terminate", "Terminate")):
        name = api.create_workflow(NS, CreateRequest(workflow=workflow("shut-", "sleep 30"))).metadata.name
        wait(api, name, phases=("Running",))
        if action == "stop":
            answered = api.stop_workflow(NS, name, StopRequest())
        else:
            answered = api.terminate_workflow(NS, name, TerminateRequest())
        assert answered.spec.shutdown == strategy
        ended = wait(api, name)
        assert ended.spec.shutdown == strategy
        assert ended.status.phase == "Failed"


def test_latest_names_the_newest_workflow(client):
    api = WorkflowServiceApi(client)
    name = api.create_workflow(NS, CreateRequest(workflow=workflow("latest-", "echo newest"))).metadata.name
    assert api.get_workflow(NS, "@latest").metadata.name == name


def test_retry_answers_running_and_keeps_succeeded_nodes(client):
    api = WorkflowServiceApi(client)
    wf = Workflow(
        metadata=ObjectMeta(generate_name="retry-"),
        spec=WorkflowSpec(
            entrypoint="main",
            arguments=Arguments(parameters=[Parameter(name="ticket_id", value="T-1")]),
            templates=[
                Template(
                    name="main",
                    steps=[
                        ParallelSteps([WorkflowStep(name="ok", template="ok")]),
                        ParallelSteps([WorkflowStep(name="flaky", template="flaky")]),
                    ],
                ),
                Template(name="ok", container=container("echo fine")),
                Template(name="flaky", container=container("exit 1")),
            ],
        ),
    )
    name = api.create_workflow(NS, CreateRequest(workflow=wf)).metadata.name
    failed = wait(api, name)
    assert failed.status.phase == "Failed"
    ok_before = {k: n.to_dict() for k, n in failed.status.nodes.items() if n.display_name == "ok"}
    assert len(ok_before) == 1
    answered = api.retry_workflow(NS, name, RetryRequest())
    assert answered.status.phase == "Running"
    again = wait(api, name)
    ok_after = {k: n.to_dict() for k, n in again.status.nodes.items() if n.display_name == "ok"}
    assert ok_after == ok_before


def test_templates_submit_through_the_sdk(client):
    templates = WorkflowTemplateServiceApi(client)
    tmpl = WorkflowTemplate(
        metadata=ObjectMeta(name="sdk-greeter"),
        spec=WorkflowSpec(
            entrypoint="main",
            arguments=Arguments(parameters=[Parameter(name="who", value="world")]),
            templates=[Template(name="main", container=container("echo hello {{workflow.parameters.who}}"))],
        ),
    )
    made = templates.create_workflow_template(NS, TemplateCreateRequest(template=tmpl))
    assert made.metadata.name == "sdk-greeter"
    assert templates.get_workflow_template(NS, "sdk-greeter").spec.entrypoint == "main"
    names = [t.metadata.name for t in templates.list_workflow_templates(NS)["items"]]
    assert "sdk-greeter" in names
    api = WorkflowServiceApi(client)
    submitted = api.submit_workflow(
        NS,
        SubmitRequest(
            resource_kind="WorkflowTemplate",
            resource_name="sdk-greeter",
            submit_options=SubmitOpts(parameters=["who=sdk", "ticket_id=T-2"]),
        ),
    )
    assert wait(api, submitted.metadata.name).status.phase == "Succeeded"
    templates.delete_workflow_template(NS, "sdk-greeter")


def test_cron_workflows_keep_a_status_object(client):
    crons = CronWorkflowServiceApi(client)
    cron = CronWorkflow(
        metadata=ObjectMeta(name="sdk-nightly"),
        spec=CronSpec(
            schedule="0 3 * * *",
            workflow_spec=workflow("x-", "echo nightly").spec,
        ),
    )
    # A CronWorkflow that has not fired yet has `lastScheduledTime: null`, as Argo sends it,
    # which the SDK's strict model refuses (argo-workflows #5018): those reads skip its
    # return-type check, as the SDK's users do against Argo.
    unchecked = dict(_check_return_type=False)
    made = crons.create_cron_workflow(NS, CreateCronRequest(cron_workflow=cron), **unchecked)
    assert made["metadata"]["name"] == "sdk-nightly"
    cron.spec.schedule = "0 4 * * *"
    updated = crons.update_cron_workflow(
        NS, "sdk-nightly", UpdateCronRequest(cron_workflow=cron), **unchecked
    )
    assert updated["spec"]["schedule"] == "0 4 * * *"
    for _ in range(2):
        raw = crons.get_cron_workflow(NS, "sdk-nightly", _preload_content=False)
        status = json.loads(raw.data)["status"]
        assert status == {"active": [], "conditions": [], "lastScheduledTime": None}
    assert crons.suspend_cron_workflow(NS, "sdk-nightly", body={}, **unchecked)["spec"]["suspend"]
    resumed = crons.resume_cron_workflow(NS, "sdk-nightly", body={}, **unchecked)
    assert not resumed["spec"].get("suspend")
    names = [c["metadata"]["name"] for c in crons.list_cron_workflows(NS, **unchecked)["items"]]
    assert "sdk-nightly" in names
    crons.delete_cron_workflow(NS, "sdk-nightly")


def test_lint_and_archive_through_the_sdk(client):
    api = WorkflowServiceApi(client)
    linted = api.lint_workflow(NS, LintRequest(workflow=workflow("lint-", "echo ok")))
    assert linted.spec.entrypoint == "main"
    name = api.create_workflow(NS, CreateRequest(workflow=workflow("arch-", "exit 3"))).metadata.name
    uid = wait(api, name).metadata.uid
    archive = ArchivedWorkflowServiceApi(client)
    deadline = time.time() + 20
    while True:
        try:
            archived = archive.get_archived_workflow(uid)
            break
        except ApiException as e:
            if e.status != 404 or time.time() > deadline:
                raise
            time.sleep(0.2)
    assert archived.metadata.name == name and archived.status.phase == "Failed"
    listed = [w.metadata.uid for w in archive.list_archived_workflows(namespace=NS)["items"]]
    assert uid in listed
    # Retrying an archived workflow whose live copy is gone re-creates it, as Argo does.
    api.delete_workflow(NS, name)
    retried = archive.retry_archived_workflow(uid, RetryArchivedRequest(namespace=NS, name=name))
    assert retried.metadata.name == name and retried.status.phase == "Running"
    assert wait(api, name).status.phase == "Failed"
