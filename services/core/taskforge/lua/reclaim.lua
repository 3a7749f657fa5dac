--[[
  Return tasks whose lease expired (their worker is presumed dead) to the stream.

  KEYS[1] leases     (zset)    running task ids scored by lease deadline ms
  KEYS[2] stream     (stream)  ready tasks; the dead worker's entry is acked and deleted
  KEYS[3] counters   (hash)    per-queue counters
  KEYS[4] base       (prefix)  "tf:{queue}"

  ARGV[1] consumer group name
  ARGV[2] maximum number of tasks to reclaim in this call
  ARGV[3] TTL in ms of a record that ends cancelled here (its cancellation was requested)

  Returns: the number of expired leases taken.
  The attempt the dead worker started stays counted, and the record is marked "abandoned",
  so the next worker that fetches it dead-letters it (reason "abandoned") once its attempts
  exceed its retry budget: a task that kills its worker every time cannot loop forever.
  A task whose cancellation was requested is cancelled instead of returned.
  Events:  "abandoned" per reclaimed task ("cancelled" for those).
]]
local rcall = redis.call
local leasesKey = KEYS[1]
local streamKey = KEYS[2]
local countersKey = KEYS[3]
local base = KEYS[4]
local group = ARGV[1]
local limit = tonumber(ARGV[2])
local cancelledTtlMs = tonumber(ARGV[3])

--- @include "nowMs"
--- @include "addEvent"
--- @include "ackEntry"
--- @include "pushReady"
--- @include "finishRecord"

local now = nowMs()
local expired = rcall("ZRANGEBYSCORE", leasesKey, "-inf", now, "LIMIT", 0, limit)
for _, taskId in ipairs(expired) do
  rcall("ZREM", leasesKey, taskId)
  local taskKey = base .. ":task:" .. taskId
  local f = rcall("HMGET", taskKey, "state", "worker", "msg", "cancel")
  local eventsKey = base .. ":events:" .. taskId
  if f[1] == "running" and f[4] == "1" then
    -- Its worker died before acting on the cancel request: honour it instead of rerunning.
    ackEntry(streamKey, group, f[3])
    finishRecord(taskKey, eventsKey, countersKey, {at = now, event = "cancelled", worker = f[2]},
      cancelledTtlMs, "error", "cancelled while running")
  elseif f[1] == "running" then
    ackEntry(streamKey, group, f[3])
    local err = "lease expired: worker " .. tostring(f[2]) .. " stopped heartbeating"
    rcall("HSET", taskKey, "error", err, "abandoned", 1)
    rcall("HDEL", taskKey, "worker")
    pushReady(streamKey, taskKey, taskId)
    rcall("HINCRBY", countersKey, "abandoned", 1)
    addEvent(eventsKey, {at = now, event = "abandoned", worker = f[2], error = err})
  end
end
return #expired
