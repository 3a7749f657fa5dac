-- Server time in epoch milliseconds: every process shares Redis's clock, so host clock skew
-- never moves a lease or a due time.
local function nowMs()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
