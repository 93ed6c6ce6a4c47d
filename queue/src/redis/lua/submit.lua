-- ARGV: prefix, id, user, spec json, number ('' = next counter value), front ('1'/'0'),
-- per-user pending limit (0 = none).
-- Returns {'ok', seq, number, created_at} or {'paused'} / {'duplicate'} / {'too_many', n}.
local id, user, spec, number = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local meta = k('meta')
if redis.call('HGET', meta, 'paused') == '1' then return {'paused'} end
local key = k('job', id)
if redis.call('EXISTS', key) == 1 then return {'duplicate'} end
local limit = tonumber(ARGV[7])
if limit > 0 then
  local n = redis.call('ZCARD', k('upending', user))
  if n >= limit then return {'too_many', n} end
end
if number == '' then
  local c = redis.call('HINCRBY', meta, 'counter', 1) - 1
  if ARGV[6] == '1' then c = -c end
  number = int(c)
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
local now = int(now_ms())
redis.call('HSET', key, 'id', id, 'spec', spec, 'user', user, 'seq', seq, 'number', number,
  'priority', 0, 'attempts', 0, 'created_at', now, 'cancel', 0)
redis.call('ZADD', k('jobs'), seq, id)
redis.call('ZADD', k('byuser', user), seq, id)
move(id, user, seq, nil, 'pending')
publish('work')
return {'ok', seq, number, now}
