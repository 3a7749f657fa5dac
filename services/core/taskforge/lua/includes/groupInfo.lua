-- The consumer group's XINFO GROUPS fields ("pending", "last-delivered-id", "lag", ...), or nil
-- when the stream or the group does not exist. "lag" (undelivered entries) is false when Redis
-- cannot tell (entries deleted after the last delivered one).
local function groupInfo(streamKey, group)
  local ok, groups = pcall(redis.call, "XINFO", "GROUPS", streamKey)
  if not ok then return nil end
  for _, info in ipairs(groups) do
    local fields = {}
    for j = 1, #info, 2 do fields[info[j]] = info[j + 1] end
    if fields["name"] == group then return fields end
  end
  return nil
end
