// Helpers shared by the queue backends. Private to src/queue.
#ifndef EDGELOOP_QUEUE_INTERNAL_H_
#define EDGELOOP_QUEUE_INTERNAL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "queue/queue.h"

namespace edgeloop::queue::internal {

// kInvalidArgument for a bad type or id, or a payload over the limit.
Status ValidateEvent(const Event& event, int64_t max_event_bytes);

// Attempt history as stored: [{"t":unix_ms,"c":"consumer","r":"reason"},...].
std::string EncodeHistory(const std::vector<Attempt>& history);
// An unreadable history decodes as empty (it is informational).
std::vector<Attempt> DecodeHistory(std::string_view json);

}  // namespace edgeloop::queue::internal

#endif  // EDGELOOP_QUEUE_INTERNAL_H_
