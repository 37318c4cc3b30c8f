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

// Every script starts with this: key names and helpers. KEYS[1] is the stream, ARGV[1] the
// consumer group. docs/queue.md describes the keys.
constexpr const char* kPrelude = R"lua(
local S = KEYS[1]
local G = ARGV[1]
local K_META = S .. ':meta'
local K_ATT = S .. ':att'
local K_FENCE = S .. ':fence'
local K_CONS = S .. ':cons'
local K_ST = S .. ':st'
local K_HIST = S .. ':hist'
local K_DUE = S .. ':due'
local K_DROP = S .. ':drop'
local K_DLQ = S .. ':dlq'
local K_DROPS = S .. ':drops'
local TWO42 = 4398046511104
local function fields_of(entry)
  local f = {}
  local kv = entry[2]
  for i = 1, #kv, 2 do f[kv[i]] = kv[i + 1] end
  return f
end
local function read(stream, id)
  local r = redis.call('XRANGE', stream, id, id)
  if #r == 0 then return nil end
  return fields_of(r[1])
end
local function forget(id)
  redis.call('HDEL', K_ATT, id)
  redis.call('HDEL', K_FENCE, id)
  redis.call('HDEL', K_CONS, id)
  redis.call('HDEL', K_ST, id)
  redis.call('HDEL', K_HIST, id)
  redis.call('ZREM', K_DUE, id)
end
local function drop_score(prio, ms) return (prio + 512) * TWO42 + ms end
local function entry_ms(id) return tonumber(string.match(id, '^(%d+)')) end
local function history(id)
  local h = redis.call('HGET', K_HIST, id)
  if h then
    local ok, decoded = pcall(cjson.decode, h)
    if ok and type(decoded) == 'table' then return decoded end
  end
  return {}
end
local function bury(id, f, hist, reason)
  local score = redis.call('ZSCORE', K_DROP, 'l|' .. id) or drop_score(tonumber(f.prio), entry_ms(id))
  local dead = redis.call('XADD', K_DLQ, '*', 'id', f.id, 'type', f.type, 'prio', f.prio,
    'payload', f.payload, 'wall', f.wall, 'bytes', f.bytes,
    'attempts', redis.call('HGET', K_ATT, id) or '0', 'history', cjson.encode(hist),
    'reason', reason)
  redis.call('XACK', S, G, id)
  redis.call('XDEL', S, id)
  forget(id)
  redis.call('ZREM', K_DROP, 'l|' .. id)
  redis.call('ZADD', K_DROP, score, 'd|' .. dead)
  redis.call('HINCRBY', K_META, 'dead', 1)
end
)lua";

enum Script { kAppend = 0, kLease, kAck, kNack, kReplay, kStats, kPeek, kNumScripts };

// ARGV: group, max_bytes, high, low, wall_ms, n, then n × (id, type, prio, payload, bytes).
// Returns the ids it rejected.
constexpr const char* kAppendScript = R"lua(
local maxb, high, low = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local wall, n = ARGV[5], tonumber(ARGV[6])
local bytes = tonumber(redis.call('HGET', K_META, 'bytes') or '0')
local rejected, appended = {}, 0
for i = 0, n - 1 do
  local b = 7 + i * 5
  local id, typ, prio, payload = ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2]), ARGV[b + 3]
  local size = tonumber(ARGV[b + 4])
  local ok = true
  if maxb > 0 and size > maxb then
    ok = false
  elseif maxb > 0 and bytes + size > high then
    while bytes + size > low do
      local c = redis.call('ZRANGE', K_DROP, 0, 0, 'WITHSCORES')
      if #c == 0 then break end
      if math.floor(tonumber(c[2]) / TWO42) - 512 > prio then break end
      local member = c[1]
      local eid = string.sub(member, 3)
      local f
      if string.sub(member, 1, 1) == 'l' then
        f = read(S, eid)
        redis.call('XACK', S, G, eid)
        redis.call('XDEL', S, eid)
        forget(eid)
      else
        f = read(K_DLQ, eid)
        redis.call('XDEL', K_DLQ, eid)
      end
      redis.call('ZREM', K_DROP, member)
      if f then
        bytes = bytes - tonumber(f.bytes)
        redis.call('HINCRBY', K_DROPS, 'quota:' .. f.type, 1)
      end
    end
    if bytes + size > maxb then ok = false end
  end
  if ok then
    local eid = redis.call('XADD', S, '*', 'id', id, 'type', typ, 'prio', ARGV[b + 2],
      'payload', payload, 'wall', wall, 'bytes', ARGV[b + 4])
    redis.call('ZADD', K_DROP, drop_score(prio, entry_ms(eid)), 'l|' .. eid)
    bytes = bytes + size
    appended = appended + 1
  else
    rejected[#rejected + 1] = id
    redis.call('HINCRBY', K_DROPS, 'rejected:' .. typ, 1)
  end
end
redis.call('HSET', K_META, 'bytes', bytes)
if appended > 0 then redis.call('HINCRBY', K_META, 'appended', appended) end
return rejected
)lua";

// ARGV: group, consumer, max, visibility_ms, now_ms, max_attempts.
// Returns {{entry id, {field, value, ...}, attempt, fence, history json}, ...}.
constexpr const char* kLeaseScript = R"lua(
local c, max, vis = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now, maxatt = tonumber(ARGV[5]), tonumber(ARGV[6])
local out = {}
local function grant(eid, kv)
  local fence = redis.call('HINCRBY', K_META, 'fence', 1)
  local att = redis.call('HINCRBY', K_ATT, eid, 1)
  redis.call('HSET', K_FENCE, eid, fence)
  redis.call('HSET', K_CONS, eid, c)
  redis.call('HSET', K_ST, eid, 'L')
  redis.call('ZADD', K_DUE, now + vis, eid)
  out[#out + 1] = {eid, kv, att, fence, redis.call('HGET', K_HIST, eid) or '[]'}
end
while #out < max do
  local due = redis.call('ZRANGEBYSCORE', K_DUE, '-inf', now, 'LIMIT', 0, max - #out)
  if #due == 0 then break end
  for _, eid in ipairs(due) do
    local f = read(S, eid)
    if not f then
      forget(eid)
    else
      local alive = true
      if redis.call('HGET', K_ST, eid) == 'L' then
        local h = history(eid)
        h[#h + 1] = {t = now, c = redis.call('HGET', K_CONS, eid) or '', r = 'lease expired'}
        redis.call('HSET', K_HIST, eid, cjson.encode(h))
        if tonumber(redis.call('HGET', K_ATT, eid) or '0') >= maxatt then
          bury(eid, f, h, 'lease expired')
          alive = false
        end
      end
      if alive then
        local claimed = redis.call('XCLAIM', S, G, c, 0, eid)
        if #claimed == 0 or not claimed[1] then forget(eid) else grant(eid, claimed[1][2]) end
      end
    end
  end
end
if #out < max then
  local r = redis.call('XREADGROUP', 'GROUP', G, c, 'COUNT', max - #out, 'STREAMS', S, '>')
  if r and r[1] then
    for _, e in ipairs(r[1][2]) do
      if e[2] then grant(e[1], e[2]) end
    end
  end
end
return out
)lua";

// ARGV: group, n, then n × (entry id, fence). Returns one 1 (acked) or 0 (stale) per lease.
constexpr const char* kAckScript = R"lua(
local n = tonumber(ARGV[2])
local res, freed, acked = {}, 0, 0
for i = 0, n - 1 do
  local eid, fence = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  if redis.call('HGET', K_FENCE, eid) == fence and redis.call('HGET', K_ST, eid) == 'L' then
    local f = read(S, eid)
    redis.call('XACK', S, G, eid)
    redis.call('XDEL', S, eid)
    forget(eid)
    redis.call('ZREM', K_DROP, 'l|' .. eid)
    if f then freed = freed + tonumber(f.bytes) end
    acked = acked + 1
    res[#res + 1] = 1
  else
    res[#res + 1] = 0
  end
end
if acked > 0 then
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
if redis.call('HGET', K_FENCE, eid) ~= fence or redis.call('HGET', K_ST, eid) ~= 'L' then
  return -1
end
local f = read(S, eid)
if not f then
  forget(eid)
  return -1
end
local h = history(eid)
h[#h + 1] = {t = now, c = cons, r = reason}
if tonumber(redis.call('HGET', K_ATT, eid) or '0') >= maxatt then
  bury(eid, f, h, reason)
  return 1
end
redis.call('HSET', K_HIST, eid, cjson.encode(h))
redis.call('HSET', K_ST, eid, 'R')
redis.call('ZADD', K_DUE, now + delay, eid)
return 0
)lua";

// ARGV: group, all ('1' or '0'), event ids... Returns how many were replayed.
constexpr const char* kReplayScript = R"lua(
local all = ARGV[2] == '1'
local want = {}
for i = 3, #ARGV do want[ARGV[i]] = true end
local n = 0
for _, e in ipairs(redis.call('XRANGE', K_DLQ, '-', '+')) do
  local f = fields_of(e)
  if all or want[f.id] then
    local score = redis.call('ZSCORE', K_DROP, 'd|' .. e[1]) or
      drop_score(tonumber(f.prio), entry_ms(e[1]))
    local eid = redis.call('XADD', S, '*', 'id', f.id, 'type', f.type, 'prio', f.prio,
      'payload', f.payload, 'wall', f.wall, 'bytes', f.bytes)
    redis.call('HSET', K_HIST, eid, f.history)
    redis.call('XDEL', K_DLQ, e[1])
    redis.call('ZREM', K_DROP, 'd|' .. e[1])
    redis.call('ZADD', K_DROP, score, 'l|' .. eid)
    n = n + 1
  end
end
return n
)lua";

// ARGV: group, now_ms. Returns {xlen, leased, retry, {prio, count, ...}, oldest wall ms or '',
// bytes, dlq length, {reason, count, ...}, appended, acked, dead}.
constexpr const char* kStatsScript = R"lua(
local now = tonumber(ARGV[2])
local len = redis.call('XLEN', S)
local leased, retry = 0, 0
local st = redis.call('HGETALL', K_ST)
for i = 1, #st, 2 do
  local deadline = tonumber(redis.call('ZSCORE', K_DUE, st[i]) or '0')
  if st[i + 1] == 'L' and deadline > now then leased = leased + 1 else retry = retry + 1 end
end
local counts, order = {}, {}
local all = redis.call('ZRANGE', K_DROP, 0, -1, 'WITHSCORES')
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 1) == 'l' then
    local p = math.floor(tonumber(all[i + 1]) / TWO42) - 512
    if not counts[p] then
      counts[p] = 0
      order[#order + 1] = p
    end
    counts[p] = counts[p] + 1
  end
end
local byprio = {}
for _, p in ipairs(order) do
  byprio[#byprio + 1] = tostring(p)
  byprio[#byprio + 1] = counts[p]
end
local first = redis.call('XRANGE', S, '-', '+', 'COUNT', 1)
local oldest = ''
if first[1] then oldest = fields_of(first[1]).wall or '' end
local meta = function(k) return tonumber(redis.call('HGET', K_META, k) or '0') end
return {len, leased, retry, byprio, oldest, meta('bytes'), redis.call('XLEN', K_DLQ),
  redis.call('HGETALL', K_DROPS), meta('appended'), meta('acked'), meta('dead')}
)lua";

// ARGV: group, limit, now_ms. Returns {{entry id, {fields}, state, attempts, history}, ...}.
constexpr const char* kPeekScript = R"lua(
local limit, now = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for _, e in ipairs(redis.call('XRANGE', S, '-', '+', 'COUNT', limit)) do
  local st = redis.call('HGET', K_ST, e[1])
  local state = 'ready'
  if st == 'R' then state = 'retry' end
  if st == 'L' then
    state = 'leased'
    if tonumber(redis.call('ZSCORE', K_DUE, e[1]) or '0') <= now then state = 'retry' end
  end
  out[#out + 1] = {e[1], e[2], state, redis.call('HGET', K_ATT, e[1]) or '0',
    redis.call('HGET', K_HIST, e[1]) or '[]'}
end
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
  Status status;
  if (options.read_only) {
    auto exists = command({"EXISTS", stream});
    if (!exists.ok()) {
      status = exists.status();
    } else if (Int((*exists)->get()) == 0) {
      status = NotFoundError("no queue at " + queue->Describe());
    }
  } else {
    auto created = command({"XGROUP", "CREATE", stream, options.redis_group, "0", "MKSTREAM"});
    if (!created.ok()) {
      status = created.status();
    } else if ((*created)->get()->type == REDIS_REPLY_ERROR &&
               !Str((*created)->get()).starts_with("BUSYGROUP")) {
      status = InternalError("redis XGROUP CREATE: " + Str((*created)->get()));
    }
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
  queue->Release(context, status.ok());
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

void RedisQueue::Release(redisContext* context, bool healthy) {
  if (!healthy || context->err != 0) {
    redisFree(context);
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  idle_.push_back(context);
}

StatusOr<std::unique_ptr<RedisQueue::Reply>> RedisQueue::Eval(
    int script, const std::vector<std::string>& args) {
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
    for (const std::string& arg : args) {
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
      Release(context, false);
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
      Release(context, loaded != nullptr);
      continue;
    }
    Release(context, true);
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
  std::vector<std::string> args;
  const int64_t max = options_.max_bytes;
  args.push_back(std::to_string(max));
  args.push_back(
      std::to_string(static_cast<int64_t>(static_cast<double>(max) * options_.high_watermark)));
  args.push_back(
      std::to_string(static_cast<int64_t>(static_cast<double>(max) * options_.low_watermark)));
  args.push_back(std::to_string(WallMs()));
  args.push_back(std::to_string(events.size()));
  for (Event& event : events) {
    RETURN_IF_ERROR(internal::ValidateEvent(event, options_.max_event_bytes));
    if (event.priority < -512 || event.priority > 511) {
      return InvalidArgumentError("the redis queue takes priorities in [-512, 511]");
    }
    if (event.id.empty()) event.id = NewEventId(*options_.clock);
    const int64_t stored = event.StoredBytes();
    result.ids.push_back(event.id);
    args.push_back(event.id);
    args.push_back(event.type);
    args.push_back(std::to_string(event.priority));
    args.push_back(std::move(event.payload));
    args.push_back(std::to_string(stored));
  }
  if (events.empty()) return result;
  ASSIGN_OR_RETURN(std::unique_ptr<Reply> reply, Eval(kAppend, args));
  for (size_t i = 0; i < Size(reply->get()); ++i)
    result.rejected.push_back(Str(At(reply->get(), i)));
  return result;
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
    Release(context, false);
    return UnavailableError("redis " + Describe() + ": " + error);
  }
  Release(context, true);
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
