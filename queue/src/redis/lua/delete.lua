-- ARGV: prefix, user, restrict to user ('1'/'0'), then job ids, or '*' for every finished job.
-- Deletes finished jobs from history. Returns how many.
local user, restrict = ARGV[2], ARGV[3] == '1'
local ids = {}
if ARGV[4] == '*' then
  ids = redis.call('ZRANGE', k('finished'), 0, -1)
else
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local n = 0
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', k('job', id), 'state', 'user')
  if is_final(f[1]) and (not restrict or f[2] == user) then
    forget(id)
    n = n + 1
  end
end
return n
