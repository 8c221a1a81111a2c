/**
 * The Lua script behind global admission (src/cluster/admission.ts), run atomically in Redis by each
 * replica on every lease renewal. One hash, `<prefix>admission:leases`, holds a field per replica:
 * `granted|target|expiresAtMs|active`. Time is Redis's own (TIME), so replicas' clocks do not matter.
 *
 * KEYS[1] the lease hash, KEYS[2] the epoch key (when the hash was last created: after a Redis restart
 * every replica is new to it, and for one lease period nobody is granted more than an even share, so the
 * first replica to come back does not take what the others still use).
 * ARGV: replica id, global limit, lease ms, floor, target, active (0/1), replica-count hint, release (0/1).
 *
 * - Expired leases (a replica that died or lost Redis) are deleted: their share is free again.
 * - The allocation is max-min fair (water-filling) over the live replicas' targets (what each uses or
 *   has waiting, plus a little headroom); capacity the targets leave unused is spread evenly on top.
 * - The grant is min(allocation, limit - others' grants), but never below `floor`: what the replica may
 *   already be using (it stops admitting above `floor` before it calls, so the sum of grants never goes
 *   over the limit while it shrinks). Growth only comes from capacity others have given back.
 * - The rate share is the replica's weight over the sum of weights: 1 for a replica that admitted or held
 *   requests since its last renewal, IDLE_WEIGHT for one that did not.
 *
 * Reply: { granted, allocation, live replicas (this one included), rate fraction as a string, 1 if this
 * replica's lease was there (0: new, or expired and deleted: the replica then knows it lost its lease) }.
 */
export const IDLE_RATE_WEIGHT = 0.1;

export const ADMISSION_LEASE_LUA = `
local key = KEYS[1]
local epochKey = KEYS[2]
local me = ARGV[1]
local limit = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local floor = tonumber(ARGV[4])
local target = tonumber(ARGV[5])
local active = tonumber(ARGV[6])
local hint = tonumber(ARGV[7])
local release = tonumber(ARGV[8])
local idleWeight = ${IDLE_RATE_WEIGHT}
if release == 1 then
  redis.call('HDEL', key, me)
  return {0, 0, 0, '0'}
end
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local all = redis.call('HGETALL', key)
local ids = {}
local targets = {}
local othersSum = 0
local present = 0
local weights = active == 1 and 1 or idleWeight
for i = 1, #all, 2 do
  local id = all[i]
  if id == me then
    local exp = string.match(all[i + 1], '|(%d+)|%d$')
    if exp ~= nil and tonumber(exp) >= now then present = 1 end
  else
    local g, tg, exp, act = string.match(all[i + 1], '^(%d+)|(%d+)|(%d+)|(%d)$')
    if g == nil or tonumber(exp) < now then
      redis.call('HDEL', key, id)
    else
      ids[#ids + 1] = id
      targets[#targets + 1] = tonumber(tg)
      othersSum = othersSum + tonumber(g)
      weights = weights + (tonumber(act) == 1 and 1 or idleWeight)
    end
  end
end
ids[#ids + 1] = me
targets[#targets + 1] = target
local n = #ids
-- water-filling: the level L with sum(min(target_i, L)) = limit (or every target met)
local order = {}
for i = 1, n do order[i] = i end
table.sort(order, function(a, b)
  if targets[a] ~= targets[b] then return targets[a] < targets[b] end
  return ids[a] < ids[b]
end)
local remaining = limit
local left = n
local alloc = nil
local capped = {}
for _, i in ipairs(order) do
  local level = remaining / left
  if targets[i] <= level then
    if i == n then alloc = targets[i] end
    remaining = remaining - targets[i]
    left = left - 1
  else
    capped[#capped + 1] = i
  end
end
if #capped > 0 then
  -- the capped replicas share what is left: floor(level) each, the remainder one by one in id order
  local each = math.floor(remaining / #capped)
  local extra = remaining - each * #capped
  table.sort(capped, function(a, b) return ids[a] < ids[b] end)
  for rank, i in ipairs(capped) do
    if i == n then
      alloc = each
      if rank <= extra then alloc = alloc + 1 end
    end
  end
else
  -- every target met: spread what is left evenly on top
  alloc = alloc + math.floor(remaining / n)
end
-- settling after the hash was (re)created: at most an even share while the replicas register
local epoch = tonumber(redis.call('GET', epochKey))
if epoch == nil or #all == 0 then
  epoch = now
  redis.call('SET', epochKey, now, 'PX', 86400000)
end
if now < epoch + ttl then
  local even = math.floor(limit / math.max(n, hint))
  if alloc > even then alloc = even end
end
local avail = limit - othersSum
local g = math.min(alloc, avail)
if g < floor then g = math.min(floor, avail) end
if g < 0 then g = 0 end
redis.call('HSET', key, me, g .. '|' .. target .. '|' .. (now + ttl) .. '|' .. active)
redis.call('PEXPIRE', key, ttl * 20)
local mine = active == 1 and 1 or idleWeight
return {g, alloc, n, tostring(mine / weights), present}
`;
