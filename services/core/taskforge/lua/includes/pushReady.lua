-- Put a task on its queue's stream and record the entry id, in one place so that every path
-- that makes a task ready (enqueue, promote, give back, reclaim, requeue) does it identically.
-- Extra record fields (a flat list of names and values) are written in the same HSET.
local function pushReady(streamKey, taskKey, taskId, extra)
  local msgId = redis.call("XADD", streamKey, "*", "id", taskId)
  if extra then
    redis.call("HSET", taskKey, "state", "queued", "msg", msgId, unpack(extra))
  else
    redis.call("HSET", taskKey, "state", "queued", "msg", msgId)
  end
  return msgId
end
