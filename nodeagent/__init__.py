"""The node agent: reads this node's GPUs through NVML and writes its GPUNode's status.

Entry point: `main.main` (the `gpu-inventory-agent` console script). `agent.Agent` is the
loop; `backend.GPUBackend` the interface that `nvml.NVMLBackend` and `fake.FakeBackend`
implement; `writer.GPUNodeWriter` the only module that talks to the API server. Pure modules
(no I/O, no client library): `backend`, `config`, `decode`, `xid`, `health`, `status`,
`reporter`. Nothing is re-exported here, so importing a pure module stays cheap.
"""
