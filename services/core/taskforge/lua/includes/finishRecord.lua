-- Move a task to a terminal state (succeeded, dead, cancelled), in one place so that finish,
-- cancel and reclaim write a finished record alike: its state and finished_ms, no stream entry
-- held (msg), the state's own detail field (result, reason, error) when given, the state's
-- counter, its event, the expiry of record and log, and for "dead" its place in the dead set.
-- The state and the time come from the event ({at = now, event = state, ...}). The worker field
-- is kept: a finished record shows who ran its last attempt. countersKey is the counters hash's
-- key, or a table of increments a batch writes once at its end.
local function finishRecord(taskKey, eventsKey, countersKey, event, ttlMs, field, value, deadKey,
                            taskId)
  local state = event.event
  if field then
    redis.call("HSET", taskKey, "state", state, "finished_ms", event.at, "msg", "", field, value)
  else
    redis.call("HSET", taskKey, "state", state, "finished_ms", event.at, "msg", "")
  end
  if state == "dead" then
    redis.call("ZADD", deadKey, event.at, taskId)
  end
  if type(countersKey) == "table" then
    countersKey[state] = (countersKey[state] or 0) + 1
  else
    redis.call("HINCRBY", countersKey, state, 1)
  end
  addEvent(eventsKey, event)
  redis.call("PEXPIRE", taskKey, ttlMs)
  redis.call("PEXPIRE", eventsKey, ttlMs)
end
