"""The MCP server: answers GPU questions from the GPUInventory and GPUNode objects.

Entry points: `server.build_server(settings)` (the MCPServer), `app.build_http_app(settings)`
(stateless streamable HTTP with Kubernetes bearer auth), `__main__.main` (`gpu-inventory-mcp`).
`views` holds the pure answer logic; `cache` the watch cache it reads.
"""
