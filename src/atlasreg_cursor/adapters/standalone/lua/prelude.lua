-- Prelude of the scripts that check a lease (receive, ack, retry, dead_letter,
-- extend); the loader puts it in front of each of them.
-- Defines: now (server time, ms), MARKER, and
--   lease(inflight, envelopes, id, token) -> env, code
--   code 1: env is the envelope leased by token, lease not expired
--   code 0: expired or leased by another token; -1: no such message;
--   code 2: token released the message (retry), so that call already ran.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local MARKER = '@envelope:'
local function lease(inflight, envelopes, id, token)
  local raw = redis.call('HGET', envelopes, id)
  if not raw then return nil, -1 end
  local env = cjson.decode(raw)
  if env.token ~= token then
    if env.released == token then return nil, 2 end
    return nil, 0
  end
  local deadline = redis.call('ZSCORE', inflight, id)
  if not deadline or tonumber(deadline) <= now then return nil, 0 end
  return env, 1
end
