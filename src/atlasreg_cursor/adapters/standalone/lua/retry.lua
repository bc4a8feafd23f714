-- retry: release a leased message, due again now or after delay_ms.
-- KEYS: inflight, envelopes, delayed, list
-- ARGV: id, token, delay_ms
-- Returns: 1 done, or the lease() code (0 expired, -1 gone, 2 released).
local env, code = lease(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if not env then return code end
local delay = tonumber(ARGV[3])
redis.call('ZREM', KEYS[1], ARGV[1])
env.token = ''
env.released = ARGV[2]
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(env))
if delay > 0 then
  redis.call('ZADD', KEYS[3], now + delay, ARGV[1])
else
  redis.call('LPUSH', KEYS[4], MARKER .. ARGV[1])
end
return 1
