--[[
  Give dead-lettered tasks a new life on their queue, with a fresh retry budget.

  KEYS[1] dead       (zset)    dead-lettered task ids scored by time of death ms
  KEYS[2] stream     (stream)  ready tasks
  KEYS[3] counters   (hash)    per-queue counters
  KEYS[4] base       (prefix)  "tf:{queue}"

  ARGV[1] maximum number of tasks to requeue when no ids are given (oldest first)
  ARGV[2 ..] ids to requeue; none means "the oldest ARGV[1] entries"

  Returns: {number requeued, ids that were not in the dead-letter queue}
  Events:  "requeued" per task.
]]
local rcall = redis.call
local deadKey = KEYS[1]
local streamKey = KEYS[2]
local countersKey = KEYS[3]
local base = KEYS[4]
local limit = tonumber(ARGV[1])

--- @include "nowMs"
--- @include "addEvent"
--- @include "pushReady"

local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then
  ids = rcall("ZRANGE", deadKey, 0, limit - 1)
end
local now = nowMs()
local requeued, missing = 0, {}
for _, taskId in ipairs(ids) do
  local taskKey = base .. ":task:" .. taskId
  if rcall("ZREM", deadKey, taskId) == 1 and rcall("EXISTS", taskKey) == 1 then
    local eventsKey = base .. ":events:" .. taskId
    rcall("PERSIST", taskKey)
    rcall("PERSIST", eventsKey)
    rcall("HSET", taskKey, "attempts", 0, "finished_ms", "", "reason", "",
      "abandoned", 0, "cancel", 0)
    pushReady(streamKey, taskKey, taskId)
    addEvent(eventsKey, {at = now, event = "requeued"})
    requeued = requeued + 1
  else
    missing[#missing + 1] = taskId
  end
end
if requeued > 0 then
  rcall("HINCRBY", countersKey, "requeued", requeued)
end
return {requeued, missing}
