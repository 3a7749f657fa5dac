--[[
  Create or refresh a queue's registration marker (the hash enqueue requires).

  KEYS[1] meta       (hash)    created_ms, and last_ms: the time of the last enqueue or claim

  ARGV[1] "create" (after registering the queue) or "touch" (refresh only if it exists)

  Returns: 1 when the marker exists after the call, 0 when "touch" found none (the queue was
           reaped or never registered: register it first).
  A touch before a multi-queue batch keeps the scheduler from reaping a queue while the
  batch's other queues are being written.
]]
local rcall = redis.call
local metaKey = KEYS[1]

--- @include "nowMs"

if ARGV[1] ~= "create" and rcall("EXISTS", metaKey) == 0 then
  return 0
end
local now = nowMs()
rcall("HSETNX", metaKey, "created_ms", now)
rcall("HSET", metaKey, "last_ms", now)
return 1
