"""A Cloudify Manager 4.0 cluster-API simulator: many machines, one process, a control API.

Layers: `state` (pure state machine and simulated consul) <- `api` (the Cloudify REST
semantics, pure) <- `server` (sockets, faults, request log) + `control` (the control API)
<- `cli` (the `cloudify-manager-sim` console script). `harness` starts the CLI as a
subprocess for tests and benchmarks. Nothing here imports the operator's REST client.
"""
