-- send: RPUSH a body unchanged and remember the id it will be received under.
-- KEYS: list, sent, marker of this id
-- ARGV: body, id, marker_ttl_ms
-- Returns: the list length after the push, or 0 when this id was already sent.
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3]) then return 0 end
local h = redis.sha1hex(ARGV[1])
local pending = redis.call('HGET', KEYS[2], h)
if pending then
  redis.call('HSET', KEYS[2], h, pending .. ' ' .. ARGV[2])
else
  redis.call('HSET', KEYS[2], h, ARGV[2])
end
return redis.call('RPUSH', KEYS[1], ARGV[1])
