"""The domain layer: pure facts and rules every other part reads; no Pulumi, no Locust.

- ``catalog``: GPUs, EC2 instances and prices, Qwen2.5 models, cold-start timings (``data/``);
- ``prices``: the dated price table in use (bundled or refreshed); ``hourly_cost``: a stack's
  cost per hour, line by line, which the budget check and every estimate share;
- ``fit``: does a model fit a GPU, and with what KV cache, dtype and batch (vLLM's arithmetic);
- ``model_config`` / ``autoscaling`` / ``stack_config``: the typed ``qwen-stress:*`` settings;
- ``vllm_args``: vLLM's command line and environment; ``vllm_metrics``: its metric names;
- ``topology``: labels, taints, namespaces and service names the cluster's parts agree on;
- ``versions``: every pinned chart, image and add-on, with where it was checked;
- ``durations`` / ``validation``: how durations are written and how errors are worded.
"""
