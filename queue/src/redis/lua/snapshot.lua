-- Read-only. ARGV: prefix. What the scheduler needs, read atomically:
-- {policy, {user, turn, ...} (round-robin turns), {id, user, seq, number, priority, ...} (pending)}.
local rows = {}
for _, id in ipairs(redis.call('ZRANGE', k('state', 'pending'), 0, -1)) do
  local f = redis.call('HMGET', k('job', id), 'user', 'seq', 'number', 'priority')
  rows[#rows + 1] = id
  for i = 1, 4 do rows[#rows + 1] = f[i] or '' end
end
local policy = redis.call('HGET', k('meta'), 'policy') or 'fifo'
return {policy, redis.call('HGETALL', k('served')), rows}
