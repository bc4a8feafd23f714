-- replay_dead: move one dead letter back to the tail of the list.
-- KEYS: dead, list, envelopes, bodies
-- ARGV: exact dead entry, id, body, envelope JSON
-- Returns: 1 replayed; 2 an earlier run of this call (reply lost) already
-- replayed it; 0 no such entry.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  local back = redis.call('HEXISTS', KEYS[3], ARGV[2]) + redis.call('HEXISTS', KEYS[4], ARGV[2])
  if back == 2 then
    return 2
  end
  return 0
end
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
redis.call('RPUSH', KEYS[2], '@envelope:' .. ARGV[2])
return 1
