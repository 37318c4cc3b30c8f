// Small helpers for writing JSON by hand on hot paths (nlohmann::json is used elsewhere).
#ifndef EDGELOOP_COMMON_JSON_UTIL_H_
#define EDGELOOP_COMMON_JSON_UTIL_H_

#include <string>
#include <string_view>

namespace edgeloop::json {

// Appends `text` to `out` as the inside of a JSON string: quotes, backslashes and control
// characters are escaped, and bytes that are not valid UTF-8 become U+FFFD.
void AppendEscaped(std::string* out, std::string_view text);

// `text` as a complete JSON string literal, with quotes.
std::string Quote(std::string_view text);

// {"error":"<message>"}
std::string ErrorBody(std::string_view message);

}  // namespace edgeloop::json

#endif  // EDGELOOP_COMMON_JSON_UTIL_H_
