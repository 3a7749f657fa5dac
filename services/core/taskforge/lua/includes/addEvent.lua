-- Append one event to a task's event log, keeping the newest 100 (a poison task that retries
-- for days must not grow its log without bound). The trim runs only once the log is over the
-- bound: most logs never reach it, and the hot path saves a command per event. The event is a
-- table, or a string already encoded (a batch writing the same event for every task encodes
-- it once).
local function addEvent(eventsKey, event)
  local encoded = type(event) == "string" and event or cjson.encode(event)
  if redis.call("RPUSH", eventsKey, encoded) > 100 then
    redis.call("LTRIM", eventsKey, -100, -1)
  end
end
