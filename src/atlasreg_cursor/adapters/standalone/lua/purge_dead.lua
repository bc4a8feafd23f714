-- purge_dead: delete every dead letter.
-- KEYS: dead
-- ARGV: none
-- Returns: how many were deleted.
local n = redis.call('LLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n
