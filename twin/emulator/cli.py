"""``qwen-stress emulate``: serve one emulated vLLM replica until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from domain import lifeline
from domain.catalog import CatalogError
from domain.fit import FitError
from domain.validation import check_range
from domain.vllm_args import API_KEY_ENV

# Options that emulate and fleet share, declared once.
HostOption = Annotated[str, typer.Option(help="Address to listen on.")]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        help="Require 'Authorization: Bearer KEY' on /v1 and /generate.", envvar=API_KEY_ENV
    ),
]
DrainOption = Annotated[
    float, typer.Option(help="Seconds (0-3600) to let in-flight requests finish on shutdown.")
]


MAX_DRAIN_S = 3600.0
"""An hour: vLLM's own drain is 120 s; a longer wait is a stuck process, not a drain."""
_HEADER_SAFE = frozenset(chr(c) for c in range(0x21, 0x7F))
"""Visible ASCII: what an ``Authorization`` header carries intact. Spaces around the key are
stripped by parsers, control characters cannot be sent, other characters change on the way."""


class OptionError(ValueError):
    """A flag's value is refused; the message names the flag and the fix, never a secret."""


class _ListenError(RuntimeError):
    """The server could not take its address (in use, not this machine's, not allowed)."""


def check_serving_options(host: str, port: int, api_key: str | None, drain_timeout: float) -> None:
    """Refuse what emulate and fleet would otherwise serve differently from what was asked.

    ``--port 99999`` would listen on 99999 - 65536, ``--drain-timeout -1`` would not wait at all,
    ``--host ''`` would listen on every interface, and a key with a newline could never be sent.
    """
    try:
        check_range("--port", port, 0, 65535, fix="0 picks a free port")
        check_range(
            "--drain-timeout",
            drain_timeout,
            0,
            MAX_DRAIN_S,
            fix="seconds in-flight requests get to finish on shutdown",
        )
    except ValueError as err:
        raise OptionError(str(err)) from None
    if not host.strip():
        raise OptionError("--host is empty: give an address to listen on, such as 127.0.0.1")
    if api_key and not set(api_key) <= _HEADER_SAFE:
        raise OptionError(
            f"--api-key (or {API_KEY_ENV}) holds a space, a control character or a non-ASCII "
            "character, which no client can send intact in an Authorization header; use "
            "letters, digits and punctuation only (e.g. openssl rand -hex 24)"
        )


def refuse(err: Exception) -> typer.Exit:
    """Print ``err`` as the one-line usage error it is; the caller raises what this returns."""
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(2)


def serve_until_signal(
    start: Callable[[], Awaitable[str]],
    stop: Callable[[], Awaitable[None]],
    host: str,
    port: int,
) -> None:
    """Start a server, serve until SIGINT, SIGTERM or SIGHUP, then ``stop`` it (which drains).

    A server started by another process (a load test's twin) also stops when that process is
    gone (``domain.lifeline``).

    ``start`` returns the line announcing where it serves. A socket error while starting, and
    only then, is the address's fault: it is printed as such, exit code 1.
    """

    async def main() -> None:
        signalled = asyncio.Event()
        loop = asyncio.get_running_loop()
        # SIGHUP: the terminal that started it closed. The lifeline's SIGTERM: the process that
        # started it (a load test) died without stopping it.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, signalled.set)
        try:
            banner = await start()
        except OSError as exc:
            raise _ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        gc.freeze()  # start-up objects (catalog, pydantic, prometheus) never need collecting again
        typer.echo(banner)
        await signalled.wait()
        await stop()

    lifeline.hold()
    try:
        event_loop_runner()(main())
    except _ListenError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def emulate(
    *,
    model: Annotated[str, typer.Option(help="Hugging Face id, e.g. Qwen/Qwen2.5-7B-Instruct.")],
    gpu: Annotated[str, typer.Option(help="GPU type from the catalog, e.g. A10G, L4, T4.")],
    host: HostOption = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port to listen on, 0-65535 (0: any free port).")
    ] = 8000,
    api_key: ApiKeyOption = None,
    max_model_len: Annotated[
        int | None, typer.Option(help="Context length; default: the model's (as vLLM).")
    ] = None,
    gpu_memory_utilization: Annotated[
        float, typer.Option(help="Share of GPU memory vLLM may use.")
    ] = 0.9,
    tensor_parallel: Annotated[int, typer.Option(help="GPUs one replica shards over.")] = 1,
    tokenizer: Annotated[
        Path | None,
        typer.Option(help="tokenizer.json to count prompt tokens exactly (must load, or exit 2)."),
    ] = None,
    drain_timeout: DrainOption = 30.0,
) -> None:
    """Serve an emulated vLLM (OpenAI API, vLLM metrics, calibrated speed) for MODEL on GPU."""
    # The server loads with the command, not with the CLI: `qwen-stress run --url` never needs it.
    from twin.emulator.server import ReplicaServer  # noqa: PLC0415
    from twin.emulator.tokens import TokenizerError  # noqa: PLC0415

    try:
        check_serving_options(host, port, api_key, drain_timeout)
        server = ReplicaServer(
            model,
            gpu,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel=tensor_parallel,
            api_key=api_key,
            tokenizer_file=tokenizer,
        )
    except (OptionError, CatalogError, FitError, TokenizerError) as exc:
        raise refuse(exc) from None

    async def start() -> str:
        await server.start(host, port)
        fit = server.spec.fit
        return (
            f"Emulating {server.model_name} on {fit.gpu.name} x{fit.tensor_parallel}: "
            f"KV cache {fit.kv_cache_tokens:,} tokens, max_model_len {fit.max_model_len:,}, "
            f"{fit.max_num_seqs} sequences and {fit.max_num_batched_tokens} tokens per step; "
            f"prompts counted by {server.counter.name}. Serving {server.url} (Ctrl-C to stop)."
        )

    async def stop() -> None:
        typer.echo("Draining: no new requests; waiting for in-flight ones to finish.")
        if not await server.drain(drain_timeout):
            typer.echo(f"Drain timed out after {drain_timeout:g} s; aborting what is left.")
        await server.stop()

    serve_until_signal(start, stop, host, port)


def event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """The uvloop runner where installed (faster sockets and timers), else asyncio's."""
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415

        return uvloop.run
    return asyncio.run
