-- ARGV: prefix, id, worker, lease ms. Moves the chosen job from pending to running with a lease
-- in one step (there is no moment where the job is in neither place), counts the attempt and
-- the user's round-robin turn. Returns the job's fields, or nil if the job is no longer pending
-- (another worker took it, or it was cancelled): the caller picks again.
local id, worker, lease_ms = ARGV[2], ARGV[3], tonumber(ARGV[4])
local key = k('job', id)
local f = redis.call('HMGET', key, 'state', 'user', 'seq')
if f[1] ~= 'pending' then return false end
local now = now_ms()
local deadline = now + lease_ms
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HSET', key, 'worker', worker, 'started_at', int(now), 'lease_until', int(deadline),
  'cancel', 0)
move(id, f[2], f[3], 'pending', 'running')
redis.call('ZADD', k('leases'), deadline, id)
local turn = redis.call('HINCRBY', k('meta'), 'turn', 1)
redis.call('HSET', k('served'), f[2], turn)
publish('changed')
return redis.call('HGETALL', key)
