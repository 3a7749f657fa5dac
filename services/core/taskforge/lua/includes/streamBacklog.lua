-- What a queue's stream holds that is not finished: entries waiting for delivery (the group's
-- lag; stream length minus pending when Redis cannot tell it; the whole stream without a group)
-- and entries delivered and not acknowledged, plus the last delivered id. The stream also holds
-- finished entries not trimmed yet (see releaseEntries), so its length alone is no backlog.
local function streamBacklog(streamKey, group)
  local length = redis.call("XLEN", streamKey)
  local g = length > 0 and groupInfo(streamKey, group)
  if not g then return length, 0, "0-0" end
  return g["lag"] or math.max(0, length - g["pending"]), g["pending"], g["last-delivered-id"]
end
