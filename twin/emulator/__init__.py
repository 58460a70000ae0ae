"""The vLLM emulator: an OpenAI-compatible server that behaves like vLLM on a given GPU.

It stands in for vLLM in every local test and in ``make demo``: the same API, the same Prometheus
metrics, and a continuous-batching engine whose step times come from a roofline model calibrated
to published vLLM measurements. Modules, one job each:

- ``perf_model``: step duration from the catalog's GPU and model numbers, fitted efficiencies and
  vLLM's host costs (per step, per sequence, and the API server's latency per request);
- ``engine``: the V1-style scheduler (FCFS, KV blocks, chunked prefill, preemption, prefix cache)
  stepped by an external clock; ``simulate`` drives it in virtual time;
- ``calibration``: the fit to ``twin/data/observations.csv`` and its residual table;
- ``driver``: steps an engine in real time on asyncio and delivers tokens;
- ``tokens`` / ``filler``: prompt token counting and the generated text;
- ``http_protocol`` / ``api`` / ``metrics``: HTTP/1.1, the OpenAI routes, vLLM's metrics;
- ``server``: one replica (``ReplicaServer``); ``cli``: ``qwen-stress emulate``.

In-process API (for the local autoscaling twin: several replicas in one process and event loop,
each on its own port with its own ``/metrics`` registry)::

    from twin.emulator.server import ReplicaServer

    replica = ReplicaServer(
        "Qwen/Qwen2.5-7B-Instruct", "A10G",
        max_model_len=8192, gpu_memory_utilization=0.9, tensor_parallel=1, api_key=None,
    )                                   # CatalogError / FitError: the catalog's message
    port = await replica.start("127.0.0.1", 0)  # 0 picks a free port; replica.url is set
    stats = replica.stats()             # EngineStats: running, waiting, kv_cache_usage, ...
    replica.registry                    # its own prometheus CollectorRegistry
    replica.draining                    # True once drain() or stop() began
    await replica.drain(timeout=60)     # new requests get 503 (/health too); in-flight finish
    await replica.stop()                # close the listener and connections, stop the engine

``stats()`` reads the engine directly, so an autoscaler in the same loop needs no scrape; the
numbers are the ones ``/metrics`` exports (``vllm:num_requests_running``, ``_waiting``,
``vllm:kv_cache_usage_perc``). ``replica.lag`` holds the emission lag of every token so far.
Replicas share nothing but the event loop (and, when passed as ``spec=`` / ``counter=``, the
immutable ``ReplicaSpec`` and the stateless token counter, as the fleet's do); any asyncio loop
works (the CLI uses uvloop).
"""
