--[[
  Move due tasks (delayed, ETA, waiting for a retry) from the scheduled set to the stream.

  KEYS[1] scheduled  (zset)    task ids scored by due time ms
  KEYS[2] stream     (stream)  ready tasks
  KEYS[3] base       (prefix)  "tf:{queue}"

  ARGV[1] maximum number of tasks to promote in this call

  Returns: the number of ids taken from the scheduled set. Each is taken exactly once, however
           many schedulers run this at the same time, because ZREM and XADD share one script.
  Events:  "queued" per promoted task.
]]
local rcall = redis.call
local scheduledKey = KEYS[1]
local streamKey = KEYS[2]
local base = KEYS[3]
local limit = tonumber(ARGV[1])

--- @include "nowMs"
--- @include "addEvent"
--- @include "pushReady"

local now = nowMs()
local due = rcall("ZRANGEBYSCORE", scheduledKey, "-inf", now, "LIMIT", 0, limit)
for _, taskId in ipairs(due) do
  rcall("ZREM", scheduledKey, taskId)
  local taskKey = base .. ":task:" .. taskId
  local state = rcall("HGET", taskKey, "state")
  if state == "scheduled" or state == "failed" then
    pushReady(streamKey, taskKey, taskId)
    addEvent(base .. ":events:" .. taskId, {at = now, event = "queued"})
  end
end
return #due
