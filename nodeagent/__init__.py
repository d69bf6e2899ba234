"""The node agent: reads this node's GPUs through NVML and writes its GPUNode's status.

Entry point: `main.main` (the `gpu-inventory-agent` console script; `--once` prints one status
and needs no cluster). `agent.Agent` is the loop; `backend.GPUBackend` the interface that
`nvml.NVMLBackend` implements (its XID event set in `nvmlevents`, NVML's errors in `nvmlbase`);
`writer.GPUNodeWriter` and `nodeview.NodeReader` the only modules that talk to the API server,
behind the interfaces in `ports`. Pure modules (no I/O, no client library): `backend`, `config`,
`decode`, `xidcatalog`, `xid`, `health`, `memory`, `earlier`, `release`, `status`, `reporter`,
`ports`. Nothing is re-exported here, so importing a pure module stays
cheap.
"""
