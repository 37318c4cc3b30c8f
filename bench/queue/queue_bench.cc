// queue_bench: durable events per second through a queue, and the raw limits of this disk.
//
//   queue_bench --mode=append  --url=URL [--producers=64] [--batch=1] [--size=1024] [--seconds=3]
//       Many producer threads append events of --size payload bytes, --batch per call; every call
//       returns only when its events are durable. Prints events/s and the p50/p99 of one call.
//   queue_bench --mode=consume --url=URL [--consumers=2] [--max=100] [--events=200000]
//       Prefills --events events, then consumers Lease(max) + AckBatch until the queue is empty.
//   queue_bench --mode=fsync   --dir=DIR [--seconds=3]
//       The disk's limit for one writer: append 4 KiB + fdatasync, in a loop.
//   queue_bench --mode=sqlite  --dir=DIR [--size=1024] [--rows=100] [--seconds=3]
//       SQLite WAL, synchronous=FULL: --rows inserts of --size bytes per commit.
//
// Output: one line of JSON per run (bench/queue/run collects them and prints ratios).
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "queue/queue.h"

namespace {

using Clock = std::chrono::steady_clock;
using edgeloop::queue::Event;
using edgeloop::queue::Queue;

struct Flags {
  std::string mode = "append";
  std::string url;
  std::string dir = "/tmp";
  int producers = 64;
  int consumers = 2;
  int batch = 1;
  int size = 1024;
  int max = 100;
  int rows = 100;
  int64_t events = 200000;
  double seconds = 3;
};

bool ParseFlag(const char* arg, const char* name, std::string* value) {
  const size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  *value = arg + n + 1;
  return true;
}

Flags Parse(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (ParseFlag(argv[i], "--mode", &v))
      flags.mode = v;
    else if (ParseFlag(argv[i], "--url", &v))
      flags.url = v;
    else if (ParseFlag(argv[i], "--dir", &v))
      flags.dir = v;
    else if (ParseFlag(argv[i], "--producers", &v))
      flags.producers = std::stoi(v);
    else if (ParseFlag(argv[i], "--consumers", &v))
      flags.consumers = std::stoi(v);
    else if (ParseFlag(argv[i], "--batch", &v))
      flags.batch = std::stoi(v);
    else if (ParseFlag(argv[i], "--size", &v))
      flags.size = std::stoi(v);
    else if (ParseFlag(argv[i], "--max", &v))
      flags.max = std::stoi(v);
    else if (ParseFlag(argv[i], "--rows", &v))
      flags.rows = std::stoi(v);
    else if (ParseFlag(argv[i], "--events", &v))
      flags.events = std::stoll(v);
    else if (ParseFlag(argv[i], "--seconds", &v))
      flags.seconds = std::stod(v);
    else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      std::exit(2);
    }
  }
  return flags;
}

// CPU seconds (user + system) this process used so far.
double CpuSeconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "queue_bench: %s\n", message.c_str());
  std::exit(1);
}

std::unique_ptr<Queue> OpenQueue(const std::string& url) {
  edgeloop::queue::QueueOptions options;
  options.url = url;
  auto queue = Queue::Open(options);
  if (!queue.ok()) Die(queue.status().ToString());
  return std::move(queue).value();
}

std::string Payload(int size) {
  // A JSON-looking payload of exactly `size` bytes.
  std::string payload = R"({"model":"machine-failure","score":0.42,"pad":")";
  while (static_cast<int>(payload.size()) < size - 2) payload.push_back('x');
  payload += "\"}";
  payload.resize(size);
  return payload;
}

double Percentile(std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, static_cast<size_t>(p * values.size()))];
}

void RunAppend(const Flags& flags) {
  auto queue = OpenQueue(flags.url);
  const std::string payload = Payload(flags.size);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> appended{0};
  std::mutex mu;
  std::vector<double> latencies_us;
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  const double cpu_start = CpuSeconds();
  for (int p = 0; p < flags.producers; ++p) {
    threads.emplace_back([&] {
      std::vector<double> local;
      while (!stop.load(std::memory_order_relaxed)) {
        std::vector<Event> batch(flags.batch);
        for (Event& event : batch) {
          event.type = "insight";
          event.payload = payload;
        }
        const auto t0 = Clock::now();
        auto result = queue->Append(std::move(batch));
        const auto t1 = Clock::now();
        if (!result.ok()) Die(result.status().ToString());
        local.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        appended.fetch_add(flags.batch, std::memory_order_relaxed);
      }
      std::lock_guard<std::mutex> lock(mu);
      latencies_us.insert(latencies_us.end(), local.begin(), local.end());
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(flags.seconds));
  stop = true;
  for (auto& thread : threads) thread.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu_us = (CpuSeconds() - cpu_start) * 1e6 / std::max<int64_t>(1, appended.load());
  const double p50 = Percentile(latencies_us, 0.50);
  const double p99 = Percentile(latencies_us, 0.99);
  std::printf(
      "{\"mode\":\"append\",\"url\":\"%s\",\"producers\":%d,\"batch\":%d,\"size\":%d,"
      "\"events\":%lld,\"seconds\":%.3f,\"events_per_s\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f,"
      "\"cpu_us_per_event\":%.1f}\n",
      queue->Describe().substr(0, 5).c_str(), flags.producers, flags.batch, flags.size,
      static_cast<long long>(appended.load()), elapsed, appended.load() / elapsed, p50, p99,
      cpu_us);
}

void RunConsume(const Flags& flags) {
  auto queue = OpenQueue(flags.url);
  const std::string payload = Payload(flags.size);
  for (int64_t done = 0; done < flags.events;) {
    std::vector<Event> batch(std::min<int64_t>(1000, flags.events - done));
    for (Event& event : batch) {
      event.type = "insight";
      event.payload = payload;
    }
    done += static_cast<int64_t>(batch.size());
    auto result = queue->Append(std::move(batch));
    if (!result.ok()) Die(result.status().ToString());
  }
  std::atomic<int64_t> consumed{0};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  const double cpu_start = CpuSeconds();
  for (int c = 0; c < flags.consumers; ++c) {
    threads.emplace_back([&, c] {
      const std::string name = "bench-" + std::to_string(c);
      while (true) {
        auto leases = queue->Lease(name, flags.max, std::chrono::seconds(60));
        if (!leases.ok()) Die(leases.status().ToString());
        if (leases->empty()) return;
        auto acks = queue->AckBatch(*leases);
        if (!acks.ok()) Die(acks.status().ToString());
        for (const auto& status : *acks) {
          if (!status.ok()) Die(status.ToString());
        }
        consumed.fetch_add(static_cast<int64_t>(leases->size()));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu_us = (CpuSeconds() - cpu_start) * 1e6 / std::max<int64_t>(1, consumed.load());
  std::printf(
      "{\"mode\":\"consume\",\"url\":\"%s\",\"consumers\":%d,\"max\":%d,\"size\":%d,"
      "\"events\":%lld,\"seconds\":%.3f,\"events_per_s\":%.0f,\"cpu_us_per_event\":%.1f}\n",
      queue->Describe().substr(0, 5).c_str(), flags.consumers, flags.max, flags.size,
      static_cast<long long>(consumed.load()), elapsed, consumed.load() / elapsed, cpu_us);
}

void RunFsync(const Flags& flags) {
  const std::string path = flags.dir + "/fsync_limit.bin";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (fd < 0) Die("open " + path);
  std::string block(4096, 'f');
  int64_t writes = 0;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(flags.seconds);
  while (Clock::now() < end) {
    if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size())) Die("write");
    if (::fdatasync(fd) != 0) Die("fdatasync");
    ++writes;
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  ::unlink(path.c_str());
  std::printf("{\"mode\":\"fsync\",\"writes\":%lld,\"seconds\":%.3f,\"writes_per_s\":%.0f}\n",
              static_cast<long long>(writes), elapsed, writes / elapsed);
}

void Check(sqlite3* db, int rc, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    Die(std::string(what) + ": " + sqlite3_errmsg(db));
  }
}

void RunSqlite(const Flags& flags) {
  const std::string path = flags.dir + "/sqlite_limit.db";
  std::filesystem::remove(path);
  std::filesystem::remove(path + "-wal");
  std::filesystem::remove(path + "-shm");
  sqlite3* db = nullptr;
  Check(db, sqlite3_open(path.c_str(), &db), "open");
  Check(db,
        sqlite3_exec(db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                     "CREATE TABLE t(id INTEGER PRIMARY KEY, payload BLOB)",
                     nullptr, nullptr, nullptr),
        "setup");
  sqlite3_stmt* insert = nullptr;
  Check(db, sqlite3_prepare_v2(db, "INSERT INTO t(payload) VALUES (?1)", -1, &insert, nullptr),
        "prepare");
  const std::string payload = Payload(flags.size);
  int64_t rows = 0;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(flags.seconds);
  while (Clock::now() < end) {
    Check(db, sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), "begin");
    for (int i = 0; i < flags.rows; ++i) {
      sqlite3_bind_blob(insert, 1, payload.data(), static_cast<int>(payload.size()), SQLITE_STATIC);
      Check(db, sqlite3_step(insert), "insert");
      sqlite3_reset(insert);
    }
    Check(db, sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), "commit");
    rows += flags.rows;
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  sqlite3_finalize(insert);
  sqlite3_close(db);
  std::filesystem::remove(path);
  std::filesystem::remove(path + "-wal");
  std::filesystem::remove(path + "-shm");
  std::printf(
      "{\"mode\":\"sqlite\",\"rows_per_commit\":%d,\"size\":%d,\"rows\":%lld,\"seconds\":%.3f,"
      "\"rows_per_s\":%.0f}\n",
      flags.rows, flags.size, static_cast<long long>(rows), elapsed, rows / elapsed);
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = Parse(argc, argv);
  if (flags.mode == "append") {
    RunAppend(flags);
  } else if (flags.mode == "consume") {
    RunConsume(flags);
  } else if (flags.mode == "fsync") {
    RunFsync(flags);
  } else if (flags.mode == "sqlite") {
    RunSqlite(flags);
  } else {
    Die("unknown --mode " + flags.mode);
  }
  return 0;
}
