-- receive: move expired leases and due retries back to the head, then lease
-- up to n messages.
-- KEYS: list, inflight, delayed, envelopes, bodies, sent, receipt of this call
-- ARGV: n, visibility_ms, promote_limit, then per slot k: fresh id, token
-- Returns: {wait_ms, id, body, attempts, token, ...}; wait_ms is the time to
-- the next deadline (-1: none). A re-run of the same call (same receipt key)
-- returns what the first run leased.
local list, inflight, delayed, envelopes, bodies, sent, receipt = unpack(KEYS)
local n, vis, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local prior = redis.call('GET', receipt)
if prior then
  -- this call ran before and its reply was lost: hand out the same leases
  local again = {0}
  local pairs_ = cjson.decode(prior)
  for i = 1, #pairs_, 2 do
    local id, token = pairs_[i], pairs_[i + 1]
    local raw = redis.call('HGET', envelopes, id)
    local body = redis.call('HGET', bodies, id)
    local deadline = redis.call('ZSCORE', inflight, id)
    if raw and body and deadline and tonumber(deadline) > now then
      local env = cjson.decode(raw)
      if env.token == token then
        again[#again + 1] = id
        again[#again + 1] = body
        again[#again + 1] = env.attempts
        again[#again + 1] = token
      end
    end
  end
  return again
end
for _, zset in ipairs({inflight, delayed}) do
  local ids = redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'LIMIT', 0, limit)
  for i = #ids, 1, -1 do
    local id = ids[i]
    redis.call('ZREM', zset, id)
    local raw = redis.call('HGET', envelopes, id)
    if raw then
      local env = cjson.decode(raw)
      env.token = ''
      redis.call('HSET', envelopes, id, cjson.encode(env))
      redis.call('LPUSH', list, MARKER .. id)
    end
  end
end
local out = {}
local taken, scanned = 0, 0
while taken < n and scanned < n + 100 do
  local item = redis.call('LPOP', list)
  if not item then break end
  scanned = scanned + 1
  local slot = taken + 1
  local id, env, body
  if string.sub(item, 1, #MARKER) == MARKER then
    id = string.sub(item, #MARKER + 1)
    local raw = redis.call('HGET', envelopes, id)
    body = redis.call('HGET', bodies, id)
    if raw and body then env = cjson.decode(raw) end
  else
    id = ARGV[2 + 2 * slot]
    if redis.call('HLEN', sent) > 0 then
      local h = redis.sha1hex(item)
      local pending = redis.call('HGET', sent, h)
      if pending then
        local first, rest = string.match(pending, '^(%S+)%s*(.*)$')
        id = first
        if rest == '' then redis.call('HDEL', sent, h) else redis.call('HSET', sent, h, rest) end
      end
    end
    body = item
    env = {message_id = id, attempts = 0, first_seen = now}
    redis.call('HSET', bodies, id, item)
  end
  if env then
    taken = slot
    env.attempts = env.attempts + 1
    env.token = ARGV[3 + 2 * slot]
    redis.call('HSET', envelopes, id, cjson.encode(env))
    redis.call('ZADD', inflight, now + vis, id)
    out[#out + 1] = id
    out[#out + 1] = body
    out[#out + 1] = env.attempts
    out[#out + 1] = env.token
  end
end
if #out > 0 then
  local leased = {}
  for i = 1, #out, 4 do
    leased[#leased + 1] = out[i]
    leased[#leased + 1] = out[i + 3]
  end
  redis.call('SET', receipt, cjson.encode(leased), 'PX', math.max(vis, 1000))
end
local wait = -1
for _, zset in ipairs({inflight, delayed}) do
  local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  if first[2] then
    local d = tonumber(first[2]) - now
    if wait < 0 or d < wait then wait = d end
  end
end
table.insert(out, 1, math.max(wait, -1))
return out
