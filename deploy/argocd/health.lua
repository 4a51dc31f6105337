-- Argo CD health of a ManagerCluster (cloudify.co/v1alpha1), from what the operator writes:
-- the pause annotation, status.observedGeneration and the Ready and Degraded conditions.
-- Lua 5.1 (gopher-lua), no libraries: only `obj` is given; return {status, message}.
local hs = {}
local meta = obj.metadata or {}
local annotations = meta.annotations or {}

if annotations["cloudify.co/paused"] == "true" then
  hs.status = "Suspended"
  hs.message = "Reconciliation is paused (annotation cloudify.co/paused)"
  return hs
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = meta.generation
local observed = status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = nil
local degraded = nil
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    elseif condition.type == "Degraded" then
      degraded = condition
    end
  end
end

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.message or degraded.reason or "Degraded"
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end

hs.status = "Progressing"
if ready ~= nil and ready.message ~= nil then
  hs.message = ready.message
elseif status.phase ~= nil then
  hs.message = "Phase " .. status.phase
else
  hs.message = "Waiting for the cluster to become ready"
end
return hs
