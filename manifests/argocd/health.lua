-- Argo CD health check for gpuinventory.io/GPUInventory.
-- Install: argocd-cm key `resource.customizations.health.gpuinventory.io_GPUInventory`.
--
-- Health describes the inventory's own reconciliation, as kstatus does
-- (sigs.k8s.io/cli-utils/pkg/kstatus/status: generic.go, status.go), so Argo CD and Flux give
-- the same verdict for the same object; tests/unit/test_argocd_health.py runs one table through
-- this script and the real kstatus library. Fleet problems (Degraded=True: unhealthy GPUs,
-- NotReady nodes, stale agents) stay Healthy, with the reason in the message: they are the
-- fleet's state, not a failed sync, and alerting covers them. In order:
--   deletionTimestamp                           -> Progressing (kstatus: Terminating)
--   lastSyncTime not "YYYY-MM-DDTHH:MM:SSZ"      -> Degraded (the CRD's pattern keeps it out)
--   status older than 180 s, or from the future -> Degraded (kstatus has no clock)
--   observedGeneration behind the generation    -> Progressing
--   first Reconciling=True or Stalled=True       -> Progressing / Degraded (list order, as kstatus)
--   Ready=True, with a lastSyncTime             -> Healthy
--   anything else (no status yet, Ready False)  -> Progressing
-- An old status is Degraded, not Progressing: its writer is dead, stopped, cut off or refused,
-- and waiting will not fix it (Argo CD gives custom resources no progress deadline, so
-- Progressing would hang sync waves silently, while Degraded raises on-health-degraded).
--
-- Argo CD runs custom health scripts without Lua's string and math libraries (only base, table
-- and os.time/os.date: util/lua/lua.go, oslib_safe.go), so times are compared as RFC 3339 UTC
-- strings built with arithmetic, which order like the times they name. That holds only for UTC
-- in whole seconds (20 characters, "Z"), the form the operator writes and the CRD's pattern on
-- status.lastSyncTime admits; anything else is reported, never compared. A field of the wrong
-- type, or a condition without a reason, gives a verdict, never a script error.
local MAX_STATUS_AGE = 180 -- seconds; gpu_inventory.api.constants.STATUS_MAX_AGE_SECONDS

local health = {}

local function floordiv(a, b)
  return (a - a % b) / b
end

local function two(n)
  if n < 10 then
    return "0" .. n
  end
  return "" .. n
end

-- Unix seconds -> "YYYY-MM-DDTHH:MM:SSZ" (days-to-civil, H. Hinnant's algorithm).
local function rfc3339(t)
  local days = floordiv(t, 86400)
  local secs = t - days * 86400
  local z = days + 719468
  local era = floordiv(z, 146097)
  local doe = z - era * 146097
  local yoe = floordiv(doe - floordiv(doe, 1460) + floordiv(doe, 36524) - floordiv(doe, 146096), 365)
  local doy = doe - (365 * yoe + floordiv(yoe, 4) - floordiv(yoe, 100))
  local mp = floordiv(5 * doy + 2, 153)
  local day = doy - floordiv(153 * mp + 2, 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return year .. "-" .. two(month) .. "-" .. two(day) .. "T" .. two(floordiv(secs, 3600)) .. ":" ..
    two(floordiv(secs % 3600, 60)) .. ":" .. two(secs % 60) .. "Z"
end

local function text(value, default)
  if value == nil or value == "" then
    return default
  end
  return tostring(value)
end

local function describe(c)
  local reason = text(c.reason, text(c.type, "condition") .. " without a reason")
  local message = text(c.message, nil)
  if message ~= nil then
    return reason .. ": " .. message
  end
  return reason
end

local function table_or_empty(value)
  if type(value) == "table" then
    return value
  end
  return {}
end

local function result(status, message)
  health.status = status
  health.message = message
  return health
end

local metadata = table_or_empty(obj.metadata)
local status = table_or_empty(obj.status)
local conditions = {}
for _, c in ipairs(table_or_empty(status.conditions)) do
  if type(c) == "table" then
    conditions[#conditions + 1] = c
  end
end

if metadata.deletionTimestamp ~= nil then
  return result("Progressing", "GPUInventory is being deleted")
end

local synced = status.lastSyncTime
if synced ~= nil then
  if type(synced) ~= "string" or #synced ~= 20 then
    return result("Degraded", "status.lastSyncTime " .. tostring(synced) ..
      " is not a UTC time in whole seconds (YYYY-MM-DDTHH:MM:SSZ): its writer is not the operator")
  end
  local now = os.time()
  if synced < rfc3339(now - MAX_STATUS_AGE) then
    return result("Degraded", "status not refreshed since " .. synced ..
      ": the gpu-inventory operator is not running, cannot reach the API server, or is refused")
  end
  if synced > rfc3339(now + MAX_STATUS_AGE) then
    return result("Degraded", "status lastSyncTime " .. synced ..
      " is in the future: the operator's clock is wrong")
  end
end

local generation = metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration ~= generation then
  return result("Progressing", "the operator has not observed generation " .. tostring(generation) .. " yet")
end

for _, c in ipairs(conditions) do
  if c.type == "Reconciling" and c.status == "True" then
    return result("Progressing", "Reconciling: " .. describe(c))
  end
  if c.type == "Stalled" and c.status == "True" then
    return result("Degraded", "Stalled: " .. describe(c))
  end
end

local ready, degraded = nil, nil
for _, c in ipairs(conditions) do
  if c.type == "Ready" then
    ready = c
  elseif c.type == "Degraded" then
    degraded = c
  end
end

if ready == nil then
  return result("Progressing", "waiting for the gpu-inventory operator's first status")
end
if ready.status ~= "True" then
  return result("Progressing", describe(ready))
end
if synced == nil then
  return result("Progressing", "Ready, but the status has no lastSyncTime to show it is current")
end
if degraded ~= nil and degraded.status == "True" then
  return result("Healthy", "inventory current; fleet " .. describe(degraded))
end
return result("Healthy", describe(ready))
