-- ARGV: prefix, id. Moves a pending job to the front under every policy: a priority above every
-- other pending job's, and a number below theirs. Returns the job's fields, or nil if unknown.
local id = ARGV[2]
local key = k('job', id)
local f = redis.call('HMGET', key, 'state', 'number')
if not f[1] then return false end
if f[1] ~= 'pending' then return redis.call('HGETALL', key) end
local top, front = 0, nil
for _, other in ipairs(redis.call('ZRANGE', k('state', 'pending'), 0, -1)) do
  if other ~= id then
    local g = redis.call('HMGET', k('job', other), 'priority', 'number')
    local p, n = tonumber(g[1]) or 0, tonumber(g[2]) or 0
    if p > top then top = p end
    if front == nil or n < front then front = n end
  end
end
redis.call('HSET', key, 'priority', int(top + 1))
if front ~= nil and (tonumber(f[2]) or 0) >= front then
  local v = front - 1
  -- Written like serde_json writes an f64 (the embedded backend stores a float here too).
  if v == math.floor(v) and math.abs(v) < 1e15 then
    redis.call('HSET', key, 'number', string.format('%d.0', v))
  else
    redis.call('HSET', key, 'number', string.format('%.17g', v))
  end
end
publish('changed')
return redis.call('HGETALL', key)
