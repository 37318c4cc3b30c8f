// Upload: sends the records that passed compliance to a destination, in batches of JSON Lines,
// compressed, each with an idempotency key, under a bandwidth cap, highest priority first.
//
// The wire protocol (what the hub accepts) is specified in docs/worker.md, "Upload protocol":
//   POST /api/v1/ingest
//   Authorization: Bearer <site token>
//   Content-Type: application/x-ndjson
//   Content-Encoding: zstd | gzip
//   Idempotency-Key: <64 hex: sha256 of the destination and the sorted event ids>
//   body: one event per line
//   200 {"accepted": n, "duplicates": n, "rejected": [{"id": "...", "error": "..."}]}
//   429 / 503 (+ Retry-After) and 5xx: the destination is unavailable; try again later
//   other 4xx: the batch is refused; its events go back to the queue as failures (the DLQ after
//   max attempts)
// The folder sink writes the same body to <dir>/<key>.jsonl.<zst|gz> (temp file, fsync,
// rename), so a redelivered batch lands on the same name and is counted a duplicate.
//
// Store-and-forward: an unavailable destination makes Run return kUnavailable; the worker then
// stops leasing and probes the destination (UploadFunction::Probe) until it answers, so the
// data waits in the queue, not in memory.
#ifndef EDGELOOP_FUNCTIONS_UPLOAD_H_
#define EDGELOOP_FUNCTIONS_UPLOAD_H_

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "functions/function.h"

namespace edgeloop::functions {

enum class Encoding { kZstd, kGzip, kIdentity };

StatusOr<Encoding> ParseEncoding(std::string_view text);  // "zstd", "gzip", "identity"
std::string_view EncodingName(Encoding encoding);         // the Content-Encoding value
std::string_view EncodingExtension(Encoding encoding);    // "zst", "gz", ""

StatusOr<std::string> Compress(std::string_view data, Encoding encoding);
// Refuses output beyond `max_bytes` (kInvalidArgument), so a hostile body cannot exhaust memory.
StatusOr<std::string> Decompress(std::string_view data, Encoding encoding,
                                 size_t max_bytes = size_t{256} << 20);

// The idempotency key of a batch: lower-case hex SHA-256 of the destination name, a newline, and
// the sorted event ids each followed by a newline. The same events always give the same key.
std::string BatchKey(std::string_view destination, std::vector<std::string> ids);

// One request's worth of events.
struct Batch {
  std::string key;
  Encoding encoding = Encoding::kZstd;
  std::string body;  // compressed JSON Lines
  size_t raw_bytes = 0;
  int priority = 0;
  std::vector<std::string> ids;
};

struct SendOutcome {
  enum class Kind { kOk, kUnavailable, kRefused };
  Kind kind = Kind::kOk;
  int64_t accepted = 0;
  int64_t duplicates = 0;
  std::vector<std::pair<std::string, std::string>> rejected;  // id, error (kOk only)
  std::optional<std::chrono::milliseconds> retry_after;       // kUnavailable
  std::string error;                                          // kUnavailable, kRefused
};

// Where batches go. Thread-safe.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual std::string Describe() const = 0;
  virtual SendOutcome Send(const Batch& batch, const Context& context) = 0;
  // OK when the destination accepts data now (without sending any).
  virtual Status Probe() = 0;
};

// Files in a folder (the stand-in for the hub until it exists, and a sink for air-gapped
// sites). Unavailable when the folder is missing or not writable.
std::unique_ptr<Sink> MakeFolderSink(std::filesystem::path dir);

struct HttpSinkOptions {
  std::string url;  // http(s)://host[:port]/api/v1/ingest
  // Probed while the destination is down; default: the ingest URL with its last path segment
  // replaced by "health" (GET, expects 2xx).
  std::string health_url;
  std::string token;  // bearer token; empty: no Authorization header
  std::chrono::milliseconds timeout{30'000};
  std::chrono::milliseconds connect_timeout{5'000};
  // https:// only. PEM CA certificates to trust for the hub's certificate instead of the
  // system's (a private CA); empty: the system's trust store. The hub's name is always verified.
  std::string ca_file;
  // For a hub that requires client certificates (mutual TLS): this site's PEM certificate and
  // unencrypted private key.
  std::string client_cert_file;
  std::string client_key_file;
};
// kInvalidArgument for a URL that is not http(s)://, TLS files on an http:// URL, or a client
// certificate without its key (or the reverse).
StatusOr<std::unique_ptr<Sink>> MakeHttpSink(HttpSinkOptions options);

// A token bucket of bytes per second with a one-second burst. Thread-safe.
class RateLimiter {
 public:
  // bytes_per_second 0: unlimited.
  RateLimiter(int64_t bytes_per_second, Clock* clock);
  // How long the caller must wait before sending `bytes`; the bytes are reserved, so callers
  // that wait the returned time stay within the rate together.
  std::chrono::nanoseconds Reserve(int64_t bytes);

 private:
  const int64_t rate_;
  Clock* clock_;
  std::mutex mu_;
  Clock::SteadyTime next_free_;  // GUARDED_BY(mu_): when the reserved bytes are paid off
};

struct UploadOptions {
  std::string destination;  // name in metrics and idempotency keys
  std::unique_ptr<Sink> sink;
  Encoding encoding = Encoding::kZstd;
  int64_t bandwidth_bytes_per_second = 0;  // of compressed bytes; 0: no cap
  size_t max_request_bytes = 4 << 20;      // uncompressed JSON Lines per request
  Clock* clock = Clock::Real();
  // Waits out the bandwidth cap; returns false when cancelled. Default: sleeps in slices of at
  // most 100 ms, checking Context::cancelled.
  std::function<bool(std::chrono::nanoseconds, const Context&)> wait;
  metrics::Registry* metrics = nullptr;
};

// The upload stage. Requires a compliance stage earlier in the chain (fail closed: a batch
// without a ComplianceStamp is refused with kFailedPrecondition). Records are sent in lanes by
// priority, highest first; a lane that does not get through stops the batch (kUnavailable),
// so lower lanes never overtake it. Thread-safe.
class UploadFunction : public Function {
 public:
  static StatusOr<std::unique_ptr<UploadFunction>> Create(UploadOptions options);

  const std::string& name() const override { return name_; }
  Status Run(std::vector<Record>& records, std::vector<Result>& results, Context& context) override;
  Status Probe() override { return options_.sink->Probe(); }

 private:
  explicit UploadFunction(UploadOptions options);
  // Sends one batch of `members` (indices into records); updates their results. Returns
  // kUnavailable when the destination is down.
  Status SendChunk(const std::vector<size_t>& members, int priority, std::vector<Record>& records,
                   std::vector<Result>& results, Context& context);

  UploadOptions options_;
  const std::string name_;
  RateLimiter limiter_;
  std::shared_ptr<metrics::Counter> requests_ok_, requests_unavailable_, requests_refused_;
  std::shared_ptr<metrics::Counter> events_accepted_, events_duplicate_, events_rejected_;
  std::shared_ptr<metrics::Counter> wire_bytes_, raw_bytes_;
};

}  // namespace edgeloop::functions

#endif  // EDGELOOP_FUNCTIONS_UPLOAD_H_
