--[[
  Cancel one task: at once when it waits, cooperatively when it runs.

  KEYS[1] scheduled  (zset)    delayed tasks
  KEYS[2] counters   (hash)    per-queue counters
  KEYS[3] base       (prefix)  "tf:{queue}"

  ARGV[1] task id
  ARGV[2] TTL in ms of the cancelled record

  Returns: "cancelled" (it will not run), or "cancel_requested" (it is running: its worker
           sees the request at its next heartbeat and stops it).
  Errors:  -1 no such task; -2 the task already finished (state given as second element).
  A queued task's stream entry stays put and is dropped by the next fetch: deleting an
  undelivered entry would make the group's lag, which KEDA reads, undefined.
  Events:  "cancelled" or "cancel_requested".
]]
local rcall = redis.call
local scheduledKey = KEYS[1]
local countersKey = KEYS[2]
local base = KEYS[3]
local taskId = ARGV[1]
local ttlMs = tonumber(ARGV[2])

--- @include "nowMs"
--- @include "addEvent"
--- @include "finishRecord"

local taskKey = base .. ":task:" .. taskId
local eventsKey = base .. ":events:" .. taskId
local state = rcall("HGET", taskKey, "state")
if not state then
  return {-1, ""}
end
local now = nowMs()
if state == "running" then
  rcall("HSET", taskKey, "cancel", 1)
  addEvent(eventsKey, {at = now, event = "cancel_requested"})
  return {0, "cancel_requested"}
end
if state ~= "queued" and state ~= "scheduled" and state ~= "failed" then
  return {-2, state}
end
rcall("ZREM", scheduledKey, taskId)
finishRecord(taskKey, eventsKey, countersKey, {at = now, event = "cancelled"}, ttlMs)
return {0, "cancelled"}
