"""gpu-inventory operator: keeps GPUInventory/cluster and GPUNode `status.kubernetes` current.

Layout (each module has one job):
- `main`: kopf registration only (settings, event handlers, start/stop);
- `feeding`, `projections`, `store`: events -> small projections -> per-node sums, what changed;
- `status`, `patches`: desired status and the smallest merge patch (pure, `now` injected);
- `writer`: the only writer; `kubeapi`: its API calls; `election`: the Lease for replicas;
- `config`, `metrics`, `runtime`, `__main__`: options, Prometheus, wiring, the console script.

Pure (no I/O, no client library): accounting, config, projections, store, status, patches,
feeding.
"""
