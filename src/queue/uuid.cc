#include "queue/uuid.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>

namespace edgeloop::queue {
namespace {

// The last (unix_ms, 12-bit counter) handed out, packed as unix_ms << 12 | counter, so ids from
// one process never repeat or go backwards.
std::atomic<uint64_t> g_last{0};

uint64_t NextStamp(int64_t unix_ms) {
  uint64_t wanted = static_cast<uint64_t>(unix_ms) << 12;
  uint64_t last = g_last.load(std::memory_order_relaxed);
  while (true) {
    const uint64_t next = wanted > last ? wanted : last + 1;
    if (g_last.compare_exchange_weak(last, next, std::memory_order_relaxed)) return next;
  }
}

std::mt19937_64& ThreadRng() {
  thread_local std::mt19937_64 rng = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  return rng;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string NewEventId(const Clock& clock) {
  const int64_t unix_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock.WallNow().time_since_epoch())
          .count();
  const uint64_t stamp = NextStamp(unix_ms < 0 ? 0 : unix_ms);
  const uint64_t ms = stamp >> 12;
  const uint64_t counter = stamp & 0xfff;  // rand_a: keeps ids in order within a millisecond
  const uint64_t random = ThreadRng()();
  uint8_t bytes[16];
  for (int i = 0; i < 6; ++i) bytes[i] = static_cast<uint8_t>(ms >> (40 - 8 * i));
  bytes[6] = static_cast<uint8_t>(0x70 | (counter >> 8));
  bytes[7] = static_cast<uint8_t>(counter);
  bytes[8] = static_cast<uint8_t>(0x80 | ((random >> 56) & 0x3f));  // variant 10
  for (int i = 9; i < 16; ++i) bytes[i] = static_cast<uint8_t>(random >> (8 * (15 - i)));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back(kHex[bytes[i] & 0xf]);
  }
  return out;
}

bool IsUuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return false;
    } else if (HexValue(text[i]) < 0) {
      return false;
    }
  }
  return true;
}

int64_t UuidV7UnixMs(std::string_view uuid) {
  if (!IsUuid(uuid) || uuid[14] != '7') return 0;
  int64_t ms = 0;
  for (size_t i = 0; i < 13; ++i) {
    if (uuid[i] == '-') continue;
    ms = ms * 16 + HexValue(uuid[i]);
  }
  return ms;
}

}  // namespace edgeloop::queue
