--[[
  Record the outcome of a batch of attempts run by one worker on one queue.

  KEYS[1] stream     (stream)  ready tasks (delivered entries are acked and released here)
  KEYS[2] leases     (zset)    running task ids scored by lease deadline ms
  KEYS[3] scheduled  (zset)    retry waits, scored by due time ms
  KEYS[4] dead       (zset)    dead-lettered task ids, scored by time of death ms
  KEYS[5] counters   (hash)    per-queue counters
  KEYS[6] base       (prefix)  "tf:{queue}"

  ARGV[1] consumer group name
  ARGV[2] worker id (only tasks this worker still holds are finished)
  ARGV[3] TTL in ms of succeeded and cancelled records
  ARGV[4] TTL in ms of dead records
  ARGV[5 ..] groups of 6 fields, one per task: id, outcome, detail, traceback, extra, attempt
     (taskforge.broker.fields.OUTCOME_GROUP; Python's Outcome types extra as two fields)
     outcome "succeeded": detail = result JSON
     outcome "retry":     detail = error, extra = delay in ms
     outcome "dead":      detail = error, extra = dead reason code
     outcome "cancelled": detail = note
     outcome "giveback":  nothing; the attempt is not counted and the task is queued again
     attempt: the attempt the outcome belongs to ("0": any). An outcome of an earlier attempt
     (its lease lapsed, then this worker fetched the task again) is stale.

  A task whose cancellation was requested while it ran is cancelled instead of retried or
  given back.

  Returns: ids of tasks this worker no longer held (lease lost); their outcome was dropped.
  Events:  "succeeded", "failed" + "retry_scheduled", "failed" + "dead", "cancelled",
           "returned".
]]
local rcall = redis.call
local streamKey = KEYS[1]
local leasesKey = KEYS[2]
local scheduledKey = KEYS[3]
local deadKey = KEYS[4]
local countersKey = KEYS[5]
local base = KEYS[6]
local group = ARGV[1]
local worker = ARGV[2]
local doneTtlMs = tonumber(ARGV[3])
local deadTtlMs = tonumber(ARGV[4])
local FIELDS = 6

--- @include "nowMs"
--- @include "addEvent"
--- @include "pushReady"
--- @include "finishRecord"
--- @include "groupInfo"
--- @include "releaseEntries"

-- Delivered entries a long-running attempt may hold behind it before they are deleted one by
-- one (see releaseEntries).
local MAX_HELD_ENTRIES = 10000

-- 1. Refuse the whole batch on an unknown outcome, before anything is written.
local OUTCOMES = {succeeded = true, retry = true, dead = true, cancelled = true, giveback = true}
for o = 5, #ARGV, FIELDS do
  if not OUTCOMES[ARGV[o + 1]] then
    return redis.error_reply("ERR taskforge finish: unknown outcome " .. tostring(ARGV[o + 1]))
  end
end

local now = nowMs()
local stale = {}
-- Counter increments and released stream entries of the whole batch, written once at the end.
local counts = {}
local released = {}

local function failed(taskKey, eventsKey, attempts, err, tb)
  rcall("HSET", taskKey, "error", err, "traceback", tb)
  counts.failed = (counts.failed or 0) + 1
  addEvent(eventsKey, {at = now, event = "failed", worker = worker, attempt = attempts, error = err})
end

for o = 5, #ARGV, FIELDS do
  local taskId, outcome, detail, tb, extra = ARGV[o], ARGV[o + 1], ARGV[o + 2], ARGV[o + 3], ARGV[o + 4]
  local attempt = ARGV[o + 5]
  local taskKey = base .. ":task:" .. taskId
  local eventsKey = base .. ":events:" .. taskId
  local f = rcall("HMGET", taskKey, "state", "worker", "msg", "attempts", "cancel")
  local owned = f[1] == "running" and f[2] == worker and (attempt == "0" or attempt == f[4])
  -- 2. Release the lease (ZREM answers 0 when it was reclaimed) and the stream entry: from
  --    here the task is in exactly one place.
  if not owned or rcall("ZREM", leasesKey, taskId) == 0 then
    stale[#stale + 1] = taskId
  else
    if f[3] and f[3] ~= "" then released[#released + 1] = f[3] end
    local attempts = tonumber(f[4])
    -- A cancel asked for while it ran wins over running it again.
    if f[5] == "1" and (outcome == "retry" or outcome == "giveback") then
      outcome, detail = "cancelled", "cancelled while running"
    end
    -- 3. Move it to where its outcome says.
    if outcome == "succeeded" then
      finishRecord(taskKey, eventsKey, counts,
        {at = now, event = "succeeded", worker = worker, attempt = attempts}, doneTtlMs,
        "result", detail)
    elseif outcome == "retry" then
      local delayMs = tonumber(extra)
      failed(taskKey, eventsKey, attempts, detail, tb)
      rcall("HSET", taskKey, "state", "failed", "eta_ms", now + delayMs, "msg", "")
      rcall("ZADD", scheduledKey, now + delayMs, taskId)
      counts.retried = (counts.retried or 0) + 1
      addEvent(eventsKey, {at = now, event = "retry_scheduled", delay_s = delayMs / 1000})
    elseif outcome == "dead" then
      failed(taskKey, eventsKey, attempts, detail, tb)
      finishRecord(taskKey, eventsKey, counts, {at = now, event = "dead", error = extra},
        deadTtlMs, "reason", extra, deadKey, taskId)
    elseif outcome == "cancelled" then
      finishRecord(taskKey, eventsKey, counts,
        {at = now, event = "cancelled", worker = worker}, doneTtlMs, "error", detail)
    else -- giveback
      rcall("HINCRBY", taskKey, "attempts", -1)
      rcall("HDEL", taskKey, "worker")
      pushReady(streamKey, taskKey, taskId)
      addEvent(eventsKey, {at = now, event = "returned", worker = worker})
    end
  end
end
for name, count in pairs(counts) do
  rcall("HINCRBY", countersKey, name, count)
end
releaseEntries(streamKey, group, released, MAX_HELD_ENTRIES)
return stale
