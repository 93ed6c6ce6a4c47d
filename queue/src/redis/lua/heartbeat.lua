-- ARGV: prefix, id, worker, attempt, lease ms. Extends the lease of the running attempt.
-- Returns {cancel requested (0/1), lease lost (0/1)}.
local id, worker, attempt, lease_ms = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local key = k('job', id)
local f = redis.call('HMGET', key, 'state', 'attempts', 'worker', 'cancel')
if not owned(f[1], f[2], f[3], attempt, worker) then return {0, 1} end
local deadline = now_ms() + lease_ms
redis.call('HSET', key, 'lease_until', int(deadline))
redis.call('ZADD', k('leases'), deadline, id)
return {tonumber(f[4]) or 0, 0}
