"""`build_server(settings)`: the MCP server, its tools and its one resource.

Every tool answers from the watch cache's current snapshot (see `cache.py`): no NVML, no pod
lists, no fan-out to nodes, no API request per call. The logic lives in `views`; this module
wires it to MCP and turns expected failures into tool errors the model can read. Importing it
has no side effects.

The cache is created here and started by the lifespan, which also yields it as `AppState`.
Handlers reach it through this factory's closure rather than `ctx.request_context`, because the
SDK gives static resources no Context, and tools and resource should read it the same way.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import anyio.to_thread
import pydantic
import pydantic_core
from mcp.server import MCPServer
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gpu_inventory.mcpserver import auth, kube, schemas, shapes, views
from gpu_inventory.mcpserver.cache import InventoryCache, WatchTiming
from gpu_inventory.mcpserver.settings import Settings
from gpu_inventory.mcpserver.subscriptions import LegacySubscribers

log = logging.getLogger(__name__)

RESOURCE_URI = "gpuinventory://cluster"
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
FIRST_LIST_WAIT_SECONDS = 10.0
"""How long a call made while the cache is still loading waits for the first LIST."""
INSTRUCTIONS = """\
Answers questions about the GPUs of one Kubernetes cluster from its GPUInventory and GPUNode
objects: what GPUs exist, which are free, which are sick, and where a job can run.
get_gpu_inventory lists nodes and GPUs a page at a time, with the whole-cluster summary on every
page (filter by node, product or health, or follow next_cursor, to see more);
get_gpu_health lists unhealthy and degraded GPUs with the recommended action;
find_gpu_capacity finds the nodes where a pod asking for N GPUs fits now. Read-only."""

_READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
_LIMIT = (
    "{what}, 1 to 500. Omitted: as many as fit in about 30,000 characters (at least one), "
    "so the answer fits a model's context; counts and truncated say what was left out."
)
_T = TypeVar("_T")


@dataclass(frozen=True)
class AppState:
    """What the lifespan provides to handlers."""

    cache: InventoryCache


def _utcnow() -> datetime:
    return datetime.now(UTC)


def server_version() -> str:
    """The installed gpu-inventory version, sent as `serverInfo.version`."""
    try:
        return importlib.metadata.version("gpu-inventory")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def compact(answer: BaseModel) -> CallToolResult:
    """The answer as a tool result: structured content, and as the text a model reads the same
    JSON without indentation (the SDK would indent it by 2, a third more text for nothing)."""
    text = answer.model_dump_json()
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=pydantic_core.from_json(text),
    )


class _KnownArgumentsOnly(BaseModel):
    """Mixed into a tool's argument model: an argument the tool does not take is an error that
    names it and lists the ones it does (pydantic's own extra_forbidden error lists none)."""

    model_config = ConfigDict(extra="forbid")

    @pydantic.model_validator(mode="before")
    @classmethod
    def _known_only(cls, data: Any) -> Any:
        known = [field.alias or name for name, field in cls.model_fields.items()]
        unknown = sorted(set(data) - set(known)) if isinstance(data, dict) else []
        if unknown:
            raise ValueError(
                f"unknown argument {', '.join(map(repr, unknown))}; this tool takes: "
                + ", ".join(known)
            )
        return data


def strict_tool(fn: Callable[..., Any], *, title: str) -> Tool:
    """A read-only tool from `fn` whose docstring is dedented (the SDK sends it as is), that
    refuses arguments it does not take (a misspelt filter silently ignored would answer
    another question than the one asked; the input schema says `additionalProperties: false`),
    and whose output schema is spelled flat so clients validate answers quickly (`schemas`)."""
    fn.__doc__ = inspect.cleandoc(fn.__doc__ or "")
    tool = Tool.from_function(fn, title=title, annotations=_READ_ONLY)
    loose = tool.fn_metadata.arg_model
    strict = pydantic.create_model(loose.__name__, __base__=(loose, _KnownArgumentsOnly))
    output = tool.fn_metadata.output_schema
    metadata = tool.fn_metadata.model_copy(
        update={"arg_model": strict, "output_schema": schemas.flat(output) if output else None}
    )
    return tool.model_copy(
        update={"fn_metadata": metadata, "parameters": strict.model_json_schema(by_alias=True)}
    )


def tune_gc() -> None:
    """Run the cyclic garbage collector less often; call once per process.

    The cache holds a large, long-lived, acyclic graph of models (about 150,000 objects at 1,000
    GPU nodes), and a big answer allocates as many short-lived ones. With the default
    thresholds that promotes enough objects to run a full collection every few big answers,
    each a ~200 ms pause that walks the whole cache for nothing. Refcounting still frees
    everything that is not in a cycle at once.
    """
    gc.set_threshold(50_000, 20, 10)


def build_server(
    settings: Settings | None = None,
    *,
    cache: InventoryCache | None = None,
    token_verifier: TokenVerifier | None = None,
    clock: Callable[[], datetime] = _utcnow,
) -> MCPServer[AppState]:
    """A ready MCPServer. Nothing starts until a transport enters its lifespan.

    `cache` defaults to a watch cache on the settings' kubeconfig; pass one built with
    `InventoryCache.from_models` to serve fixed data. `token_verifier` turns on bearer auth for
    the HTTP app (see `auth.py`).
    """
    settings = settings or Settings()
    if cache is None:
        cache = InventoryCache(
            kube.api_client_factory(settings.kubeconfig, settings.context),
            timing=WatchTiming(watch_timeout_seconds=settings.watch_timeout_seconds),
        )
    watched = cache
    bus = InMemorySubscriptionBus()
    legacy = LegacySubscribers([RESOURCE_URI])
    users = 0
    pending: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        # In-memory clients enter the lifespan once each; the cache runs while any is open.
        nonlocal users
        loop = asyncio.get_running_loop()

        def publish() -> None:
            for update in (
                bus.publish(ResourceUpdated(uri=RESOURCE_URI)),
                legacy.publish(RESOURCE_URI),
            ):
                task = loop.create_task(update)
                pending.add(task)
                task.add_done_callback(pending.discard)

        def changed() -> None:  # called from a watch thread
            loop.call_soon_threadsafe(publish)

        unsubscribe = watched.subscribe(changed)
        users += 1
        if users == 1:
            watched.start()
        try:
            yield AppState(cache=watched)
        finally:
            unsubscribe()
            users -= 1
            if users == 0:
                await anyio.to_thread.run_sync(watched.stop)

    auth_settings = None
    if token_verifier is not None:
        auth_settings = AuthSettings(
            # Required by the SDK; with no resource_server_url nothing advertises it.
            issuer_url=AnyHttpUrl("https://kubernetes.default.svc"),
            resource_server_url=None,
            required_scopes=[auth.REQUIRED_SCOPE],
        )
    max_staleness = settings.max_staleness_seconds
    memo = views.AnswerMemo()

    def answer(
        name: str,
        view: Callable[..., _T],
        *,
        error: type[Exception] = ToolError,
        **arguments: Any,
    ) -> _T:
        """`view` on the current snapshot. A bad argument or an inventory that cannot be trusted
        becomes a readable tool (or resource) error; anything else, a ValueError included, is a
        bug, logged with its traceback and reported with its cause (the SDK would only say
        "Error executing tool <name>"; it names a tool, so only a resource's error names it)."""
        watched.wait_settled(FIRST_LIST_WAIT_SECONDS)
        try:
            return view(
                watched.snapshot(), now=clock(), max_staleness_seconds=max_staleness, **arguments
            )
        except (views.ArgumentError, views.InventoryUnavailableError) as failure:
            raise error(str(failure)) from failure
        except Exception as bug:
            log.exception("%s failed", name)
            where = f"{name}: " if error is not ToolError else ""
            raise error(
                f"{where}internal error in gpu-inventory-mcp ({type(bug).__name__}: {bug}); this "
                "is a bug: the server log has the details, please report it"
            ) from bug

    def get_gpu_inventory(
        *,
        include_k8s_metadata: Annotated[
            bool,
            Field(description="Include each node's labels, conditions and GPU resource numbers."),
        ] = True,
        node: Annotated[
            str | None,
            Field(description="Only this node (exact name).", max_length=253),
        ] = None,
        product: Annotated[
            str | None,
            Field(
                description=(
                    "Only nodes with this GPU product. Case, spaces and dashes do not matter and "
                    "whole words match, so 'A100' matches 'NVIDIA-A100-SXM4-80GB'."
                ),
                max_length=128,
            ),
        ] = None,
        only_unhealthy_or_degraded: Annotated[
            bool,
            Field(description="Only nodes with unhealthy or degraded GPUs, and only those GPUs."),
        ] = False,
        limit: Annotated[
            int | None,
            Field(
                description=_LIMIT.format(what="Nodes per page")
                + " The summary always covers every node.",
                ge=1,
                le=views.MAX_LIMIT,
            ),
        ] = None,
        cursor: Annotated[
            str | None,
            Field(
                description="next_cursor from the previous page, with the same filters.",
                max_length=2048,
            ),
        ] = None,
        only_unhealthy: Annotated[
            bool | None,
            Field(description="Renamed: use only_unhealthy_or_degraded."),
        ] = None,
    ) -> Annotated[CallToolResult, shapes.InventoryAnswer]:
        """The cluster's GPUs: a whole-cluster summary, then per node its GPUs (model, memory,
        temperature, utilisation, health), agent pod and Kubernetes view (labels, every node
        condition, capacity/allocatable/allocated of the GPU resource).

        Nodes are sorted by name and come one page at a time: when next_cursor is set, call
        again with cursor=next_cursor and the same filters for the next page. Filters narrow
        the node list but never the summary. An unknown node or product is an error that lists
        the valid values. inventory_current is false (and warnings say why) when the operator
        has not confirmed the numbers recently."""
        if only_unhealthy is not None:
            raise ToolError(
                "only_unhealthy was renamed only_unhealthy_or_degraded (it always listed "
                "degraded GPUs too); pass that instead"
            )
        return compact(
            answer(
                "get_gpu_inventory",
                views.inventory_answer,
                include_k8s_metadata=include_k8s_metadata,
                node=node,
                product=product,
                only_unhealthy_or_degraded=only_unhealthy_or_degraded,
                limit=limit,
                cursor=cursor,
                memo=memo,
            )
        )

    def get_gpu_health(
        severity: Annotated[
            shapes.Severity,
            Field(
                description="'degraded' lists unhealthy and degraded GPUs; "
                "'unhealthy' lists only unhealthy ones."
            ),
        ] = "degraded",
        limit: Annotated[
            int | None,
            Field(description=_LIMIT.format(what="GPUs listed"), ge=1, le=views.MAX_LIMIT),
        ] = None,
    ) -> Annotated[CallToolResult, shapes.HealthAnswer]:
        """Unhealthy and degraded GPUs, newest event first, each with its health reasons, recent
        XID errors, the driver's recovery action and one recommended action (None,
        RestartApplication, Investigate, RecoverIMEXDomain, ResetGPU, DrainAndResetGPU,
        RebootNode or ReplaceGPU), with counts over the whole cluster. Also lists GPU nodes
        that are NotReady and nodes whose agent stopped reporting. Nothing is changed: acting
        on the advice is up to the operator of the cluster."""
        return compact(
            answer("get_gpu_health", views.health_answer, severity=severity, limit=limit)
        )

    def find_gpu_capacity(
        count: Annotated[
            int,
            Field(
                description="GPUs the pod asks for (units of the primary GPU resource).",
                ge=1,
                le=views.MAX_COUNT,
            ),
        ],
        product: Annotated[
            str | None,
            Field(
                description="Only nodes with this GPU product (matched as in get_gpu_inventory).",
                max_length=128,
            ),
        ] = None,
        limit: Annotated[
            int | None,
            Field(description=_LIMIT.format(what="Nodes listed"), ge=1, le=views.MAX_LIMIT),
        ] = None,
    ) -> Annotated[CallToolResult, shapes.CapacityAnswer]:
        """Nodes where a pod asking for `count` GPUs could be placed now: Ready, with at least
        `count` units free (allocatable minus what bound pods request), and not reporting every
        GPU unhealthy. Best first means tightest fit first (least left over): placing a job in
        the smallest gap that holds it keeps whole nodes free for the large jobs that need
        them. Taints, affinity and other resources are not considered."""
        return compact(
            answer(
                "find_gpu_capacity",
                views.capacity_answer,
                count=count,
                product=product,
                limit=limit,
            )
        )

    tools = [
        strict_tool(get_gpu_inventory, title="GPU inventory"),
        strict_tool(get_gpu_health, title="GPU health"),
        strict_tool(find_gpu_capacity, title="Find GPU capacity"),
    ]
    mcp = MCPServer[AppState](
        "gpu-inventory",
        title="GPU inventory",
        version=server_version(),
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        subscriptions=bus,
        token_verifier=token_verifier,
        auth=auth_settings,
        tools=tools,
        log_level=settings.log_level.upper(),  # type: ignore[arg-type]
    )

    @mcp.resource(
        RESOURCE_URI,
        name="gpu-inventory-summary",
        title="GPU inventory summary",
        description="Whole-cluster GPU totals, per resource and per product, and conditions. "
        "Subscribers are told when it changes.",
        mime_type="application/json",
    )
    def inventory_summary() -> str:
        resource = answer(RESOURCE_URI, views.inventory_resource, error=ResourceError)
        return resource.model_dump_json()

    async def healthz(_: Request) -> Response:
        """Liveness: the process serves HTTP. Open, no auth."""
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        """Readiness: this replica can answer from its cache (listed once, and not cut off from
        the API server for longer than max_staleness_seconds). Open, no auth."""
        snapshot = watched.snapshot()
        reason = views.not_ready(snapshot, now=clock(), max_staleness_seconds=max_staleness)
        body = {"synced": snapshot.synced, "connected": snapshot.connected, "reason": reason}
        return JSONResponse(body, status_code=200 if reason is None else 503)

    # The SDK's custom_route decorator is untyped; the routes it adds are served without auth.
    mcp.custom_route("/healthz", methods=["GET"], include_in_schema=False)(healthz)
    mcp.custom_route("/readyz", methods=["GET"], include_in_schema=False)(readyz)
    legacy.install(mcp)
    return mcp
