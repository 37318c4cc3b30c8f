// `edgeloop queue ...`: look into and operate the durable insight queue (embedded or Redis):
// stats, peek, dlq ls, dlq replay, and append, lease, ack, nack, release, dead-letter (for
// scripts, demos, operators and tests).
#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/clock.h"
#include "queue/queue.h"

namespace edgeloop::cli {
namespace {

using Json = nlohmann::json;

struct QueueCommandOptions {
  std::string url;
  bool json = false;
  int64_t max_bytes = 0;
  int limit = 20;
  // dlq replay
  std::vector<std::string> ids;
  bool all = false;
  // append
  std::string type = "insight";
  int priority = -1;  // -1: DefaultPriority(type)
  std::string payload;
  // lease, ack, nack
  std::string consumer = "cli";
  int max = 1;
  int64_t visibility_ms = 30'000;
  int max_attempts = 5;
  std::string handle;
  uint64_t fence = 0;
  std::string reason = "nacked from the command line";
  int64_t retry_after_ms = -1;  // -1: the retry policy's backoff
  // release
  int64_t delay_ms = 0;
};

int Fail(const Status& status) {
  std::cerr << "edgeloop queue: " << status.message() << "\n";
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kFailedPrecondition:
      return 2;
    case StatusCode::kPermissionDenied:
      return 3;
    case StatusCode::kNotFound:
      return 4;
    case StatusCode::kUnavailable:
      return 5;
    case StatusCode::kResourceExhausted:
      return 6;
    case StatusCode::kAborted:  // a stale lease
      return 7;
    default:
      return 1;
  }
}

StatusOr<std::unique_ptr<queue::Queue>> OpenQueue(const QueueCommandOptions& o, bool read_only) {
  if (o.url.empty()) {
    return InvalidArgumentError("--queue is required (file:///dir or redis://host:port/stream)");
  }
  queue::QueueOptions options;
  options.url = o.url;
  options.read_only = read_only;
  options.max_bytes = o.max_bytes;
  options.retry.max_attempts = o.max_attempts;
  return queue::Queue::Open(options);
}

std::string FormatAge(int64_t ms) {
  if (ms < 1000) return std::to_string(ms) + "ms";
  if (ms < 120'000) return std::to_string(ms / 1000) + "s";
  if (ms < 7'200'000) return std::to_string(ms / 60'000) + "m";
  return std::to_string(ms / 3'600'000) + "h";
}

std::string FormatWall(int64_t unix_ms) {
  return FormatRfc3339(Clock::WallTime(std::chrono::milliseconds(unix_ms)));
}

Json HistoryJson(const std::vector<queue::Attempt>& history) {
  Json out = Json::array();
  for (const queue::Attempt& attempt : history) {
    out.push_back({{"time", FormatWall(attempt.unix_ms)},
                   {"consumer", attempt.consumer},
                   {"reason", attempt.reason}});
  }
  return out;
}

Json InfoJson(const queue::EventInfo& info) {
  Json out = {{"id", info.event.id},
              {"type", info.event.type},
              {"priority", info.event.priority},
              {"state", info.state},
              {"attempts", info.attempts},
              {"enqueued", FormatWall(info.enqueued_unix_ms)},
              {"age_ms", info.age_ms},
              {"handle", info.handle},
              {"history", HistoryJson(info.history)}};
  if (!info.dead_reason.empty()) out["reason"] = info.dead_reason;
  // The payload as JSON when it is JSON, else as a string.
  Json payload = Json::parse(info.event.payload, nullptr, /*allow_exceptions=*/false);
  out["payload"] = payload.is_discarded() ? Json(info.event.payload) : payload;
  return out;
}

void PrintJson(const Json& json) {
  std::cout << json.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
}

Status RunStats(const QueueCommandOptions& o) {
  ASSIGN_OR_RETURN(auto q, OpenQueue(o, /*read_only=*/true));
  ASSIGN_OR_RETURN(queue::QueueStats stats, q->Stats());
  if (o.json) {
    Json by_priority = Json::object();
    for (const auto& [priority, n] : stats.depth_by_priority) {
      by_priority[std::to_string(priority)] = n;
    }
    PrintJson({{"queue", q->Describe()},
               {"backend", stats.backend},
               {"ready", stats.ready},
               {"leased", stats.leased},
               {"retry", stats.retry},
               {"depth_by_priority", by_priority},
               {"oldest_age_ms", stats.oldest_age_ms},
               {"bytes", stats.bytes},
               {"max_bytes", stats.max_bytes},
               {"dlq", stats.dlq_size},
               {"drops", stats.drops},
               {"appended_total", stats.appended_total},
               {"acked_total", stats.acked_total},
               {"dead_lettered_total", stats.dead_lettered_total}});
    return Status::Ok();
  }
  std::cout << "queue     " << q->Describe() << " (" << stats.backend << ")\n"
            << "ready     " << stats.ready << "\n"
            << "leased    " << stats.leased << "\n"
            << "retry     " << stats.retry << "\n"
            << "dlq       " << stats.dlq_size << "\n"
            << "oldest    " << FormatAge(stats.oldest_age_ms) << "\n"
            << "bytes     " << stats.bytes;
  if (stats.max_bytes > 0) std::cout << " of " << stats.max_bytes;
  std::cout << "\n";
  for (const auto& [priority, n] : stats.depth_by_priority) {
    std::cout << "priority  " << priority << ": " << n << "\n";
  }
  for (const auto& [reason, n] : stats.drops)
    std::cout << "dropped   " << reason << ": " << n << "\n";
  std::cout << "totals    appended " << stats.appended_total << ", acked " << stats.acked_total
            << ", dead-lettered " << stats.dead_lettered_total << "\n";
  return Status::Ok();
}

void PrintInfos(const std::vector<queue::EventInfo>& infos, bool dead) {
  for (const queue::EventInfo& info : infos) {
    std::cout << info.event.id << "  " << info.event.type << "  p" << info.event.priority << "  "
              << info.state << "  attempts=" << info.attempts << "  age=" << FormatAge(info.age_ms);
    if (dead) std::cout << "  reason=" << info.dead_reason;
    std::cout << "\n";
    for (const queue::Attempt& attempt : info.history) {
      std::cout << "    " << FormatWall(attempt.unix_ms) << "  " << attempt.consumer << "  "
                << attempt.reason << "\n";
    }
  }
}

Status RunPeek(const QueueCommandOptions& o) {
  if (o.limit <= 0) return InvalidArgumentError("--limit must be positive");
  ASSIGN_OR_RETURN(auto q, OpenQueue(o, /*read_only=*/true));
  ASSIGN_OR_RETURN(std::vector<queue::EventInfo> infos, q->Peek(o.limit));
  if (o.json) {
    Json out = Json::array();
    for (const auto& info : infos) out.push_back(InfoJson(info));
    PrintJson(out);
  } else {
    PrintInfos(infos, false);
  }
  return Status::Ok();
}

Status RunDlqList(const QueueCommandOptions& o) {
  if (o.limit <= 0) return InvalidArgumentError("--limit must be positive");
  ASSIGN_OR_RETURN(auto q, OpenQueue(o, /*read_only=*/true));
  ASSIGN_OR_RETURN(std::vector<queue::EventInfo> infos, q->DlqList(o.limit));
  if (o.json) {
    Json out = Json::array();
    for (const auto& info : infos) out.push_back(InfoJson(info));
    PrintJson(out);
  } else {
    PrintInfos(infos, true);
  }
  return Status::Ok();
}

Status RunDlqReplay(const QueueCommandOptions& o) {
  if (o.ids.empty() && !o.all) {
    return InvalidArgumentError("name the events to replay (--id ID ...) or pass --all");
  }
  if (!o.ids.empty() && o.all) return InvalidArgumentError("--id and --all exclude each other");
  ASSIGN_OR_RETURN(auto q, OpenQueue(o, /*read_only=*/false));
  ASSIGN_OR_RETURN(int64_t replayed, q->DlqReplay(o.ids));
  if (o.json) {
    PrintJson({{"replayed", replayed}});
  } else {
    std::cout << "replayed " << replayed << " event" << (replayed == 1 ? "" : "s") << "\n";
  }
  if (!o.ids.empty() && replayed < static_cast<int64_t>(o.ids.size())) {
    return NotFoundError(std::to_string(o.ids.size() - replayed) +
                         " of the named events are not in the dead-letter queue");
  }
  return Status::Ok();
}

// Appends --payload, or one event per non-empty line of stdin. Every payload must be JSON.
Status RunAppend(const QueueCommandOptions& o) {
  std::vector<std::string> payloads;
  if (!o.payload.empty()) {
    payloads.push_back(o.payload);
  } else {
    std::string line;
    while (std::getline(std::cin, line)) {
      if (!line.empty()) payloads.push_back(line);
    }
  }
  if (payloads.empty()) return InvalidArgumentError("nothing to append (--payload or stdin lines)");
  std::vector<queue::Event> events;
  for (size_t i = 0; i < payloads.size(); ++i) {
    if (!Json::accept(payloads[i])) {
      return InvalidArgumentError("payload " + std::to_string(i + 1) + " is not JSON");
    }
    queue::Event event;
    event.type = o.type;
    event.priority = o.priority >= 0 ? o.priority : queue::DefaultPriority(o.type);
    event.payload = std::move(payloads[i]);
    events.push_back(std::move(event));
  }
  ASSIGN_OR_RETURN(auto q, OpenQueue(o, /*read_only=*/false));
  ASSIGN_OR_RETURN(queue::AppendResult result, q->Append(std::move(events)));
  if (o.json) {
    PrintJson({{"ids", result.ids}, {"rejected", result.rejected}});
  } else {
    for (const std::string& id : result.ids) std::cout << id << "\n";
  }
  if (!result.rejected.empty()) {
    return ResourceExhaustedError(std::to_string(result.rejected.size()) +
                                  " events rejected: the queue's disk budget is full");
  }
  return Status::Ok();
}

Json LeaseJson(const queue::Lease& lease) {
  queue::EventInfo info;
  info.event = lease.event;
  info.handle = lease.handle;
  info.state = "leased";
  info.attempts = lease.attempt;
  info.enqueued_unix_ms = lease.enqueued_unix_ms;
  info.age_ms = lease.age_ms;
  info.history = lease.history;
  Json out = InfoJson(info);
  out["fence"] = lease.fence;
  out["consumer"] = lease.consumer;
  return out;
}

Status RunLease(const QueueCommandOptions& o) {
  if (o.max <= 0) return InvalidArgumentError("--max must be positive");
  if (o.visibility_ms <= 0) return InvalidArgumentError("--visibility-ms must be positive");
  ASSIGN_OR_RETURN(auto q, OpenQueue(o, /*read_only=*/false));
  ASSIGN_OR_RETURN(std::vector<queue::Lease> leases,
                   q->Lease(o.consumer, o.max, std::chrono::milliseconds(o.visibility_ms)));
  Json out = Json::array();
  for (const queue::Lease& lease : leases) out.push_back(LeaseJson(lease));
  PrintJson(out);
  return Status::Ok();
}

queue::Lease LeaseFromFlags(const QueueCommandOptions& o) {
  queue::Lease lease;
  lease.handle = o.handle;
  lease.fence = o.fence;
  lease.consumer = o.consumer;
  lease.event.id = o.handle;
  return lease;
}

Status RunAck(const QueueCommandOptions& o) {
  ASSIGN_OR_RETURN(auto q, OpenQueue(o, /*read_only=*/false));
  RETURN_IF_ERROR(q->Ack(LeaseFromFlags(o)));
  if (o.json) PrintJson({{"acked", true}});
  return Status::Ok();
}

Status RunNack(const QueueCommandOptions& o) {
  ASSIGN_OR_RETURN(auto q, OpenQueue(o, /*read_only=*/false));
  std::optional<std::chrono::milliseconds> retry_after;
  if (o.retry_after_ms >= 0) retry_after = std::chrono::milliseconds(o.retry_after_ms);
  ASSIGN_OR_RETURN(queue::NackOutcome outcome, q->Nack(LeaseFromFlags(o), o.reason, retry_after));
  const bool dead = outcome == queue::NackOutcome::kDeadLettered;
  if (o.json) {
    PrintJson({{"outcome", dead ? "dead-lettered" : "retry"}});
  } else {
    std::cout << (dead ? "dead-lettered" : "will be retried") << "\n";
  }
  return Status::Ok();
}

Status RunRelease(const QueueCommandOptions& o) {
  if (o.delay_ms < 0) return InvalidArgumentError("--delay-ms must not be negative");
  ASSIGN_OR_RETURN(auto q, OpenQueue(o, /*read_only=*/false));
  RETURN_IF_ERROR(q->Release(LeaseFromFlags(o), std::chrono::milliseconds(o.delay_ms)));
  if (o.json) {
    PrintJson({{"released", true}});
  } else {
    std::cout << "released\n";
  }
  return Status::Ok();
}

Status RunDeadLetter(const QueueCommandOptions& o) {
  if (o.reason.empty()) return InvalidArgumentError("--reason must not be empty");
  ASSIGN_OR_RETURN(auto q, OpenQueue(o, /*read_only=*/false));
  RETURN_IF_ERROR(q->DeadLetter(LeaseFromFlags(o), o.reason));
  if (o.json) {
    PrintJson({{"outcome", "dead-lettered"}});
  } else {
    std::cout << "dead-lettered\n";
  }
  return Status::Ok();
}

}  // namespace

Command AddQueueCommand(CLI::App& root) {
  CLI::App* app = root.add_subcommand(
      "queue",
      "Inspect and operate the durable insight queue: stats, peek, dlq ls|replay, append, lease, "
      "ack, nack, release, dead-letter");
  app->require_subcommand(1);
  auto o = std::make_shared<QueueCommandOptions>();
  auto run = std::make_shared<std::function<Status(const QueueCommandOptions&)>>();
  const auto common = [o](CLI::App* sub) {
    sub->add_option("--queue", o->url,
                    "Queue URL: file:///dir (embedded) or redis://host:port/stream")
        ->envname("EDGELOOP_QUEUE");
    sub->add_flag("--json", o->json, "Print the result as JSON");
    sub->add_option("--max-bytes", o->max_bytes,
                    "Disk budget of the queue in bytes (0: none), as the worker runs it");
  };
  const auto command = [&](CLI::App* parent, const char* name, const char* help,
                           std::function<Status(const QueueCommandOptions&)> fn) {
    CLI::App* sub = parent->add_subcommand(name, help);
    common(sub);
    sub->callback([run, fn] { *run = fn; });
    return sub;
  };

  command(app, "stats", "Depth by state and priority, oldest age, bytes, drops, DLQ size",
          RunStats);
  CLI::App* peek = command(app, "peek", "Show the next events without leasing them", RunPeek);
  peek->add_option("--limit", o->limit, "How many events")->capture_default_str();

  CLI::App* dlq = app->add_subcommand("dlq", "The dead-letter queue");
  dlq->require_subcommand(1);
  CLI::App* ls =
      command(dlq, "ls", "List dead events with their reason and attempt history", RunDlqList);
  ls->add_option("--limit", o->limit, "How many events")->capture_default_str();
  CLI::App* replay = command(
      dlq, "replay", "Put dead events back in the queue (fresh attempt count)", RunDlqReplay);
  replay->add_option("--id", o->ids, "Event id to replay (repeatable)");
  replay->add_flag("--all", o->all, "Replay every dead event");

  CLI::App* append =
      command(app, "append", "Append events: --payload JSON, or one JSON document per stdin line",
              RunAppend);
  append->add_option("--type", o->type, "Event type (insight, anomaly, feedback, ...)")
      ->capture_default_str();
  append->add_option("--priority", o->priority, "Priority (default: 10 for anomaly, 0 otherwise)");
  append->add_option("--payload", o->payload, "The event's JSON payload");

  // Consumer operations, for scripts and debugging (workers use the library).
  CLI::App* lease =
      command(app, "lease", "Lease events (prints them as JSON with handle and fence)", RunLease);
  lease->add_option("--consumer", o->consumer, "Consumer name")->capture_default_str();
  lease->add_option("--max", o->max, "How many events")->capture_default_str();
  lease->add_option("--visibility-ms", o->visibility_ms, "Lease length")->capture_default_str();
  lease->add_option("--max-attempts", o->max_attempts, "Leases before the DLQ")
      ->capture_default_str();
  CLI::App* ack = command(app, "ack", "Acknowledge a lease", RunAck);
  ack->add_option("--handle", o->handle, "The lease's handle")->required();
  ack->add_option("--fence", o->fence, "The lease's fence")->required();
  CLI::App* nack = command(app, "nack", "Give a lease back for a retry (or the DLQ)", RunNack);
  nack->add_option("--handle", o->handle, "The lease's handle")->required();
  nack->add_option("--fence", o->fence, "The lease's fence")->required();
  nack->add_option("--consumer", o->consumer, "Consumer name")->capture_default_str();
  nack->add_option("--reason", o->reason, "Why it failed")->capture_default_str();
  nack->add_option("--retry-after-ms", o->retry_after_ms,
                   "Delay before the retry (default: the exponential backoff)");
  nack->add_option("--max-attempts", o->max_attempts, "Leases before the DLQ")
      ->capture_default_str();

  CLI::App* release = command(
      app, "release",
      "Give a lease back without spending an attempt (visible again after --delay-ms)", RunRelease);
  release->add_option("--handle", o->handle, "The lease's handle")->required();
  release->add_option("--fence", o->fence, "The lease's fence")->required();
  release->add_option("--delay-ms", o->delay_ms, "How long before it is visible again")
      ->capture_default_str();
  CLI::App* dead_letter = command(
      app, "dead-letter", "Move a leased event to the dead-letter queue now", RunDeadLetter);
  dead_letter->add_option("--handle", o->handle, "The lease's handle")->required();
  dead_letter->add_option("--fence", o->fence, "The lease's fence")->required();
  dead_letter->add_option("--consumer", o->consumer, "Consumer name")->capture_default_str();
  dead_letter->add_option("--reason", o->reason, "Why (kept as its dead reason)")->required();

  return {app, [o, run] {
            if (!*run) return 2;
            const Status status = (*run)(*o);
            return status.ok() ? 0 : Fail(status);
          }};
}

}  // namespace edgeloop::cli
