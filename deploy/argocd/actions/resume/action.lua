if obj.metadata.annotations ~= nil then
  obj.metadata.annotations["cloudify.co/paused"] = nil
end
return obj
