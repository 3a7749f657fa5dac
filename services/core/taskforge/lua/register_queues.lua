--[[
  Register queues in the registry, all or none, within the queue limit.

  KEYS[1] registry   (set)     every live queue (the only key: it has no queue hash tag)

  ARGV[1] the queue limit: largest number of live queues
  ARGV[2 ..] queue names to register

  Returns: {1, size} when every name is now registered (members already were and never
           count against the limit); size is the registry's size after the call.
  Errors:  -4 when adding the names not registered yet would pass the limit; then the second
           element is the registry's size, and nothing is written.
  Atomic on the registry, so concurrent enqueues of new queues can never overshoot the limit.
]]
local rcall = redis.call
local registryKey = KEYS[1]
local limit = tonumber(ARGV[1])

local missing = {}
for i = 2, #ARGV do
  if rcall("SISMEMBER", registryKey, ARGV[i]) == 0 then
    missing[#missing + 1] = ARGV[i]
  end
end
local size = rcall("SCARD", registryKey)
if #missing == 0 then
  return {1, size}
end
if size + #missing > limit then
  return {-4, size}
end
rcall("SADD", registryKey, unpack(missing))
return {1, size + #missing}
