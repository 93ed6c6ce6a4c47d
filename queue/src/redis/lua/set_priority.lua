-- ARGV: prefix, id, priority. Returns the job's fields, or nil if unknown.
local key = k('job', ARGV[2])
if redis.call('EXISTS', key) == 0 then return false end
redis.call('HSET', key, 'priority', ARGV[3])
publish('changed')
return redis.call('HGETALL', key)
