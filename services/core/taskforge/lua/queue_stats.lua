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
--- @include "streamBacklog"

local waiting, pending, lastId = streamBacklog(streamKey, group)
local oldestMs = 0
if waiting > 0 then
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
