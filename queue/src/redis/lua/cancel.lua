-- ARGV: prefix, id, user, restrict to user ('1'/'0').
-- Pending: dequeued (cancelled). Running: cancel requested (the worker hears it on its next
-- heartbeat and interrupts the engine). Returns 'dequeued', 'interrupting' or 'nothing'.
local id, user, restrict = ARGV[2], ARGV[3], ARGV[4] == '1'
local key = k('job', id)
local f = redis.call('HMGET', key, 'state', 'user', 'seq')
if not f[1] then return 'nothing' end
if restrict and f[2] ~= user then return 'nothing' end
if f[1] == 'pending' then
  redis.call('HSET', key, 'finished_at', int(now_ms()), 'reason', 'cancelled before it ran')
  move(id, f[2], f[3], 'pending', 'cancelled')
  publish('changed')
  return 'dequeued'
end
if f[1] == 'running' then
  redis.call('HSET', key, 'cancel', 1)
  publish('cancel')
  return 'interrupting'
end
return 'nothing'
