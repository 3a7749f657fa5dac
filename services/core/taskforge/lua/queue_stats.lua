--[[
  Read one queue's depths, counters and oldest waiting entry in one call (writes nothing).

  KEYS[1] stream     (stream)  ready and in-flight entries, read through the group
  KEYS[2] scheduled  (zset)    delayed tasks
  KEYS[3] leases     (zset)    running tasks
  KEYS[4] dead       (zset)    dead-lettered tasks
  KEYS[5] counters   (hash)    lifetime counters

  ARGV[1] consumer group name

  Returns: {waiting (undelivered entries: the group's lag, or stream length minus pending when
            Redis cannot tell), pending (delivered, not acked), scheduled, running, dead,
            time in ms of the oldest undelivered entry (0: none), now in ms,
            then the counters as field, value pairs}
]]
local rcall = redis.call
local streamKey = KEYS[1]
local scheduledKey = KEYS[2]
local leasesKey = KEYS[3]
local deadKey = KEYS[4]
local countersKey = KEYS[5]
local group = ARGV[1]

--- @include "nowMs"
--- @include "groupInfo"

-- The stream also holds finished entries (acknowledged, not trimmed yet: see releaseEntries in
-- finish.lua), so its length is not the backlog; the group's lag is.
local length = rcall("XLEN", streamKey)
local pending, waiting, oldestMs = 0, length, 0
if length > 0 then
  local lastId = "0-0"
  local g = groupInfo(streamKey, group)
  if g then
    pending, lastId = g["pending"], g["last-delivered-id"]
    waiting = g["lag"] or math.max(0, length - pending)
  end
  local first = rcall("XRANGE", streamKey, "(" .. lastId, "+", "COUNT", 1)
  if #first > 0 then
    oldestMs = tonumber(string.match(first[1][1], "^(%d+)"))
  end
end
local out = {waiting, pending, rcall("ZCARD", scheduledKey), rcall("ZCARD", leasesKey),
  rcall("ZCARD", deadKey), oldestMs, nowMs()}
for _, v in ipairs(rcall("HGETALL", countersKey)) do
  out[#out + 1] = v
end
return out
