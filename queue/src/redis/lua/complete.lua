-- ARGV: prefix, id, worker, attempt, final state, result json, history size.
-- Records how an attempt ended, fenced by (job, attempt, worker): a stale worker's completion
-- changes nothing. Returns 1 if recorded, 0 if stale.
local id, worker, attempt, final, result = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local key = k('job', id)
local f = redis.call('HMGET', key, 'state', 'attempts', 'worker', 'user', 'seq')
if not owned(f[1], f[2], f[3], attempt, worker) then return 0 end
redis.call('HSET', key, 'result', result, 'finished_at', int(now_ms()))
redis.call('HDEL', key, 'lease_until')
move(id, f[4], f[5], 'running', final)
trim(tonumber(ARGV[7]))
publish('changed')
return 1
