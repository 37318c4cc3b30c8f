#include "queue/redis_queue.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>
#include <charconv>
#include <thread>

#include "common/logging.h"
#include "queue/internal.h"
#include "queue/uuid.h"

namespace edgeloop::queue {
namespace {

// Every script starts with this: key names and helpers. KEYS[1] is the queue's name S, ARGV[1]
// the consumer group. docs/queue.md describes the keys (layout 2: one stream per priority).
//
// Entry ids are "<priority + 512>-<seq>", written as "<priority + 512>-*" so that Redis numbers
// them within the lane: an id names its lane, ids grow within a lane (also across deletions),
// and no two lanes share an id. Each leased entry
// has a packed state in S:e, "<st>|<attempts>|<fence>|<bytes>|<consumer>" with st L (leased),
// R (waiting for a retry) or Q (ready again, in its lane's S:r:<p>); an entry never leased has
// none.
constexpr const char* kPrelude = R"lua(
local S = KEYS[1]
local G = ARGV[1]
local K_META = S .. ':meta'
local K_LANES = S .. ':lanes'
local K_E = S .. ':e'
local K_HIST = S .. ':hist'
local K_DUE = S .. ':due'
local K_DLQ = S .. ':dlq'
local K_DLQORD = S .. ':dlqord'
local K_DROPS = S .. ':drops'
local TWO42 = 4398046511104
local function int(x) return string.format('%d', x) end
local function lane(p) return S .. ':l:' .. int(p) end
local function rdy(p) return S .. ':r:' .. int(p) end
local function valid(eid) return type(eid) == 'string' and string.match(eid, '^%d+%-%d+$') ~= nil end
local function prio_of(eid) return tonumber(string.match(eid, '^(%d+)')) - 512 end
local function seq_of(eid) return tonumber(string.match(eid, '%-(%d+)$')) end
local function fields_of(entry)
  local f = {}
  local kv = entry[2]
  for i = 1, #kv, 2 do f[kv[i]] = kv[i + 1] end
  if f.h then
    -- Appended entries pack their small fields into one: type|prio|wall|bytes|id.
    f.type, f.prio, f.wall, f.bytes, f.id =
      string.match(f.h, '^([^|]*)|(-?%d+)|(-?%d+)|(-?%d+)|(.*)$')
  end
  return f
end
local function read(stream, id)
  local r = redis.call('XRANGE', stream, id, id)
  if #r == 0 then return nil end
  return fields_of(r[1])
end
local function get_state(eid)
  local v = redis.call('HGET', K_E, eid)
  if not v then return nil end
  local st, att, fence, bytes, cons = string.match(v, '^(%a)|(%d+)|(%d+)|(%d+)|(.*)$')
  if not st then return nil end
  return {st = st, att = tonumber(att), fence = fence, bytes = tonumber(bytes), cons = cons}
end
local function put_state(eid, s)
  redis.call('HSET', K_E, eid,
    s.st .. '|' .. int(s.att) .. '|' .. s.fence .. '|' .. int(s.bytes) .. '|' .. s.cons)
end
-- The lane of priority p, created (with the group) when it is new.
local function ensure_lane(p)
  local key = lane(p)
  if redis.call('ZADD', K_LANES, 'NX', p, int(p)) == 1 then
    redis.pcall('XGROUP', 'CREATE', key, G, '0', 'MKSTREAM')
  end
  return key
end
local function forget(eid)
  redis.call('HDEL', K_E, eid)
  redis.call('HDEL', K_HIST, eid)
  redis.call('ZREM', K_DUE, eid)
  redis.call('ZREM', rdy(prio_of(eid)), eid)
end
local function history(eid)
  local h = redis.call('HGET', K_HIST, eid)
  if h then
    local ok, decoded = pcall(cjson.decode, h)
    if ok and type(decoded) == 'table' then return decoded end
  end
  return {}
end
local function bury(eid, f, hist, reason, att)
  local p = prio_of(eid)
  local dead = redis.call('XADD', K_DLQ, '*', 'id', f.id, 'type', f.type, 'prio', f.prio,
    'payload', f.payload, 'wall', f.wall, 'bytes', f.bytes, 'attempts', int(att),
    'history', cjson.encode(hist), 'reason', reason)
  redis.call('ZADD', K_DLQORD, int((p + 512) * TWO42 + seq_of(eid)), dead)
  redis.call('XACK', lane(p), G, eid)
  redis.call('XDEL', lane(p), eid)
  forget(eid)
  redis.call('HINCRBY', K_META, 'dead', 1)
end
)lua";

constexpr int kLayout = 2;

enum Script {
  kAppend = 0,
  kLease,
  kAck,
  kNack,
  kRelease,
  kDeadLetter,
  kReplay,
  kStats,
  kPeek,
  kNumScripts
};

// ARGV: group, max_bytes, high, low, unused, n, then n × (prio, bytes, h, payload) where h is the
// packed "type|prio|wall|bytes|id" stored with the entry (built by the client, so that the script
// does no string work per event; Redis hashes every argument it hands to Lua, so each one counts).
// Returns the (0-based) positions of the events it rejected.
constexpr const char* kAppendScript = R"lua(
local maxb, high, low = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local n = tonumber(ARGV[6])
local bytes = tonumber(redis.call('HGET', K_META, 'bytes') or '0')
local lanes_seen, ids_seen, lanes_asc = {}, {}, nil
local rejected, appended = {}, 0
-- The next event to drop for one of priority maxprio: the lowest priority first, the oldest
-- (smallest seq) first within it, live or dead. nil when only higher priorities are left.
local function victim(maxprio)
  if not lanes_asc then lanes_asc = redis.call('ZRANGE', K_LANES, 0, -1) end
  for _, lp in ipairs(lanes_asc) do
    local p = tonumber(lp)
    if p > maxprio then return nil end
    local base = (p + 512) * TWO42
    local live = redis.call('XRANGE', lane(p), '-', '+', 'COUNT', 1)
    local dead = redis.call('ZRANGEBYSCORE', K_DLQORD, int(base), '(' .. int(base + TWO42),
      'WITHSCORES', 'LIMIT', 0, 1)
    local lseq = live[1] and seq_of(live[1][1])
    local dseq = dead[1] and (tonumber(dead[2]) - base)
    if lseq and (not dseq or lseq < dseq) then return {'l', p, live[1]} end
    if dseq then return {'d', p, dead[1]} end
  end
  return nil
end
for i = 0, n - 1 do
  local b = 7 + i * 4
  local prio, size = tonumber(ARGV[b]), tonumber(ARGV[b + 1])
  local ok = true
  if maxb > 0 and size > maxb then
    ok = false
  elseif maxb > 0 and bytes + size > high then
    while bytes + size > low do
      local v = victim(prio)
      if not v then break end
      local f
      if v[1] == 'l' then
        local eid = v[3][1]
        f = fields_of(v[3])
        redis.call('XACK', lane(v[2]), G, eid)
        redis.call('XDEL', lane(v[2]), eid)
        forget(eid)
      else
        f = read(K_DLQ, v[3])
        redis.call('XDEL', K_DLQ, v[3])
        redis.call('ZREM', K_DLQORD, v[3])
      end
      if f then
        bytes = bytes - tonumber(f.bytes)
        redis.call('HINCRBY', K_DROPS, 'quota:' .. f.type, 1)
      end
    end
    if bytes + size > maxb then ok = false end
  end
  if ok then
    local key = lanes_seen[prio]
    if not key then
      key = ensure_lane(prio)
      lanes_seen[prio] = key
      ids_seen[prio] = int(prio + 512) .. '-*'
      lanes_asc = nil
    end
    redis.call('XADD', key, ids_seen[prio], 'h', ARGV[b + 2], 'payload', ARGV[b + 3])
    bytes = bytes + size
    appended = appended + 1
  else
    rejected[#rejected + 1] = i
    redis.call('HINCRBY', K_DROPS, 'rejected:' .. string.match(ARGV[b + 2], '^[^|]*'), 1)
  end
end
redis.call('HSET', K_META, 'bytes', int(bytes))
if appended > 0 then redis.call('HINCRBY', K_META, 'appended', appended) end
return rejected
)lua";

// ARGV: group, consumer, max, visibility_ms, now_ms, max_attempts.
// Returns {{entry id, {field, value, ...}, attempt, fence, history json}, ...}: the highest
// priority first, the oldest first within a priority.
constexpr const char* kLeaseScript = R"lua(
local c, max, vis = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now, maxatt = tonumber(ARGV[5]), tonumber(ARGV[6])
-- Due entries become ready again in their lane; an expired lease first counts as a failed
-- attempt (and may go to the DLQ).
for _ = 1, 16 do
  local due = redis.call('ZRANGEBYSCORE', K_DUE, '-inf', int(now), 'LIMIT', 0, 256)
  if #due == 0 then break end
  for _, eid in ipairs(due) do
    redis.call('ZREM', K_DUE, eid)
    local s = get_state(eid)
    local p = prio_of(eid)
    local ready = s ~= nil
    if s and s.st == 'L' then
      local h = history(eid)
      h[#h + 1] = {t = now, c = s.cons, r = 'lease expired'}
      if s.att >= maxatt then
        local f = read(lane(p), eid)
        if f then bury(eid, f, h, 'lease expired', s.att) else forget(eid) end
        ready = false
      else
        redis.call('HSET', K_HIST, eid, cjson.encode(h))
      end
    end
    if ready then
      s.st = 'Q'
      put_state(eid, s)
      redis.call('ZADD', rdy(p), int(seq_of(eid)), eid)
    end
  end
end
local out = {}
local fence = tonumber(redis.call('HGET', K_META, 'fence') or '0')
local function grant(eid, kv, s)
  fence = fence + 1
  local att = 1
  local bytes = 0
  if s then
    att = s.att + 1
    bytes = s.bytes
  else
    for i = 1, #kv, 2 do
      if kv[i] == 'bytes' then bytes = tonumber(kv[i + 1]) end
      if kv[i] == 'h' then bytes = tonumber(string.match(kv[i + 1], '^[^|]*|[^|]*|[^|]*|(%d+)|')) end
    end
  end
  put_state(eid, {st = 'L', att = att, fence = int(fence), bytes = bytes, cons = c})
  redis.call('ZADD', K_DUE, int(now + vis), eid)
  out[#out + 1] = {eid, kv, att, fence, redis.call('HGET', K_HIST, eid) or '[]'}
end
for _, lp in ipairs(redis.call('ZREVRANGE', K_LANES, 0, -1)) do
  if #out >= max then break end
  local p = tonumber(lp)
  local key = lane(p)
  for _, eid in ipairs(redis.call('ZRANGE', rdy(p), 0, max - #out - 1)) do
    redis.call('ZREM', rdy(p), eid)
    local claimed = redis.call('XCLAIM', key, G, c, 0, eid)
    if #claimed == 0 or not claimed[1] then forget(eid) else grant(eid, claimed[1][2], get_state(eid)) end
  end
  if #out < max then
    local r = redis.pcall('XREADGROUP', 'GROUP', G, c, 'COUNT', max - #out, 'STREAMS', key, '>')
    if type(r) == 'table' and r.err then
      if not string.find(r.err, 'NOGROUP') then return redis.error_reply(r.err) end
      redis.call('XGROUP', 'CREATE', key, G, '0', 'MKSTREAM')
      r = redis.call('XREADGROUP', 'GROUP', G, c, 'COUNT', max - #out, 'STREAMS', key, '>')
    end
    if r and r[1] then
      for _, e in ipairs(r[1][2]) do
        if e[2] then grant(e[1], e[2], nil) end
      end
    end
  end
end
if #out > 0 then redis.call('HSET', K_META, 'fence', int(fence)) end
return out
)lua";

// ARGV: group, n, then n × (entry id, fence). Returns one 1 (acked) or 0 (stale) per lease.
constexpr const char* kAckScript = R"lua(
local n = tonumber(ARGV[2])
local res, freed, acked = {}, 0, 0
local by_lane, all = {}, {}
for i = 0, n - 1 do
  local eid, fence = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  local s = valid(eid) and get_state(eid)
  if s and s.st == 'L' and s.fence == fence then
    local key = lane(prio_of(eid))
    by_lane[key] = by_lane[key] or {}
    table.insert(by_lane[key], eid)
    all[#all + 1] = eid
    freed = freed + s.bytes
    acked = acked + 1
    res[#res + 1] = 1
  else
    res[#res + 1] = 0
  end
end
-- Batched, in chunks that stay within Lua's unpack limit.
local function each_chunk(ids, fn)
  for i = 1, #ids, 1000 do fn(unpack(ids, i, math.min(i + 999, #ids))) end
end
for key, ids in pairs(by_lane) do
  each_chunk(ids, function(...) redis.call('XACK', key, G, ...) end)
  each_chunk(ids, function(...) redis.call('XDEL', key, ...) end)
end
if acked > 0 then
  each_chunk(all, function(...) redis.call('HDEL', K_E, ...) end)
  each_chunk(all, function(...) redis.call('HDEL', K_HIST, ...) end)
  each_chunk(all, function(...) redis.call('ZREM', K_DUE, ...) end)
  redis.call('HINCRBY', K_META, 'bytes', -freed)
  redis.call('HINCRBY', K_META, 'acked', acked)
end
return res
)lua";

// ARGV: group, entry id, fence, reason, delay_ms, now_ms, max_attempts, consumer.
// Returns -1 (stale), 0 (retry) or 1 (dead-lettered).
constexpr const char* kNackScript = R"lua(
local eid, fence, reason = ARGV[2], ARGV[3], ARGV[4]
local delay, now, maxatt, cons = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local s = valid(eid) and get_state(eid)
if not s or s.st ~= 'L' or s.fence ~= fence then return -1 end
local p = prio_of(eid)
local f = read(lane(p), eid)
if not f then
  forget(eid)
  return -1
end
local h = history(eid)
h[#h + 1] = {t = now, c = cons, r = reason}
if s.att >= maxatt then
  bury(eid, f, h, reason, s.att)
  return 1
end
redis.call('HSET', K_HIST, eid, cjson.encode(h))
s.st = 'R'
put_state(eid, s)
redis.call('ZADD', K_DUE, int(now + delay), eid)
return 0
)lua";

// ARGV: group, entry id, fence, delay_ms, now_ms. Returns -1 (stale) or 0. The lease does not
// count: the attempt count goes back down, nothing is added to the history.
constexpr const char* kReleaseScript = R"lua(
local eid, fence, delay, now = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local s = valid(eid) and get_state(eid)
if not s or s.st ~= 'L' or s.fence ~= fence then return -1 end
s.att = math.max(s.att - 1, 0)
if delay <= 0 then
  s.st = 'Q'
  redis.call('ZREM', K_DUE, eid)
  redis.call('ZADD', rdy(prio_of(eid)), int(seq_of(eid)), eid)
else
  s.st = 'R'
  redis.call('ZADD', K_DUE, int(now + delay), eid)
end
put_state(eid, s)
return 0
)lua";

// ARGV: group, entry id, fence, reason, now_ms, consumer. Returns -1 (stale) or 1 (dead).
constexpr const char* kDeadLetterScript = R"lua(
local eid, fence, reason, now, cons = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local s = valid(eid) and get_state(eid)
if not s or s.st ~= 'L' or s.fence ~= fence then return -1 end
local f = read(lane(prio_of(eid)), eid)
if not f then
  forget(eid)
  return -1
end
local h = history(eid)
h[#h + 1] = {t = now, c = cons, r = reason}
bury(eid, f, h, reason, s.att)
return 1
)lua";

// ARGV: group, all ('1' or '0'), event ids... Returns how many were replayed. A replayed event
// goes to the end of its lane (and of the drop order) with a fresh attempt count.
constexpr const char* kReplayScript = R"lua(
local all = ARGV[2] == '1'
local want = {}
for i = 3, #ARGV do want[ARGV[i]] = true end
local n = 0
for _, e in ipairs(redis.call('XRANGE', K_DLQ, '-', '+')) do
  local f = fields_of(e)
  if all or want[f.id] then
    local p = tonumber(f.prio)
    local eid = redis.call('XADD', ensure_lane(p), int(p + 512) .. '-*', 'id', f.id,
      'type', f.type, 'prio', f.prio, 'payload', f.payload, 'wall', f.wall, 'bytes', f.bytes)
    if f.history and f.history ~= '[]' and f.history ~= '{}' then
      redis.call('HSET', K_HIST, eid, f.history)
    end
    redis.call('XDEL', K_DLQ, e[1])
    redis.call('ZREM', K_DLQORD, e[1])
    n = n + 1
  end
end
return n
)lua";

// ARGV: group, now_ms. Returns {live, leased, retry, {prio, count, ...}, oldest wall ms or '',
// bytes, dlq length, {reason, count, ...}, appended, acked, dead}.
constexpr const char* kStatsScript = R"lua(
local now = tonumber(ARGV[2])
local len, byprio, oldest = 0, {}, nil
for _, lp in ipairs(redis.call('ZREVRANGE', K_LANES, 0, -1)) do
  local key = lane(tonumber(lp))
  local l = redis.call('XLEN', key)
  if l > 0 then
    len = len + l
    byprio[#byprio + 1] = lp
    byprio[#byprio + 1] = l
    local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
    if first[1] then
      local w = tonumber(fields_of(first[1]).wall or '')
      if w and (not oldest or w < oldest) then oldest = w end
    end
  end
end
local leased, retry = 0, 0
local st = redis.call('HGETALL', K_E)
for i = 1, #st, 2 do
  local code = string.sub(st[i + 1], 1, 1)
  if code == 'L' then
    if tonumber(redis.call('ZSCORE', K_DUE, st[i]) or '0') > now then
      leased = leased + 1
    else
      retry = retry + 1
    end
  elseif code == 'R' then
    retry = retry + 1
  end
end
local meta = function(k) return tonumber(redis.call('HGET', K_META, k) or '0') end
return {len, leased, retry, byprio, oldest and int(oldest) or '', meta('bytes'),
  redis.call('XLEN', K_DLQ), redis.call('HGETALL', K_DROPS), meta('appended'), meta('acked'),
  meta('dead')}
)lua";

// ARGV: group, limit, now_ms. Returns {{entry id, {fields}, state, attempts, history}, ...}:
// ready events first (highest priority, then oldest first), then the others.
constexpr const char* kPeekScript = R"lua(
local limit, now = tonumber(ARGV[2]), tonumber(ARGV[3])
local ready, other = {}, {}
for _, lp in ipairs(redis.call('ZREVRANGE', K_LANES, 0, -1)) do
  if #ready >= limit then break end
  for _, e in ipairs(redis.call('XRANGE', lane(tonumber(lp)), '-', '+', 'COUNT', limit)) do
    local s = get_state(e[1])
    local state = 'ready'
    if s and s.st == 'R' then state = 'retry' end
    if s and s.st == 'L' then
      state = 'leased'
      if tonumber(redis.call('ZSCORE', K_DUE, e[1]) or '0') <= now then state = 'retry' end
    end
    local item = {e[1], e[2], state, s and s.att or 0, redis.call('HGET', K_HIST, e[1]) or '[]'}
    if state == 'ready' then ready[#ready + 1] = item else other[#other + 1] = item end
  end
end
local out = {}
for _, item in ipairs(ready) do if #out < limit then out[#out + 1] = item end end
for _, item in ipairs(other) do if #out < limit then out[#out + 1] = item end end
return out
)lua";

const char* ScriptBody(int script) {
  switch (script) {
    case kAppend:
      return kAppendScript;
    case kLease:
      return kLeaseScript;
    case kAck:
      return kAckScript;
    case kNack:
      return kNackScript;
    case kRelease:
      return kReleaseScript;
    case kDeadLetter:
      return kDeadLetterScript;
    case kReplay:
      return kReplayScript;
    case kStats:
      return kStatsScript;
    default:
      return kPeekScript;
  }
}

std::string FullScript(int script) { return std::string(kPrelude) + ScriptBody(script); }

int64_t ToInt(std::string_view text) {
  int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

}  // namespace

// An owned reply.
class RedisQueue::Reply {
 public:
  explicit Reply(redisReply* reply) : reply_(reply) {}
  ~Reply() {
    if (reply_ != nullptr) freeReplyObject(reply_);
  }
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;
  const redisReply* get() const { return reply_; }

 private:
  redisReply* reply_;
};

namespace {

std::string Str(const redisReply* r) {
  if (r == nullptr) return "";
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
      r->type == REDIS_REPLY_ERROR) {
    return std::string(r->str, r->len);
  }
  if (r->type == REDIS_REPLY_INTEGER) return std::to_string(r->integer);
  return "";
}

int64_t Int(const redisReply* r) {
  if (r == nullptr) return 0;
  if (r->type == REDIS_REPLY_INTEGER) return r->integer;
  return ToInt(Str(r));
}

const redisReply* At(const redisReply* r, size_t i) {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || i >= r->elements) return nullptr;
  return r->element[i];
}

size_t Size(const redisReply* r) {
  return r != nullptr && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
}

// Appended entries pack type|prio|wall|bytes|id into one field "h" (the id last: it may hold
// any character); entries moved to the DLQ keep one field each.
void ReadPacked(std::string_view h, Event* event, int64_t* wall_ms) {
  std::string_view parts[4];
  for (std::string_view& part : parts) {
    const size_t bar = h.find('|');
    if (bar == std::string_view::npos) return;  // not ours: leave the event as it is
    part = h.substr(0, bar);
    h.remove_prefix(bar + 1);
  }
  int64_t prio = 0;
  int64_t wall = 0;
  std::from_chars(parts[1].data(), parts[1].data() + parts[1].size(), prio);
  std::from_chars(parts[2].data(), parts[2].data() + parts[2].size(), wall);
  event->type = std::string(parts[0]);
  event->priority = static_cast<int>(prio);
  *wall_ms = wall;
  event->id = std::string(h);
}

// Fills an event from a stream entry's field list.
void ReadFields(const redisReply* kv, Event* event, int64_t* wall_ms) {
  for (size_t i = 0; i + 1 < Size(kv); i += 2) {
    const std::string key = Str(At(kv, i));
    const redisReply* value = At(kv, i + 1);
    if (key == "id") event->id = Str(value);
    if (key == "type") event->type = Str(value);
    if (key == "prio") event->priority = static_cast<int>(Int(value));
    if (key == "payload") event->payload = Str(value);
    if (key == "wall") *wall_ms = Int(value);
    if (key == "h") ReadPacked(Str(value), event, wall_ms);
  }
}

}  // namespace

StatusOr<std::unique_ptr<Queue>> RedisQueue::Open(const QueueOptions& options) {
  // redis://host[:port][/stream]
  std::string rest = options.url.substr(8);
  if (rest.find('@') != std::string::npos) {
    return UnimplementedError("redis URL with credentials is not supported: " + options.url);
  }
  std::string stream = "edgeloop";
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    stream = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  if (stream.empty() || stream.find_first_of(" \t\r\n") != std::string::npos) {
    return InvalidArgumentError("bad stream name in queue URL " + options.url);
  }
  std::string host = rest;
  int port = 6379;
  if (const size_t colon = rest.rfind(':'); colon != std::string::npos) {
    host = rest.substr(0, colon);
    const std::string port_text = rest.substr(colon + 1);
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port <= 0 ||
        port > 65535) {
      return InvalidArgumentError("bad port in queue URL " + options.url);
    }
  }
  if (host.empty()) return InvalidArgumentError("no host in queue URL " + options.url);
  if (options.redis_group.empty()) return InvalidArgumentError("redis_group is empty");
  std::unique_ptr<RedisQueue> queue(new RedisQueue(options, host, port, stream));

  ASSIGN_OR_RETURN(redisContext * context, queue->Connect());
  auto command = [&](std::vector<std::string> args) -> StatusOr<std::unique_ptr<Reply>> {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& arg : args) {
      argv.push_back(arg.data());
      lens.push_back(arg.size());
    }
    auto* raw = static_cast<redisReply*>(
        redisCommandArgv(context, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (raw == nullptr) {
      return UnavailableError("redis " + queue->Describe() + ": " + context->errstr);
    }
    return std::make_unique<Reply>(raw);
  };
  // Layout 2 (one stream per priority) is marked in S:meta; a queue written by an older build
  // (one stream S) is refused rather than misread.
  Status status;
  const std::string meta_key = stream + ":meta";
  auto layout = command({"HGET", meta_key, "layout"});
  if (!layout.ok()) {
    status = layout.status();
  } else if ((*layout)->get()->type == REDIS_REPLY_ERROR) {
    status = InternalError("redis HGET: " + Str((*layout)->get()));
  } else if ((*layout)->get()->type == REDIS_REPLY_NIL) {
    auto exists = command({"EXISTS", meta_key, stream});
    if (!exists.ok()) {
      status = exists.status();
    } else if (Int((*exists)->get()) > 0) {
      status = FailedPreconditionError("the queue at " + queue->Describe() +
                                       " was written by an older build (one stream, layout 1); "
                                       "drain it with that build, or delete its keys");
    } else if (options.read_only) {
      status = NotFoundError("no queue at " + queue->Describe());
    } else {
      auto created = command({"HSETNX", meta_key, "layout", std::to_string(kLayout)});
      if (!created.ok()) status = created.status();
    }
  } else if (Str((*layout)->get()) != std::to_string(kLayout)) {
    status = FailedPreconditionError("the queue at " + queue->Describe() + " has layout " +
                                     Str((*layout)->get()) + ", this build reads " +
                                     std::to_string(kLayout));
  }
  for (int script = 0; status.ok() && script < kNumScripts; ++script) {
    auto loaded = command({"SCRIPT", "LOAD", FullScript(script)});
    if (!loaded.ok()) {
      status = loaded.status();
    } else if ((*loaded)->get()->type != REDIS_REPLY_STRING) {
      status = InternalError("redis SCRIPT LOAD: " + Str((*loaded)->get()));
    } else {
      queue->shas_.push_back(Str((*loaded)->get()));
    }
  }
  queue->ReturnConnection(context, status.ok());
  RETURN_IF_ERROR(status);
  return std::unique_ptr<Queue>(std::move(queue));
}

RedisQueue::RedisQueue(const QueueOptions& options, std::string host, int port, std::string stream)
    : options_(options), host_(std::move(host)), port_(port), stream_(std::move(stream)) {
  std::random_device device;
  rng_.seed((static_cast<uint64_t>(device()) << 32) | device());
}

RedisQueue::~RedisQueue() {
  for (redisContext* context : idle_) redisFree(context);
}

std::string RedisQueue::Describe() const {
  return "redis://" + host_ + ":" + std::to_string(port_) + "/" + stream_;
}

int64_t RedisQueue::WallMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             options_.clock->WallNow().time_since_epoch())
      .count();
}

double RedisQueue::Uniform01() {
  if (options_.uniform01) return options_.uniform01();
  std::lock_guard<std::mutex> lock(mu_);
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
}

StatusOr<redisContext*> RedisQueue::Connect() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      redisContext* context = idle_.back();
      idle_.pop_back();
      return context;
    }
  }
  const auto ms = options_.redis_timeout.count();
  timeval timeout{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
  redisContext* context = redisConnectWithTimeout(host_.c_str(), port_, timeout);
  if (context == nullptr) return UnavailableError("redis " + Describe() + ": out of memory");
  if (context->err != 0) {
    Status status =
        UnavailableError("cannot reach redis at " + Describe() + ": " + context->errstr);
    redisFree(context);
    return status;
  }
  redisSetTimeout(context, timeout);
  return context;
}

void RedisQueue::ReturnConnection(redisContext* context, bool healthy) {
  if (!healthy || context->err != 0) {
    redisFree(context);
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  idle_.push_back(context);
}

StatusOr<std::unique_ptr<RedisQueue::Reply>> RedisQueue::Eval(
    int script, const std::vector<std::string>& args) {
  return EvalViews(script, std::vector<std::string_view>(args.begin(), args.end()));
}

StatusOr<std::unique_ptr<RedisQueue::Reply>> RedisQueue::EvalViews(
    int script, const std::vector<std::string_view>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  auto build = [&](const std::string& head) {
    argv.clear();
    lens.clear();
    argv.push_back("EVALSHA");
    lens.push_back(7);
    argv.push_back(head.data());
    lens.push_back(head.size());
    static const std::string kOne = "1";
    argv.push_back(kOne.data());
    lens.push_back(1);
    argv.push_back(stream_.data());
    lens.push_back(stream_.size());
    argv.push_back(options_.redis_group.data());
    lens.push_back(options_.redis_group.size());
    for (std::string_view arg : args) {
      argv.push_back(arg.data());
      lens.push_back(arg.size());
    }
  };
  for (int attempt = 0; attempt < 2; ++attempt) {
    ASSIGN_OR_RETURN(redisContext * context, Connect());
    build(shas_[script]);
    auto* raw = static_cast<redisReply*>(
        redisCommandArgv(context, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (raw == nullptr) {
      const std::string error = context->errstr;
      ReturnConnection(context, false);
      if (attempt == 0) continue;  // a stale pooled connection: try a fresh one
      return UnavailableError("redis " + Describe() + ": " + error);
    }
    auto reply = std::make_unique<Reply>(raw);
    if (raw->type == REDIS_REPLY_ERROR && Str(raw).starts_with("NOSCRIPT")) {
      // The server lost its script cache (restart): load the script again and retry.
      const std::string body = FullScript(script);
      const char* load_argv[] = {"SCRIPT", "LOAD", body.c_str()};
      const size_t load_lens[] = {6, 4, body.size()};
      auto* loaded = static_cast<redisReply*>(redisCommandArgv(context, 3, load_argv, load_lens));
      if (loaded != nullptr) freeReplyObject(loaded);
      ReturnConnection(context, loaded != nullptr);
      continue;
    }
    ReturnConnection(context, true);
    if (raw->type == REDIS_REPLY_ERROR) {
      return InternalError("redis " + Describe() + ": " + Str(raw));
    }
    return reply;
  }
  return UnavailableError("redis " + Describe() + ": command failed twice");
}

StatusOr<AppendResult> RedisQueue::Append(std::vector<Event> events) {
  AppendResult result;
  if (options_.read_only) return FailedPreconditionError("queue is open read-only");
  AppendRequest request;
  request.count = events.size();
  request.args.reserve(events.size() * 4);
  const std::string wall = std::to_string(WallMs());
  for (Event& event : events) {
    RETURN_IF_ERROR(internal::ValidateEvent(event, options_.max_event_bytes));
    if (event.priority < -512 || event.priority > 511) {
      return InvalidArgumentError("the redis queue takes priorities in [-512, 511]");
    }
    if (event.id.empty()) event.id = NewEventId(*options_.clock);
    const int64_t stored = event.StoredBytes();
    result.ids.push_back(event.id);
    std::string prio = std::to_string(event.priority);
    std::string size = std::to_string(stored);
    std::string packed;
    packed.reserve(event.type.size() + prio.size() + wall.size() + size.size() + event.id.size() +
                   4);
    packed.append(event.type).append("|").append(prio).append("|").append(wall);
    packed.append("|").append(size).append("|").append(event.id);
    request.args.push_back(std::move(prio));
    request.args.push_back(std::move(size));
    request.args.push_back(std::move(packed));
    request.args.push_back(std::move(event.payload));
  }
  if (events.empty()) return result;

  // Group commit: queue the request; while it is not done, either lead a batch (everything
  // queued, up to a size cap) or wait for the batches in flight.
  constexpr int kMaxInFlight = 2;
  constexpr size_t kMaxBatchEvents = 4096;
  constexpr size_t kMaxBatchBytes = 8 << 20;
  std::unique_lock<std::mutex> lock(append_mu_);
  append_queue_.push_back(&request);
  while (!request.done) {
    if (append_in_flight_ >= kMaxInFlight || append_queue_.empty()) {
      append_cv_.wait(lock);
      continue;
    }
    std::vector<AppendRequest*> batch;
    size_t events_in_batch = 0;
    size_t bytes_in_batch = 0;
    while (!append_queue_.empty()) {
      AppendRequest* next = append_queue_.front();
      size_t next_bytes = 0;
      for (const std::string& arg : next->args) next_bytes += arg.size();
      if (!batch.empty() && (events_in_batch + next->count > kMaxBatchEvents ||
                             bytes_in_batch + next_bytes > kMaxBatchBytes)) {
        break;
      }
      append_queue_.pop_front();
      batch.push_back(next);
      events_in_batch += next->count;
      bytes_in_batch += next_bytes;
    }
    ++append_in_flight_;
    lock.unlock();
    SendAppends(batch);
    lock.lock();
    --append_in_flight_;
    for (AppendRequest* done : batch) done->done = true;
    append_cv_.notify_all();
  }
  lock.unlock();
  RETURN_IF_ERROR(request.status);
  for (size_t position : request.rejected) result.rejected.push_back(result.ids[position]);
  return result;
}

void RedisQueue::SendAppends(const std::vector<AppendRequest*>& batch) {
  size_t total = 0;
  for (const AppendRequest* request : batch) total += request->count;
  const int64_t max = options_.max_bytes;
  const std::string head[] = {
      std::to_string(max),
      std::to_string(static_cast<int64_t>(static_cast<double>(max) * options_.high_watermark)),
      std::to_string(static_cast<int64_t>(static_cast<double>(max) * options_.low_watermark)),
      std::string(), std::to_string(total)};
  std::vector<std::string_view> args(std::begin(head), std::end(head));
  args.reserve(args.size() + total * 4);
  for (const AppendRequest* request : batch) {
    args.insert(args.end(), request->args.begin(), request->args.end());
  }
  auto reply = EvalViews(kAppend, args);
  if (!reply.ok()) {
    for (AppendRequest* request : batch) request->status = reply.status();
    return;
  }
  // Rejected positions are over the whole batch, in order: map them back to their requests.
  size_t r = 0;
  size_t offset = 0;
  const size_t rejected = Size((*reply)->get());
  for (AppendRequest* request : batch) {
    while (r < rejected) {
      const auto position = static_cast<size_t>(Int(At((*reply)->get(), r)));
      if (position >= offset + request->count) break;
      if (position >= offset) request->rejected.push_back(position - offset);
      ++r;
    }
    offset += request->count;
  }
}

StatusOr<std::vector<Lease>> RedisQueue::Lease(std::string_view consumer, int max,
                                               std::chrono::milliseconds visibility,
                                               std::chrono::milliseconds wait) {
  if (options_.read_only) return FailedPreconditionError("queue is open read-only");
  if (max <= 0) return InvalidArgumentError("lease: max must be positive");
  if (consumer.empty()) return InvalidArgumentError("lease: consumer name is empty");
  if (visibility.count() < 0) return InvalidArgumentError("lease: negative visibility");
  if (visibility.count() == 0) visibility = options_.default_visibility;
  const auto wait_until = std::chrono::steady_clock::now() + wait;
  while (true) {
    const int64_t now = WallMs();
    ASSIGN_OR_RETURN(std::unique_ptr<Reply> reply,
                     Eval(kLease, {std::string(consumer), std::to_string(max),
                                   std::to_string(visibility.count()), std::to_string(now),
                                   std::to_string(options_.retry.max_attempts)}));
    std::vector<queue::Lease> leases;
    for (size_t i = 0; i < Size(reply->get()); ++i) {
      const redisReply* item = At(reply->get(), i);
      queue::Lease lease;
      lease.handle = Str(At(item, 0));
      ReadFields(At(item, 1), &lease.event, &lease.enqueued_unix_ms);
      lease.attempt = static_cast<int>(Int(At(item, 2)));
      lease.fence = static_cast<uint64_t>(Int(At(item, 3)));
      lease.history = internal::DecodeHistory(Str(At(item, 4)));
      lease.consumer = std::string(consumer);
      lease.age_ms = std::max<int64_t>(0, now - lease.enqueued_unix_ms);
      leases.push_back(std::move(lease));
    }
    if (!leases.empty() || std::chrono::steady_clock::now() >= wait_until) return leases;
    // Redis cannot block inside a script: poll.
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        wait_until - std::chrono::steady_clock::now(), std::chrono::milliseconds(20)));
  }
}

StatusOr<std::vector<Status>> RedisQueue::AckBatch(const std::vector<queue::Lease>& leases) {
  if (options_.read_only) return FailedPreconditionError("queue is open read-only");
  std::vector<Status> results;
  if (leases.empty()) return results;
  std::vector<std::string> args;
  args.push_back(std::to_string(leases.size()));
  for (const queue::Lease& lease : leases) {
    args.push_back(lease.handle);
    args.push_back(std::to_string(lease.fence));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Reply> reply, Eval(kAck, args));
  for (size_t i = 0; i < leases.size(); ++i) {
    if (Int(At(reply->get(), i)) == 1) {
      results.push_back(Status::Ok());
    } else {
      results.push_back(AbortedError("ack: lease of event " + leases[i].event.id + " (fence " +
                                     std::to_string(leases[i].fence) + ") is no longer current"));
    }
  }
  return results;
}

StatusOr<NackOutcome> RedisQueue::Nack(const queue::Lease& lease, std::string_view reason,
                                       std::optional<std::chrono::milliseconds> retry_after) {
  if (options_.read_only) return FailedPreconditionError("queue is open read-only");
  if (retry_after && retry_after->count() < 0) {
    return InvalidArgumentError("nack: negative retry_after");
  }
  const std::chrono::milliseconds delay =
      retry_after ? *retry_after : options_.retry.Backoff(lease.attempt, Uniform01());
  ASSIGN_OR_RETURN(std::unique_ptr<Reply> reply,
                   Eval(kNack, {lease.handle, std::to_string(lease.fence), std::string(reason),
                                std::to_string(delay.count()), std::to_string(WallMs()),
                                std::to_string(options_.retry.max_attempts), lease.consumer}));
  const int64_t outcome = Int(reply->get());
  if (outcome < 0) {
    return AbortedError("nack: lease of event " + lease.event.id + " (fence " +
                        std::to_string(lease.fence) + ") is no longer current");
  }
  return outcome == 1 ? NackOutcome::kDeadLettered : NackOutcome::kRetry;
}

Status RedisQueue::Release(const queue::Lease& lease, std::chrono::milliseconds delay) {
  if (options_.read_only) return FailedPreconditionError("queue is open read-only");
  if (delay.count() < 0) return InvalidArgumentError("release: negative delay");
  ASSIGN_OR_RETURN(std::unique_ptr<Reply> reply,
                   Eval(kRelease, {lease.handle, std::to_string(lease.fence),
                                   std::to_string(delay.count()), std::to_string(WallMs())}));
  if (Int(reply->get()) < 0) {
    return AbortedError("release: lease of event " + lease.event.id + " (fence " +
                        std::to_string(lease.fence) + ") is no longer current");
  }
  return Status::Ok();
}

Status RedisQueue::DeadLetter(const queue::Lease& lease, std::string_view reason) {
  if (options_.read_only) return FailedPreconditionError("queue is open read-only");
  ASSIGN_OR_RETURN(
      std::unique_ptr<Reply> reply,
      Eval(kDeadLetter, {lease.handle, std::to_string(lease.fence), std::string(reason),
                         std::to_string(WallMs()), lease.consumer}));
  if (Int(reply->get()) < 0) {
    return AbortedError("dead-letter: lease of event " + lease.event.id + " (fence " +
                        std::to_string(lease.fence) + ") is no longer current");
  }
  return Status::Ok();
}

StatusOr<QueueStats> RedisQueue::Stats() {
  const int64_t now = WallMs();
  ASSIGN_OR_RETURN(std::unique_ptr<Reply> reply, Eval(kStats, {std::to_string(now)}));
  const redisReply* r = reply->get();
  QueueStats stats;
  stats.backend = "redis";
  const int64_t length = Int(At(r, 0));
  stats.leased = Int(At(r, 1));
  stats.retry = Int(At(r, 2));
  stats.ready = std::max<int64_t>(0, length - stats.leased - stats.retry);
  const redisReply* by_priority = At(r, 3);
  for (size_t i = 0; i + 1 < Size(by_priority); i += 2) {
    stats.depth_by_priority[static_cast<int>(Int(At(by_priority, i)))] =
        Int(At(by_priority, i + 1));
  }
  const std::string oldest = Str(At(r, 4));
  if (!oldest.empty()) stats.oldest_age_ms = std::max<int64_t>(0, now - ToInt(oldest));
  stats.bytes = Int(At(r, 5));
  stats.max_bytes = options_.max_bytes;
  stats.dlq_size = Int(At(r, 6));
  const redisReply* drops = At(r, 7);
  for (size_t i = 0; i + 1 < Size(drops); i += 2) {
    stats.drops[Str(At(drops, i))] = Int(At(drops, i + 1));
  }
  stats.appended_total = Int(At(r, 8));
  stats.acked_total = Int(At(r, 9));
  stats.dead_lettered_total = Int(At(r, 10));
  return stats;
}

StatusOr<std::vector<EventInfo>> RedisQueue::Peek(int limit) {
  if (limit <= 0) return InvalidArgumentError("peek: limit must be positive");
  const int64_t now = WallMs();
  ASSIGN_OR_RETURN(std::unique_ptr<Reply> reply,
                   Eval(kPeek, {std::to_string(limit), std::to_string(now)}));
  std::vector<EventInfo> infos;
  for (size_t i = 0; i < Size(reply->get()); ++i) {
    const redisReply* item = At(reply->get(), i);
    EventInfo info;
    info.handle = Str(At(item, 0));
    ReadFields(At(item, 1), &info.event, &info.enqueued_unix_ms);
    info.state = Str(At(item, 2));
    info.attempts = static_cast<int>(Int(At(item, 3)));
    info.history = internal::DecodeHistory(Str(At(item, 4)));
    info.age_ms = std::max<int64_t>(0, now - info.enqueued_unix_ms);
    infos.push_back(std::move(info));
  }
  return infos;
}

StatusOr<std::vector<EventInfo>> RedisQueue::DlqList(int limit) {
  if (limit <= 0) return InvalidArgumentError("dlq list: limit must be positive");
  ASSIGN_OR_RETURN(redisContext * context, Connect());
  const std::string key = stream_ + ":dlq";
  const std::string count = std::to_string(limit);
  const char* argv[] = {"XRANGE", key.c_str(), "-", "+", "COUNT", count.c_str()};
  auto* raw = static_cast<redisReply*>(redisCommandArgv(context, 6, argv, nullptr));
  if (raw == nullptr) {
    const std::string error = context->errstr;
    ReturnConnection(context, false);
    return UnavailableError("redis " + Describe() + ": " + error);
  }
  ReturnConnection(context, true);
  Reply reply(raw);
  if (raw->type == REDIS_REPLY_ERROR) return InternalError("redis XRANGE: " + Str(raw));
  const int64_t now = WallMs();
  std::vector<EventInfo> infos;
  for (size_t i = 0; i < Size(raw); ++i) {
    const redisReply* entry = At(raw, i);
    const redisReply* kv = At(entry, 1);
    EventInfo info;
    info.handle = Str(At(entry, 0));
    info.state = "dead";
    ReadFields(kv, &info.event, &info.enqueued_unix_ms);
    for (size_t j = 0; j + 1 < Size(kv); j += 2) {
      const std::string field = Str(At(kv, j));
      if (field == "attempts") info.attempts = static_cast<int>(Int(At(kv, j + 1)));
      if (field == "history") info.history = internal::DecodeHistory(Str(At(kv, j + 1)));
      if (field == "reason") info.dead_reason = Str(At(kv, j + 1));
    }
    info.age_ms = std::max<int64_t>(0, now - info.enqueued_unix_ms);
    infos.push_back(std::move(info));
  }
  return infos;
}

StatusOr<int64_t> RedisQueue::DlqReplay(const std::vector<std::string>& ids) {
  if (options_.read_only) return FailedPreconditionError("queue is open read-only");
  std::vector<std::string> args;
  args.push_back(ids.empty() ? "1" : "0");
  args.insert(args.end(), ids.begin(), ids.end());
  ASSIGN_OR_RETURN(std::unique_ptr<Reply> reply, Eval(kReplay, args));
  return Int(reply->get());
}

}  // namespace edgeloop::queue
