-- ARGV: prefix, id, attempt, observed lease deadline, new state ('pending' or 'failed'), reason,
-- result json ('' for none), history size.
-- Ends an attempt whose lease expired: back to the queue, or failed when out of attempts (the
-- caller computed which with Job::worker_lost). Only if nothing moved since the caller looked
-- (same attempt, same lease, still expired), so several janitors never double-count.
-- Returns 1 if applied.
local id, attempt, lease, to, reason, result = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local key = k('job', id)
local f = redis.call('HMGET', key, 'state', 'attempts', 'lease_until', 'user', 'seq')
if f[1] ~= 'running' or f[2] ~= attempt or f[3] ~= lease then return 0 end
local now = now_ms()
if tonumber(f[3]) >= now then return 0 end
redis.call('HDEL', key, 'lease_until')
redis.call('HSET', key, 'reason', reason)
if result ~= '' then
  redis.call('HSET', key, 'result', result, 'finished_at', int(now))
end
move(id, f[4], f[5], 'running', to)
if is_final(to) then trim(tonumber(ARGV[8])) end
publish('work')
return 1
