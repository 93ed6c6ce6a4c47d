-- Read-only. ARGV: prefix. Returns {now, ids whose lease ended before now...}.
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', k('leases'), '-inf', '(' .. int(now))
table.insert(ids, 1, int(now))
return ids
