-- Argo CD health check for gpuinventory.io/GPUInventory (Lua 5.1, as Argo CD runs it).
-- Install: argocd-cm key `resource.customizations.health.gpuinventory.io_GPUInventory`.
-- Reads the same conditions kstatus does: Stalled, Degraded, Reconciling, Ready.
local health = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

local observed = obj.status ~= nil and obj.status.observedGeneration or nil
if obj.metadata.generation ~= nil and (observed == nil or observed < obj.metadata.generation) then
  health.status = "Progressing"
  health.message = "Waiting for the gpu-inventory operator to observe the latest spec"
  return health
end

local stalled = condition("Stalled")
local degraded = condition("Degraded")
local reconciling = condition("Reconciling")
local ready = condition("Ready")

if stalled ~= nil and stalled.status == "True" then
  health.status = "Degraded"
  health.message = describe(stalled)
elseif degraded ~= nil and degraded.status == "True" then
  health.status = "Degraded"
  health.message = describe(degraded)
elseif reconciling ~= nil and reconciling.status == "True" then
  health.status = "Progressing"
  health.message = describe(reconciling)
elseif ready ~= nil and ready.status == "True" then
  health.status = "Healthy"
  health.message = describe(ready)
else
  health.status = "Progressing"
  health.message = ready ~= nil and describe(ready) or "Waiting for the gpu-inventory operator"
end
return health
