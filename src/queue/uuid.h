// UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, so ids sort by creation
// time. Used for event ids.
#ifndef EDGELOOP_QUEUE_UUID_H_
#define EDGELOOP_QUEUE_UUID_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "common/clock.h"

namespace edgeloop::queue {

// A new UUIDv7 in the canonical lower-case form "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".
// Ids made by one process are strictly increasing, even within one millisecond and when the
// wall clock steps back (the time field then stays at the last value and a counter in the
// random bits moves on). Random bits come from a per-thread generator seeded from
// std::random_device. Thread-safe.
std::string NewEventId(const Clock& clock = *Clock::Real());

// True if `text` is a canonical UUID (any version) of 36 characters.
bool IsUuid(std::string_view text);

// The Unix milliseconds of a UUIDv7; 0 for other text.
int64_t UuidV7UnixMs(std::string_view uuid);

}  // namespace edgeloop::queue

#endif  // EDGELOOP_QUEUE_UUID_H_
