-- Acknowledge and delete a delivered stream entry. Only delivered entries are ever deleted, so
-- the group's lag (what KEDA reads) stays computable.
local function ackEntry(streamKey, group, msgId)
  if msgId and msgId ~= "" then
    redis.call("XACK", streamKey, group, msgId)
    redis.call("XDEL", streamKey, msgId)
  end
end
