-- Put a task on its queue's stream and record the entry id, in one place so that every path
-- that makes a task ready (enqueue, promote, give back, reclaim, requeue) does it identically.
local function pushReady(streamKey, taskKey, taskId)
  local msgId = redis.call("XADD", streamKey, "*", "id", taskId)
  redis.call("HSET", taskKey, "state", "queued", "msg", msgId)
  return msgId
end
