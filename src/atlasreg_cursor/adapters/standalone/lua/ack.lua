-- ack: delete a leased message for good.
-- KEYS: inflight, envelopes, bodies
-- ARGV: id, token
-- Returns: 1 done, or the lease() code (0 expired, -1 gone, 2 released).
local env, code = lease(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if not env then return code end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
