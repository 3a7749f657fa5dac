--[[
  Admit or refuse one request of an API key with the generic cell rate algorithm (GCRA).

  The key stores a single number, the theoretical arrival time (TAT): when the bucket would be
  full again if no further request came. A request of cost c is admitted when, after adding
  c emission intervals, the TAT stays within burst intervals of now.

  KEYS[1] tat        (string)  theoretical arrival time in epoch microseconds; expires when full

  ARGV[1] sustained rate in requests per second (> 0)
  ARGV[2] burst: requests admitted at once from a full bucket (>= 1)
  ARGV[3] cost of this request in requests (1 <= cost <= burst)

  Returns: {admitted (1) or refused (0), remaining, retry after in µs, reset in µs}
           remaining: further requests that would be admitted right now (0 when refused);
           retry after: time until this request would be admitted (0 when admitted);
           reset: time until the bucket is full again.
]]
local rcall = redis.call
local tatKey = KEYS[1]
local intervalUs = 1000000 / tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])

-- Server time, so that every gateway replica shares one clock.
local t = rcall("TIME")
local nowUs = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- Work relative to now: small numbers keep full precision in Lua's doubles.
local tatUs = math.max((tonumber(rcall("GET", tatKey)) or 0) - nowUs, 0)
local newTatUs = tatUs + intervalUs * cost
local waitUs = newTatUs - intervalUs * burst

-- A wait under 1 µs is rounding of the stored whole-µs TAT, not a real excess.
if waitUs >= 1 then
  return {0, 0, math.ceil(waitUs), math.ceil(tatUs)}
end

-- string.format keeps every digit: Redis renders a bare Lua number with 14 significant digits.
local ttlMs = math.max(1, math.ceil(newTatUs / 1000))
rcall("SET", tatKey, string.format("%.0f", nowUs + newTatUs), "PX", string.format("%d", ttlMs))
-- The epsilon absorbs rounding of the interval, so a full bucket reports burst - cost.
return {1, math.floor(-waitUs / intervalUs + 1e-9), 0, math.ceil(newTatUs)}
