--[[
  Delete dead-lettered tasks, oldest first, in bounded batches.

  KEYS[1] dead       (zset)    dead-lettered task ids scored by time of death ms
  KEYS[2] base       (prefix)  "tf:{queue}"

  ARGV[1] maximum number of tasks to delete in this call

  Returns: the number of tasks deleted; call again while it equals ARGV[1].
]]
local rcall = redis.call
local deadKey = KEYS[1]
local base = KEYS[2]
local limit = tonumber(ARGV[1])

local ids = rcall("ZRANGE", deadKey, 0, limit - 1)
for _, taskId in ipairs(ids) do
  rcall("ZREM", deadKey, taskId)
  rcall("DEL", base .. ":task:" .. taskId, base .. ":events:" .. taskId)
end
return #ids
