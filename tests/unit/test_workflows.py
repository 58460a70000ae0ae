"""The CI workflows: offline linters, and the contract each workflow keeps.

Two linters run with no network: check-jsonschema against the GitHub workflow schema it ships
(``vendor.github-workflows``), and zizmor (a wheel with its binary) in ``--offline`` mode with
its pedantic persona (template injection, excessive permissions, credential persistence,
dangerous triggers, undocumented permissions...). The tests below then read the YAML for what
the linters cannot know: the preview stack is named after the pull request, the preview runs
the policy pack, a closed pull request's stack is destroyed and removed, every action is pinned
to its current major with inputs that version declares, and no secret reaches a run script.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.pulumi_mocks import ROOT
from tests.workflows import (
    DEPRECATED_RUNTIMES,
    WORKFLOW_DIR,
    action_steps,
    actions_record,
    commands,
    jobs,
    load,
    script_lines,
    steps,
    triggers,
    workflow_files,
)

BIN = Path(sys.executable).parent
PR_NUMBER = "${{ github.event.pull_request.number }}"
WORKFLOWS = {"ci", "preview", "preview-destroy", "reap", "cloud-load-test", "release-image"}


def test_the_expected_workflows_exist() -> None:
    assert {p.stem for p in workflow_files()} == WORKFLOWS


def test_workflows_match_github_s_schema_offline() -> None:
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows",
         *map(str, workflow_files())],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing_offline() -> None:
    result = subprocess.run(
        [BIN / "zizmor", "--offline", "--persona", "pedantic", "--no-progress", str(WORKFLOW_DIR)],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout + result.stderr


# ------------------------------------------------------------------------------------------------
# permissions and secrets


WRITES: dict[str, dict[str, set[str]]] = {
    "ci": {"test": set()},
    "preview": {"preview": {"id-token", "pull-requests"}},
    "preview-destroy": {"destroy": {"id-token"}},
    "reap": {"reap": {"id-token"}},
    "cloud-load-test": {"load-test": {"id-token"}},
    "release-image": {"image": {"packages"}},
}
"""The only scopes each job may write: an OIDC token, the preview's one comment, the image."""


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_permissions_are_least_privilege(name: str) -> None:
    assert load(name)["permissions"] == {}, "the workflow grants nothing by default"
    for job_id, job in jobs(name).items():
        granted = job["permissions"]
        assert isinstance(granted, dict), f"{name}/{job_id} must list its scopes"
        writes = {scope for scope, level in granted.items() if level == "write"}
        assert writes == WRITES[name][job_id]
        assert set(granted.values()) <= {"read", "write", "none"}
        assert granted.get("contents") == "read"


def test_checkouts_do_not_keep_the_token() -> None:
    for step in action_steps(None, "actions/checkout"):
        assert step.inputs.get("persist-credentials") is False, step


def test_no_run_script_sees_a_secret() -> None:
    """Secrets reach tools through env only; no script can echo one, nothing traces commands."""
    secret_vars: set[str] = set()
    for name in WORKFLOWS:
        for job in jobs(name).values():
            for key, value in (job.get("env") or {}).items():
                if "secrets." in str(value):
                    secret_vars.add(key)
    assert secret_vars == {"PULUMI_ACCESS_TOKEN"}
    for step in steps():
        assert "secrets." not in step.run, step
        assert "set -x" not in step.run and "set -o xtrace" not in step.run, step
        for var in secret_vars:
            assert var not in step.run, f"{step.workflow}/{step.job} mentions {var}"
        for value in (step.body.get("env") or {}).values():
            assert "secrets." not in str(value), step


def test_aws_credentials_come_from_an_oidc_role_never_from_keys() -> None:
    configured = action_steps(None, "aws-actions/configure-aws-credentials")
    assert {s.workflow for s in configured} == WORKFLOWS - {"ci", "release-image"}
    for step in configured:
        assert step.inputs["role-to-assume"].startswith("${{ vars.AWS_"), step
        assert not {"aws-access-key-id", "aws-secret-access-key"} & set(step.inputs)
    preview_role = {s.inputs["role-to-assume"] for s in configured if s.workflow == "preview"}
    assert preview_role == {"${{ vars.AWS_PREVIEW_ROLE_ARN }}"}, "previews use the read role"


# ------------------------------------------------------------------------------------------------
# actions: current majors, declared inputs, current runtimes


def test_every_action_is_pinned_to_its_recorded_current_major() -> None:
    record = actions_record()
    used = {s.uses for s in steps() if s.uses}
    assert used
    for reference in used:
        action, _, ref = reference.partition("@")
        assert action in record, f"{action} is not in tests/data/github_actions.yaml"
        assert ref == record[action]["major"], f"{reference}: pin {record[action]['major']}"
    assert {u.partition("@")[0] for u in used} == set(record), "record lists unused actions"


def test_no_action_runs_on_a_deprecated_runtime() -> None:
    for action, entry in actions_record().items():
        assert entry["runs"] not in DEPRECATED_RUNTIMES, action


def test_every_input_given_to_an_action_exists_in_the_pinned_version() -> None:
    record = actions_record()
    for step in steps():
        if step.uses:
            declared = set(record[step.uses.partition("@")[0]]["inputs"])
            unknown = set(step.inputs) - declared
            assert not unknown, f"{step.workflow}/{step.job}: {step.uses} has no input {unknown}"


def test_the_record_holds_pulumi_actions_inputs_the_workflows_rely_on() -> None:
    inputs = set(actions_record()["pulumi/actions"]["inputs"])
    assert {"command", "stack-name", "policyPacks", "policyPackConfigs", "remove"} <= inputs


# ------------------------------------------------------------------------------------------------
# ci


def test_ci_runs_what_dot_ci_run_runs_on_pull_requests_and_pushes() -> None:
    assert {"pull_request", "push"} <= set(triggers(load("ci")))
    scripts = [line for s in steps("ci") for line in script_lines(s.run)]
    assert scripts == ["bash .ci/run"]
    assert script_lines((ROOT / ".ci" / "run").read_text("utf-8"))[-2:] == [
        "make lint",
        "make test",
    ]


# ------------------------------------------------------------------------------------------------
# preview stacks


def _preview_env() -> dict[str, Any]:
    return dict(jobs("preview")["preview"]["env"])


def test_the_preview_stack_is_named_after_the_pull_request() -> None:
    assert _preview_env()["STACK"] == f"pr-{PR_NUMBER}"
    on = triggers(load("preview"))
    assert set(on["pull_request"]["types"]) == {"opened", "synchronize", "reopened"}


def test_one_run_at_a_time_per_pull_request_shared_with_the_destroy() -> None:
    for name in ("preview", "preview-destroy"):
        concurrency = load(name)["concurrency"]
        assert concurrency == {"group": f"pr-stack-{PR_NUMBER}", "cancel-in-progress": False}


def test_the_stack_is_created_from_the_checked_in_base_config_if_missing() -> None:
    lines = [line for s in steps("preview") for line in script_lines(s.run)]
    assert 'pulumi stack select --create "$STACK"' in lines
    assert 'cp .github/preview-stack.yaml "Pulumi.$STACK.yaml"' in lines
    assert (ROOT / ".github" / "preview-stack.yaml").is_file()


def test_the_preview_runs_the_policy_pack_with_its_preview_config() -> None:
    previews = [args for args in commands("preview", "pulumi") if args[:1] == ["preview"]]
    policed = [a for a in previews if "--policy-pack" in a]
    assert len(policed) == 1
    (args,) = policed
    assert args[args.index("--policy-pack") + 1] == "policies"
    config = args[args.index("--policy-pack-config") + 1]
    assert config == "policies/config/preview.json" and (ROOT / config).is_file()
    assert {"--stack", "--diff"} <= set(args)


def test_the_result_lands_in_one_updated_comment_with_the_cost() -> None:
    (comment,) = action_steps("preview", "marocchino/sticky-pull-request-comment")
    assert comment.inputs == {"header": "pulumi-preview", "path": "comment.md"}
    writer = next(s for s in steps("preview") if "preview_comment.py" in s.run)
    assert "--cost cost.md" in writer.run and "--log preview.log" in writer.run
    assert ["cost", "estimate", "--preview", "preview.json"] in commands("preview", "qwen-stress")
    failing = next(s for s in steps("preview") if s.body.get("if", "").startswith("steps.preview"))
    assert "exit 1" in failing.run, "a failed preview or policy fails the check after commenting"


def test_forks_are_not_previewed_with_the_repository_s_credentials() -> None:
    for name, job in (("preview", "preview"), ("preview-destroy", "destroy")):
        condition = jobs(name)[job]["if"]
        assert condition == "github.event.pull_request.head.repo.full_name == github.repository"


def test_a_closed_pull_request_s_stack_is_destroyed_and_removed() -> None:
    assert triggers(load("preview-destroy"))["pull_request"]["types"] == ["closed"]
    assert jobs("preview-destroy")["destroy"]["env"]["STACK"] == f"pr-{PR_NUMBER}"
    (destroy,) = action_steps("preview-destroy", "pulumi/actions")[-1:]
    assert destroy.inputs["command"] == "destroy"
    assert destroy.inputs["stack-name"] == "${{ env.STACK }}"
    assert destroy.inputs["remove"] is True


# ------------------------------------------------------------------------------------------------
# reap and the cloud load test


def test_reaping_runs_on_a_schedule_and_on_demand() -> None:
    on = triggers(load("reap"))
    assert on["schedule"] and "workflow_dispatch" in on
    assert ["reap", "--older-than", "2h"] in commands("reap", "qwen-stress")
    assert ["reap", "--older-than", "2h", "--dry-run"] in commands("reap", "qwen-stress")


def test_the_cloud_load_test_deploys_runs_keeps_reports_and_cleans_up() -> None:
    on = triggers(load("cloud-load-test"))
    assert set(on) == {"workflow_dispatch"} and "stack" in on["workflow_dispatch"]["inputs"]
    pulumi = action_steps("cloud-load-test", "pulumi/actions")
    (up,) = [s for s in pulumi if s.inputs.get("command") == "up"]
    assert up.inputs["policyPacks"] == "policies"
    assert up.inputs["policyPackConfigs"] == "policies/config/production.json"
    (run,) = [a for a in commands("cloud-load-test", "qwen-stress") if a[:1] == ["run"]]
    assert run == ["run", "--stack", "$STACK", "--plan", "capacity", "--fail-on-slo",
                   "--out", "$RUN_DIR"]  # fmt: skip
    (artifact,) = action_steps("cloud-load-test", "actions/upload-artifact")
    assert artifact.body["if"] == "always()" and artifact.inputs["path"] == "${{ env.RUN_DIR }}"
    summary = next(s for s in steps("cloud-load-test") if "GITHUB_STEP_SUMMARY" in s.run)
    assert summary.body["if"] == "always()" and "$RUN_DIR/report.md" in summary.run
    (destroy,) = [s for s in pulumi if s.inputs.get("command") == "destroy"]
    assert destroy.body["if"] == "always() && steps.stack.outputs.created == 'true'"
    assert destroy.inputs["remove"] is True


def test_every_policy_pack_config_a_workflow_names_exists() -> None:
    named = [s.inputs["policyPackConfigs"] for s in steps() if "policyPackConfigs" in s.inputs]
    named += [
        a[a.index("--policy-pack-config") + 1]
        for a in commands(None, "pulumi")
        if "--policy-pack-config" in a
    ]
    assert named
    for path in named:
        assert (ROOT / path).is_file(), path
