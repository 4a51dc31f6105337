-- Resource actions of a ManagerCluster: suspend sets the pause annotation (the operator then
-- observes only: it writes status, never to the managers); resume clears it.
local actions = {}
local paused = false
if obj.metadata ~= nil and obj.metadata.annotations ~= nil then
  paused = obj.metadata.annotations["cloudify.co/paused"] == "true"
end
actions["suspend"] = {["disabled"] = paused, ["iconClass"] = "fa fa-fw fa-pause"}
actions["resume"] = {["disabled"] = not paused, ["iconClass"] = "fa fa-fw fa-play"}
return actions
