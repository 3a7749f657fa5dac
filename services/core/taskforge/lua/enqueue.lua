--[[
  Enqueue a batch of tasks on one queue, all or nothing.

  KEYS[1] stream     (stream)  ready tasks
  KEYS[2] scheduled  (zset)    delayed tasks, scored by due time ms
  KEYS[3] counters   (hash)    per-queue counters
  KEYS[4] meta       (hash)    registration marker; last_ms is set to now
  KEYS[5] base       (prefix)  "tf:{queue}", used to build task, event and idempotency keys

  ARGV[1] idempotency TTL in ms
  ARGV[2] number of tasks N
  ARGV[3 ..] N groups of 10 fields: id, type, payload, delay_ms, max_retries, backoff,
            timeout_s, idempotency_key, fingerprint, traceparent ("" means not set)

  Returns: a flat array of N pairs {created (1) or existing (0), task id}
  Errors:  -5 when the queue is not registered (no marker: new, or reaped); nothing is
           written, the caller registers the queue and calls again.
           -3 when an idempotency key is reused with a different body (nothing is written);
           then the second element is the offending key, the third the id of the task
           that holds it.
  Events:  "scheduled" per created delayed task. A task queued at once gets no stored event:
           its "enqueued" event is implied by its record (created_ms) and added by the reader
           (taskforge.broker.records), which saves the event-log key of every waiting task
           (about 280 bytes and a command each).
]]
local rcall = redis.call
local streamKey = KEYS[1]
local scheduledKey = KEYS[2]
local countersKey = KEYS[3]
local metaKey = KEYS[4]
local base = KEYS[5]
local idemTtlMs = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local FIELDS = 10

--- @include "nowMs"
--- @include "addEvent"

if rcall("EXISTS", metaKey) == 0 then
  return {-5}
end

-- 1. Check every idempotency key before writing anything, so a conflict changes nothing.
local existing = {}
local seen = {}
for i = 0, n - 1 do
  local o = 3 + i * FIELDS
  local idemKey, fingerprint = ARGV[o + 7], ARGV[o + 8]
  if idemKey ~= "" then
    local stored = rcall("GET", base .. ":idem:" .. idemKey) or seen[idemKey]
    if stored then
      local sep = string.find(stored, "|", 1, true)
      if string.sub(stored, sep + 1) ~= fingerprint then
        return {-3, idemKey, string.sub(stored, 1, sep - 1)}
      end
      existing[i] = string.sub(stored, 1, sep - 1)
    else
      seen[idemKey] = ARGV[o] .. "|" .. fingerprint
    end
  end
end

-- 2. Write the new tasks: one HSET each, and the "scheduled" event encoded once.
local now = nowMs()
local scheduledEvent = cjson.encode({at = now, event = "scheduled"})
local out = {}
local created = 0
for i = 0, n - 1 do
  local o = 3 + i * FIELDS
  local taskId = ARGV[o]
  if existing[i] then
    out[#out + 1] = 0
    out[#out + 1] = existing[i]
  else
    local taskKey = base .. ":task:" .. taskId
    local delayMs = tonumber(ARGV[o + 3])
    local idemKey = ARGV[o + 7]
    -- One HSET per task. A ready task's stream entry is added first so that its id goes in
    -- the same write (the two fields pushReady writes on every other path to the stream).
    if delayMs > 0 then
      rcall("HSET", taskKey, "id", taskId, "type", ARGV[o + 1], "payload", ARGV[o + 2],
        "attempts", 0, "max_retries", ARGV[o + 4], "backoff", ARGV[o + 5],
        "timeout_s", ARGV[o + 6], "idem_key", idemKey, "traceparent", ARGV[o + 9],
        "created_ms", now, "state", "scheduled", "eta_ms", now + delayMs)
      rcall("ZADD", scheduledKey, now + delayMs, taskId)
      addEvent(base .. ":events:" .. taskId, scheduledEvent)
    else
      local msgId = rcall("XADD", streamKey, "*", "id", taskId)
      rcall("HSET", taskKey, "id", taskId, "type", ARGV[o + 1], "payload", ARGV[o + 2],
        "attempts", 0, "max_retries", ARGV[o + 4], "backoff", ARGV[o + 5],
        "timeout_s", ARGV[o + 6], "idem_key", idemKey, "traceparent", ARGV[o + 9],
        "created_ms", now, "state", "queued", "msg", msgId)
    end
    if idemKey ~= "" then
      rcall("SET", base .. ":idem:" .. idemKey, taskId .. "|" .. ARGV[o + 8], "PX", idemTtlMs, "NX")
    end
    created = created + 1
    out[#out + 1] = 1
    out[#out + 1] = taskId
  end
end
if created > 0 then
  rcall("HINCRBY", countersKey, "enqueued", created)
end
-- An idle queue is reaped by time of last enqueue.
rcall("HSET", metaKey, "last_ms", now)
return out
