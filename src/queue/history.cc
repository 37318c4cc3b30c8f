#include <nlohmann/json.hpp>

#include "queue/internal.h"

namespace edgeloop::queue::internal {

std::string EncodeHistory(const std::vector<Attempt>& history) {
  nlohmann::json out = nlohmann::json::array();
  for (const Attempt& attempt : history) {
    out.push_back({{"t", attempt.unix_ms}, {"c", attempt.consumer}, {"r", attempt.reason}});
  }
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<Attempt> DecodeHistory(std::string_view json) {
  std::vector<Attempt> history;
  if (json.empty() || json == "[]") return history;  // most events never failed
  nlohmann::json parsed = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_array()) return history;
  for (const nlohmann::json& item : parsed) {
    if (!item.is_object()) continue;
    Attempt attempt;
    attempt.unix_ms = item.value("t", int64_t{0});
    attempt.consumer = item.value("c", std::string());
    attempt.reason = item.value("r", std::string());
    history.push_back(std::move(attempt));
  }
  return history;
}

}  // namespace edgeloop::queue::internal
