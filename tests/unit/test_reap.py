"""``qwen-stress reap``: stacks left behind are found (backend and journal) and the old ones go."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loadtest.cli import app
from loadtest.cloud.journal import Journal, JournalEntry, State
from loadtest.cloud.reap import EXIT_STACK_LEFT, reap_stacks
from loadtest.cloud.workspace import CREATED_AT_TAG, EXPIRES_AT_TAG, RUN_ID_TAG, WorkspaceError
from tests.cloud_fakes import ALWAYS, FakeStack, FakeWorkspace, listing

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC
HOUR = 3600.0


def _stack(ws: FakeWorkspace, name: str, age_h: float, expires_in_h: float | None = None) -> None:
    tags = {RUN_ID_TAG: name, CREATED_AT_TAG: f"{NOW - age_h * HOUR:.0f}"}
    if expires_in_h is not None:
        tags[EXPIRES_AT_TAG] = f"{NOW + expires_in_h * HOUR:.0f}"
    ws.stacks[name] = FakeStack(ws, name, f"/work/{name}", tags=tags, resources=3)
    ws.listed.append(listing(name, tags, datetime.fromtimestamp(NOW - age_h * HOUR, UTC)))


def _entry(stack: str, age_h: float, state: State = "up") -> JournalEntry:
    return JournalEntry(
        stack=stack, project="qwen-stress-loadtest", run_id=stack.rsplit("/", 1)[-1],
        platform_stack="dev", run_dir="runs/x", work_dir=f"/work/{stack}",
        created_at=NOW - age_h * HOUR, expires_at=NOW - age_h * HOUR + 1800, pid=1, host="laptop",
        state=state,
    )  # fmt: skip


def _reap(ws: FakeWorkspace, journal: Journal, **kw: object) -> tuple[int, list[str]]:
    said: list[str] = []
    code = reap_stacks(
        ws, journal, older_than_s=2 * HOUR, dry_run=bool(kw.pop("dry_run", False)), now=NOW,
        say=said.append, retry_delays_s=(0.0,), wait=lambda _s: None, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return code, said


def test_old_expired_stacks_go_and_young_or_running_ones_stay(tmp_path: Path) -> None:
    ws = FakeWorkspace()
    _stack(ws, "old-run", age_h=3, expires_in_h=-2)
    _stack(ws, "young-run", age_h=0.5, expires_in_h=-0.1)
    _stack(ws, "long-soak", age_h=3, expires_in_h=4)  # a 7-hour run still going
    code, said = _reap(ws, Journal(tmp_path))
    assert code == 0
    assert set(ws.stacks) == {"young-run", "long-soak"}
    assert [op for op, name in ws.calls if name == "old-run"] == [
        "select",
        "refresh",
        "destroy",
        "remove",
    ]
    table = "\n".join(said)
    assert "young-run" in table and "younger than 2h00m" in table
    assert "long-soak" in table and "may go on until 2026-01-01 04:00 UTC" in table


def test_dry_run_lists_and_destroys_nothing(tmp_path: Path) -> None:
    ws = FakeWorkspace()
    _stack(ws, "old-run", age_h=3)
    code, said = _reap(ws, Journal(tmp_path), dry_run=True)
    assert code == 0 and "old-run" in ws.stacks
    assert ws.ops("refresh", "destroy", "remove") == []
    assert any("old-run" in line and "would destroy" in line and "3h00m" in line for line in said)


def test_a_journal_entry_of_a_killed_driver_is_reaped_and_closed(tmp_path: Path) -> None:
    ws = FakeWorkspace()
    journal = Journal(tmp_path)
    journal.open(_entry("acme/qwen-stress-loadtest/killed-run", age_h=5))
    ws.stacks["acme/qwen-stress-loadtest/killed-run"] = FakeStack(
        ws, "acme/qwen-stress-loadtest/killed-run", "/w", resources=4
    )
    code, said = _reap(ws, journal)
    assert code == 0 and not ws.stacks
    assert journal.entries() == ([], [])
    assert any("journal" in line and "killed-run" in line for line in said)


def test_backend_and_journal_rows_of_one_run_merge(tmp_path: Path) -> None:
    ws = FakeWorkspace()
    _stack(ws, "run-a", age_h=3)
    journal = Journal(tmp_path)
    journal.open(_entry("run-a", age_h=3))
    _, said = _reap(ws, journal, dry_run=True)
    rows = [line for line in said if line.startswith("run-a")]
    assert len(rows) == 1 and "backend+journal" in rows[0]


def test_a_failed_teardown_of_its_own_run_is_due_whatever_its_age(tmp_path: Path) -> None:
    ws = FakeWorkspace()
    _stack(ws, "fresh-failure", age_h=0.2, expires_in_h=1)
    journal = Journal(tmp_path)
    journal.open(_entry("fresh-failure", age_h=0.2, state="destroy_failed"))
    code, _ = _reap(ws, journal)
    assert code == 0 and not ws.stacks


def test_only_the_named_stack_whatever_its_age(tmp_path: Path) -> None:
    ws = FakeWorkspace()
    _stack(ws, "a", age_h=0.1, expires_in_h=3)
    _stack(ws, "b", age_h=5)
    code, _ = _reap(ws, Journal(tmp_path), only="a")
    assert code == 0 and set(ws.stacks) == {"b"}


def test_a_stack_that_will_not_go_is_reported_and_the_exit_code_says_so(tmp_path: Path) -> None:
    ws = FakeWorkspace(faults={"destroy": [WorkspaceError("pulumi destroy failed: boom"), ALWAYS]})
    _stack(ws, "stuck", age_h=3)
    journal = Journal(tmp_path)
    journal.open(_entry("stuck", age_h=3))
    code, said = _reap(ws, journal)
    assert code == EXIT_STACK_LEFT
    assert [e.state for e in journal.entries()[0]] == ["destroy_failed"]
    assert any("stuck: NOT destroyed" in line and "boom" in line for line in said)


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_unreadable_listing_or_journal_file_is_said_and_the_exit_code_says_so(
    tmp_path: Path, dry_run: bool
) -> None:
    """A listing that failed hides what the backend holds: a scheduled reap must not go green."""
    ws = FakeWorkspace(faults={})
    ws.list_stacks = lambda: (_ for _ in ()).throw(WorkspaceError("backend down"))  # type: ignore[method-assign]
    journal = Journal(tmp_path)
    journal.dir.mkdir(parents=True)
    (journal.dir / "junk.json").write_text("{not json")
    code, said = _reap(ws, journal, dry_run=dry_run)
    assert code == EXIT_STACK_LEFT
    assert any("backend down" in line for line in said)
    assert any("junk.json: not a journal entry" in line for line in said)
    assert "no load-test stack left behind" not in said
    assert "no load-test stack in the journal" in said
    assert (journal.dir / "junk.json").exists()


@pytest.mark.parametrize("name", ["", "../x", "a b", "x/../../y"])
def test_the_command_refuses_a_stack_name_pulumi_would_not_have_given(name: str) -> None:
    result = CliRunner().invoke(app, ["reap", "--stack", name, "--dry-run"])
    assert result.exit_code == 2, result.output
    assert f"--stack {name!r}: write it as Pulumi names it" in result.output


def test_the_command_refuses_a_bad_duration() -> None:
    result = CliRunner().invoke(app, ["reap", "--older-than", "two hours"])
    assert result.exit_code == 2
    assert "--older-than 'two hours'" in result.output


@pytest.mark.parametrize("flag", ["--older-than", "--dry-run", "--stack"])
def test_reap_help_lists_its_flags(flag: str) -> None:
    result = CliRunner().invoke(app, ["reap", "--help"])
    assert result.exit_code == 0 and flag in result.output
