"""``qwen-stress fleet``: serve an autoscaled emulated fleet on one port until SIGINT or SIGTERM."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from domain.catalog import CatalogError
from domain.durations import TIME_SCALES
from domain.fit import FitError
from domain.stack_config import ConfigError, load_stack_file
from domain.topology import FLEET_STATUS_PATH
from domain.validation import check_range
from twin.emulator.cli import (
    ApiKeyOption,
    DrainOption,
    HostOption,
    OptionError,
    check_serving_options,
    refuse,
    serve_until_signal,
)

if TYPE_CHECKING:
    from twin.fleet.fleet_spec import FleetSpec


class FleetUsageError(ValueError):
    """The flags do not describe a fleet; the message says what to pass instead."""


def fleet_spec(
    model: str | None,
    gpu: str | None,
    config: Path | None,
    *,
    max_model_len: int | None = None,
    gpu_memory_utilization: float = 0.9,
    tensor_parallel: int = 1,
) -> FleetSpec:
    """The fleet the flags describe: a stack file, or a model and a GPU type."""
    from twin.fleet.fleet_spec import FleetSpec  # noqa: PLC0415 - the twin loads when used

    if config is not None:
        if model or gpu:
            raise FleetUsageError("--config sets the model and GPU; drop --model/--gpu or --config")
        try:
            return FleetSpec.from_stack(load_stack_file(config))
        except ConfigError as err:
            raise FleetUsageError(str(err)) from None
    if not model or not gpu:
        raise FleetUsageError("pass --model and --gpu, or --config Pulumi.<stack>.yaml")
    try:
        return FleetSpec.for_model(
            model,
            gpu,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel=tensor_parallel,
        )
    except (CatalogError, FitError) as err:
        raise FleetUsageError(f"--model {model} --gpu {gpu}: {err}") from None


def describe(spec: FleetSpec, time_scale: float) -> str:
    """One paragraph: what is emulated, its bounds, the time scale and the cold-start phases."""
    a, pool, t = spec.autoscaling, spec.pool, spec.timings
    return (
        f"Fleet: {spec.model} on {spec.gpu} ({spec.instance_type}, {pool.gpus_per_node} GPU(s) "
        f"per node, {spec.tensor_parallel} per replica); replicas {a.min_replicas}.."
        f"{a.max_replicas}, nodes {pool.min_nodes}..{pool.max_nodes}; targets per replica "
        f"{a.target_waiting_per_replica:g} waiting, {a.target_running_per_replica:g} running. "
        f"Time scale {time_scale:g} (1 s here is {1 / time_scale:g} s of cluster time): node "
        f"boot {t.node_boot_s:g} s, image pull {t.image_pull_s:g} s, pod start "
        f"{t.pod_start_s:.0f} s, scale-down window {a.scale_down.stabilization_window_seconds} s."
    )


def fleet(
    *,
    model: Annotated[
        str | None, typer.Option(help="Hugging Face id, e.g. Qwen/Qwen2.5-7B-Instruct.")
    ] = None,
    gpu: Annotated[str | None, typer.Option(help="GPU type from the catalog, e.g. A10G.")] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Pulumi.<stack>.yaml to rehearse: model, GPU, nodes, autoscaling."),
    ] = None,
    time_scale: Annotated[
        float,
        typer.Option(
            help="Multiply every control-plane delay and window by this, 0.001-1000 (0.05: 20x)."
        ),
    ] = 1.0,
    host: HostOption = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port of the Service, 0-65535 (0: any free port).")
    ] = 8000,
    api_key: ApiKeyOption = None,
    max_model_len: Annotated[
        int | None, typer.Option(help="Context length with --model; default: the model's.")
    ] = None,
    gpu_memory_utilization: Annotated[
        float, typer.Option(help="Share of GPU memory vLLM may use, with --model.")
    ] = 0.9,
    tensor_parallel: Annotated[
        int, typer.Option(help="GPUs one replica shards over, with --model.")
    ] = 1,
    drain_timeout: DrainOption = 30.0,
) -> None:
    """Serve an emulated vLLM fleet that autoscales like KEDA + HPA + Cluster Autoscaler."""
    # The twin loads when used, not with the CLI.
    from twin.emulator.tokens import TokenizerError  # noqa: PLC0415
    from twin.fleet.fleet import TIME_SCALE_FIX, Fleet  # noqa: PLC0415

    try:
        check_serving_options(host, port, api_key, drain_timeout)
        try:
            check_range("--time-scale", time_scale, *TIME_SCALES, fix=TIME_SCALE_FIX)
        except ValueError as err:
            raise OptionError(str(err)) from None
        spec = fleet_spec(
            model,
            gpu,
            config,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel=tensor_parallel,
        )
        instance = Fleet(spec, time_scale=time_scale, host=host, api_key=api_key)
    except (OptionError, FleetUsageError, TokenizerError) as err:
        raise refuse(err) from None
    typer.echo(describe(spec, time_scale))

    async def start() -> str:
        url = f"http://{host}:{await instance.start(port)}"
        return f"Serving {url} (status: {url}{FLEET_STATUS_PATH}; Ctrl-C to stop)."

    async def stop() -> None:
        typer.echo(
            "Stopping: no new connections; in-flight requests finish, then every replica stops."
        )
        await instance.stop(drain_timeout)

    serve_until_signal(start, stop, host, port)
