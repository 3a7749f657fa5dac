--[[
  Extend the leases a worker holds and report the ones it lost or that were asked to cancel.

  KEYS[1] leases     (zset)    running task ids scored by lease deadline ms
  KEYS[2] base       (prefix)  "tf:{queue}"

  ARGV[1] worker id
  ARGV[2] lease length in ms
  ARGV[3 ..] ids of the tasks the worker is running

  Returns: {lost ids, ids whose cancellation was requested}
           A lease is lost when the task is no longer running under this worker (it expired
           and was reclaimed, or the task was purged); the worker must drop its result.
]]
local rcall = redis.call
local leasesKey = KEYS[1]
local base = KEYS[2]
local worker = ARGV[1]
local leaseMs = tonumber(ARGV[2])

--- @include "nowMs"

local deadline = nowMs() + leaseMs
local lost, cancel = {}, {}
for i = 3, #ARGV do
  local taskId = ARGV[i]
  local f = rcall("HMGET", base .. ":task:" .. taskId, "state", "worker", "cancel")
  if f[1] == "running" and f[2] == worker and rcall("ZSCORE", leasesKey, taskId) then
    rcall("ZADD", leasesKey, "XX", deadline, taskId)
    if f[3] == "1" then cancel[#cancel + 1] = taskId end
  else
    lost[#lost + 1] = taskId
  end
end
return {lost, cancel}
