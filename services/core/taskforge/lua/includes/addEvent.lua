-- Append one JSON event to a task's event log, keeping the newest 100 (a poison task that
-- retries for days must not grow its log without bound).
local function addEvent(eventsKey, event)
  redis.call("RPUSH", eventsKey, cjson.encode(event))
  redis.call("LTRIM", eventsKey, -100, -1)
end
