-- Acknowledge a batch of delivered stream entries in one XACK, then drop them from the stream.
-- Deleting entries one XDEL at a time costs Redis about 10 µs each; trimming everything older
-- than the oldest entry still pending (or up to the last one delivered when none is pending)
-- frees them in one XTRIM, and only ever removes delivered, acknowledged entries, so the
-- group's lag (what KEDA reads) stays computable. A long-running attempt pins that trim point:
-- once more than maxHeld delivered entries wait behind it, the batch's own entries are deleted
-- one by one, so the stream stays bounded whatever the attempts' lengths.
local function releaseEntries(streamKey, group, msgIds, maxHeld)
  if #msgIds == 0 then return end
  for i = 1, #msgIds, 1000 do
    redis.call("XACK", streamKey, group, unpack(msgIds, i, math.min(i + 999, #msgIds)))
  end
  local ok, pendingHead = pcall(redis.call, "XPENDING", streamKey, group, "-", "+", 1)
  local g = groupInfo(streamKey, group)
  if not ok or not g then return end  -- the group is gone (Redis restarted without AOF)
  local oldest = pendingHead[1]
  local lastDelivered, lag = g["last-delivered-id"], g["lag"]
  if oldest then
    redis.call("XTRIM", streamKey, "MINID", oldest[1])
  elseif lastDelivered then
    redis.call("XTRIM", streamKey, "MINID", lastDelivered)
    redis.call("XDEL", streamKey, lastDelivered)
  end
  -- lag is nil when Redis cannot compute it; then the held count is unknown: delete outright.
  local held = lag and (redis.call("XLEN", streamKey) - lag) or maxHeld + 1
  if held > maxHeld then
    for i = 1, #msgIds, 1000 do
      redis.call("XDEL", streamKey, unpack(msgIds, i, math.min(i + 999, #msgIds)))
    end
  end
end
