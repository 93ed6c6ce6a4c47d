-- Shared helpers, prepended to every script. ARGV[1] is the key prefix; keys are built here
-- (a single Redis instance or a primary with replicas; Redis Cluster is not supported).
local P = ARGV[1]

local function k(...)
  return P .. ':' .. table.concat({...}, ':')
end

-- Milliseconds on the Redis server's clock: every machine judges leases by the same clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function int(x)
  return string.format('%d', x)
end

local function is_final(state)
  return state == 'completed' or state == 'failed' or state == 'cancelled'
end

local function publish(what)
  redis.call('PUBLISH', k('notices'), what)
end

-- Moves job `id` of `user` (submission number `seq`) from state `from` (or nil) to `to`,
-- keeping every index in step: the per-state sets, the user's pending set, the lease set and
-- the history set.
local function move(id, user, seq, from, to)
  if from then
    redis.call('ZREM', k('state', from), id)
    if from == 'pending' then redis.call('ZREM', k('upending', user), id) end
    if from == 'running' then redis.call('ZREM', k('leases'), id) end
  end
  redis.call('ZADD', k('state', to), seq, id)
  if to == 'pending' then redis.call('ZADD', k('upending', user), seq, id) end
  if is_final(to) then redis.call('ZADD', k('finished'), seq, id) end
  redis.call('HSET', k('job', id), 'state', to)
end

-- Deletes a job and every index entry pointing at it.
local function forget(id)
  local f = redis.call('HMGET', k('job', id), 'user', 'state')
  if f[2] then
    redis.call('ZREM', k('state', f[2]), id)
    if f[2] == 'pending' then redis.call('ZREM', k('upending', f[1]), id) end
  end
  if f[1] then redis.call('ZREM', k('byuser', f[1]), id) end
  redis.call('ZREM', k('finished'), id)
  redis.call('ZREM', k('leases'), id)
  redis.call('ZREM', k('jobs'), id)
  redis.call('DEL', k('job', id))
end

-- Keeps at most `max` finished jobs (the oldest go first).
local function trim(max)
  local excess = redis.call('ZCARD', k('finished')) - max
  if excess <= 0 then return end
  local old = redis.call('ZRANGE', k('finished'), 0, excess - 1)
  for _, id in ipairs(old) do forget(id) end
end

-- Whether job `id` is running attempt `attempt` on `worker` (the fence of every lease call).
local function owned(f_state, f_attempts, f_worker, attempt, worker)
  return f_state == 'running' and f_attempts == attempt and f_worker == worker
end
