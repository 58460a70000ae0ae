"""Destroy and remove one load-test stack, retried: what the orchestrator and ``reap`` share.

Each attempt refreshes first (the state may be stale: a node the spot market took, a pending
create an interrupted ``up`` left, which ``--clear-pending-creates`` drops and this names), then
destroys. A locked stack (``ConcurrentUpdateError``: the operation that held the lock died) is
cancelled and the attempt repeated. Other failures (AWS throttling, a node group still draining)
wait and retry. The stack is removed from the backend only once it is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from loadtest.cloud.workspace import (
    EphemeralStack,
    OnOutput,
    StackLockedError,
    StackMissingError,
    Workspace,
    WorkspaceError,
)

Blocking = Callable[[str, Callable[[], Any]], Any]
"""Runs one long operation, named for progress messages (the orchestrator adds heartbeats)."""


@dataclass
class TeardownResult:
    """What the teardown achieved; ``error`` is the last failure when the stack may remain."""

    stack: EphemeralStack | None
    destroyed: bool = False
    removed: bool = False
    attempts: int = 0
    dropped: list[str] = field(default_factory=list)
    """URNs of pending creates dropped from the state (they may exist without being tracked)."""
    error: str | None = None

    @property
    def gone(self) -> bool:
        """Nothing of the stack is left, in the cloud or in the backend."""
        return self.destroyed and self.removed


def _direct(_what: str, work: Callable[[], Any]) -> Any:
    return work()


def destroy_stack(
    workspace: Workspace,
    name: str,
    stack: EphemeralStack | None,
    *,
    say: Callable[[str], None],
    output: Callable[[str], OnOutput],
    wait: Callable[[float], None],
    retry_delays_s: tuple[float, ...],
    blocking: Blocking = _direct,
) -> TeardownResult:
    """Refresh, destroy and remove ``name``; ``stack`` is its handle if the caller has one."""
    result = TeardownResult(stack)
    for delay in (*retry_delays_s, None):
        result.attempts += 1
        try:
            if result.stack is None:
                result.stack = workspace.select(name)
            handle = result.stack
            result.dropped += blocking(
                "refreshing the stack", partial(handle.refresh, output("refresh"))
            )
            blocking("destroying the stack", partial(handle.destroy, output("destroy")))
            result.destroyed = True
            break
        except StackMissingError:
            # Never created, or removed by someone else: nothing is left to pay for.
            result.destroyed = result.removed = True
            result.stack = None
            return result
        except StackLockedError as err:
            result.error = str(err)
            say(f"{err}; cancelling the operation that holds the lock, then retrying")
            try:
                if result.stack is not None:
                    result.stack.cancel()
                continue  # the lock is gone: try again now, without waiting
            except WorkspaceError as cancel_err:
                result.error = f"{err}; cancel failed: {cancel_err}"
                say(f"cancel failed: {cancel_err}")
        except Exception as err:
            result.error = (
                str(err) if isinstance(err, WorkspaceError) else f"{type(err).__name__}: {err}"
            )
            say(f"destroy attempt {result.attempts} failed: {result.error}")
        if delay is None:
            break
        say(f"retrying the destroy in {delay:.0f} s")
        wait(delay)
    if not result.destroyed or result.stack is None:
        return result
    try:
        blocking("removing the stack", result.stack.remove)
        result.removed = True
        result.error = None
    except StackMissingError:
        result.removed = True
        result.error = None
    except Exception as err:
        result.error = f"destroyed, but removing the stack from the backend failed: {err}"
    return result
