-- ARGV: prefix, user, restrict to user ('1'/'0'). Cancels every pending job (of the user).
-- Returns how many.
local user, restrict = ARGV[2], ARGV[3] == '1'
local set = restrict and k('upending', user) or k('state', 'pending')
local ids = redis.call('ZRANGE', set, 0, -1)
local now = int(now_ms())
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', k('job', id), 'user', 'seq')
  redis.call('HSET', k('job', id), 'finished_at', now, 'reason', 'queue cleared')
  move(id, f[1], f[2], 'pending', 'cancelled')
end
if #ids > 0 then publish('changed') end
return #ids
