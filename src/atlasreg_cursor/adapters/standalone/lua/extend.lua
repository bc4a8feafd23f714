-- extend: renew a lease to end seconds_ms from now (server clock).
-- KEYS: inflight, envelopes
-- ARGV: id, token, seconds_ms
-- Returns: 1 done, or the lease() code (0 expired, -1 gone, 2 released).
local env, code = lease(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if not env then return code end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
return 1
