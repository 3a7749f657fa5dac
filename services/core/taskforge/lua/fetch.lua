--[[
  Fetch up to COUNT ready tasks for one worker and start them under a lease.

  KEYS[1] stream     (stream)  ready tasks, read through the consumer group
  KEYS[2] leases     (zset)    running task ids scored by lease deadline ms
  KEYS[3] base       (prefix)  "tf:{queue}"

  ARGV[1] consumer group name
  ARGV[2] worker id (stream consumer name and lease owner)
  ARGV[3] maximum number of tasks to start
  ARGV[4] lease length in ms
  ARGV[5] "1" when the worker traces: count the task's deliveries (they number its spans);
          otherwise the count is neither kept nor returned (0)

  Returns: {delivered, lastDeliveredId, then per started task 9 fields:
            id, type, payload, attempts, max_retries, backoff, timeout_s, traceparent,
            deliveries}
           delivered counts entries read (skipped ones included); lastDeliveredId is set only
           when nothing was delivered, for a race-free blocking XREAD from that id.
  Events:  "started" per started task.
  Entries whose task is gone or no longer queued (cancelled, purged) are acked and dropped.
]]
local rcall = redis.call
local streamKey = KEYS[1]
local leasesKey = KEYS[2]
local base = KEYS[3]
local group = ARGV[1]
local worker = ARGV[2]
local count = tonumber(ARGV[3])
local leaseMs = tonumber(ARGV[4])
local traced = ARGV[5] == "1"

--- @include "nowMs"
--- @include "addEvent"
--- @include "ackEntry"
--- @include "groupInfo"

local function lastDeliveredId()
  local g = groupInfo(streamKey, group)
  return g and g["last-delivered-id"] or "0-0"
end

-- 1. Read new entries; a missing group (fresh stream, or Redis restarted without AOF) is
--    created on the spot so that no worker ever spins on NOGROUP.
local ok, reply = pcall(rcall, "XREADGROUP", "GROUP", group, worker, "COUNT", count,
  "STREAMS", streamKey, ">")
if not ok then
  if string.find(tostring(reply), "NOGROUP", 1, true) then
    rcall("XGROUP", "CREATE", streamKey, group, "0", "MKSTREAM")
    return {0, "0-0"}
  end
  return redis.error_reply(tostring(reply))
end
if not reply then
  return {0, lastDeliveredId()}
end

-- 2. Start each task that is still queued: one read and one write of its record.
local now = nowMs()
local entries = reply[1][2]
local out = {#entries, ""}
for _, entry in ipairs(entries) do
  local msgId, taskId = entry[1], entry[2][2]
  local taskKey = base .. ":task:" .. taskId
  local f = rcall("HMGET", taskKey, "state", "attempts", "type", "payload", "max_retries",
    "backoff", "timeout_s", "traceparent", "deliveries")
  if f[1] ~= "queued" then
    ackEntry(streamKey, group, msgId)
  else
    local attempts = (tonumber(f[2]) or 0) + 1
    local deliveries = tonumber(f[9]) or 0
    if traced then
      -- Unlike attempts, never given back nor reset: one span id per delivery.
      deliveries = deliveries + 1
      rcall("HSET", taskKey, "state", "running", "attempts", attempts, "started_ms", now,
        "worker", worker, "msg", msgId, "deliveries", deliveries)
    else
      rcall("HSET", taskKey, "state", "running", "attempts", attempts, "started_ms", now,
        "worker", worker, "msg", msgId)
    end
    rcall("ZADD", leasesKey, now + leaseMs, taskId)
    addEvent(base .. ":events:" .. taskId,
      {at = now, event = "started", worker = worker, attempt = attempts})
    out[#out + 1] = taskId
    out[#out + 1] = f[3]
    out[#out + 1] = f[4]
    out[#out + 1] = attempts
    out[#out + 1] = f[5]
    out[#out + 1] = f[6]
    out[#out + 1] = f[7]
    out[#out + 1] = f[8]
    out[#out + 1] = traced and deliveries or 0
  end
end
return out
