"""The local twin of the cluster, on loopback, with no GPU and no cloud.

``emulator``: one vLLM replica (OpenAI API, vLLM's metrics, calibrated speed); ``fleet``: many
of them behind a router, scaled as KEDA, the HPA and the Cluster Autoscaler would. Built on
``domain`` alone, so the cluster and the twin read the same spec and catalog.
"""
