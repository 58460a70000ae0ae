"""The local autoscaling twin: an emulated vLLM fleet that scales as it would in the cluster.

KEDA, the HPA and the Cluster Autoscaler are replayed from the same ``AutoscalingSpec`` the KEDA
ScaledObject renders, on emulated replicas behind one router port.

Modules, one job each:

- ``hpa``: the HPA's arithmetic for KEDA's ``AverageValue`` triggers (tolerance, largest
  proposal, stabilisation windows, scale policies, bounds), as pure functions;
- ``timings``: node boot, image pull, weights and engine start-up, from the catalog's timings;
- ``sim_cluster``: nodes, pods, the Deployment controller, the scheduler and the Cluster
  Autoscaler, stepped in control-plane time (a test can step it in virtual time);
- ``control_plane``: the scrape, HPA and autoscaler loops, each at its own period;
- ``router``: the Service, least outstanding requests over ready replicas, streams passed through;
- ``fleet_spec``: what the fleet is, from a stack file or from a model and a GPU;
- ``fleet``: replicas (``twin.emulator.ReplicaServer``), router and control plane in one
  event loop on a scaled clock, and the status the load-test runner polls;
- ``cli``: ``qwen-stress fleet``.
"""
