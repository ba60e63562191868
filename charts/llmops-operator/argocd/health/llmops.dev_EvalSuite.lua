-- Argo CD health of an EvalSuite (llmops.dev/v1alpha1), from status.phase and conditions.
-- argocd-cm key: resource.customizations.health.llmops.dev_EvalSuite
-- Idle: a gate with nothing to judge yet is ready to be used.
local health = {
  Idle = "Healthy",
  Running = "Progressing",
  Passed = "Healthy",
  Failed = "Degraded",
  Error = "Degraded",
}

local hs = {status = "Progressing", message = "Waiting for the operator"}
local status = obj.status
if status == nil or status.phase == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

hs.status = health[status.phase] or "Unknown"
hs.message = status.phase
-- The most telling condition message: a true Degraded, then Ready, then Progressing.
local order = {Degraded = 1, Ready = 2, Progressing = 3}
local best = 4
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    local rank = order[condition.type]
    local telling = condition.message ~= nil and condition.message ~= ""
    if condition.type == "Degraded" and condition.status ~= "True" then
      telling = false
    end
    if rank ~= nil and rank < best and telling then
      best = rank
      hs.message = status.phase .. ": " .. condition.message
    end
  end
end
return hs
