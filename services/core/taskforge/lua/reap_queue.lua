--[[
  Unmark a queue that is empty and idle, so that it can leave the registry.

  KEYS[1] stream     (stream)  ready and in-flight entries
  KEYS[2] scheduled  (zset)    delayed tasks
  KEYS[3] leases     (zset)    running tasks
  KEYS[4] dead       (zset)    dead-lettered tasks
  KEYS[5] meta       (hash)    registration marker: created_ms, last_ms
  KEYS[6] counters   (hash)    lifetime counters, deleted with the marker

  ARGV[1] idle time in ms: the queue's last enqueue must be at least this old
  ARGV[2] consumer group name

  Returns: 1 when the queue was unmarked (the caller then removes it from the registry), 0
           when it holds tasks or was used recently. An empty queue without a marker
           (registered before markers existed, or being registered right now) counts as
           idle: the registering enqueue sees it left the registry and registers it again.
  The stream and its consumer group stay: workers and KEDA may be reading them. Enqueue
  refuses to write without the marker, so no task can slip into a queue being reaped.
]]
local rcall = redis.call
local streamKey = KEYS[1]
local scheduledKey = KEYS[2]
local leasesKey = KEYS[3]
local deadKey = KEYS[4]
local metaKey = KEYS[5]
local countersKey = KEYS[6]
local idleMs = tonumber(ARGV[1])
local group = ARGV[2]

--- @include "nowMs"
--- @include "groupInfo"
--- @include "streamBacklog"

-- Entries still waiting or running count; finished ones the stream still holds do not.
local waiting, pending = streamBacklog(streamKey, group)
if waiting > 0 or pending > 0 or rcall("ZCARD", scheduledKey) > 0
    or rcall("ZCARD", leasesKey) > 0 or rcall("ZCARD", deadKey) > 0 then
  return 0
end
local last = tonumber(rcall("HGET", metaKey, "last_ms"))
if last and nowMs() - last < idleMs then
  return 0
end
rcall("DEL", metaKey, countersKey)
return 1
