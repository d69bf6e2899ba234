"""`python -m gpu_inventory.nodeagent` and the `gpu-inventory-agent` console script."""

from gpu_inventory.nodeagent.main import main

if __name__ == "__main__":
    raise SystemExit(main())
