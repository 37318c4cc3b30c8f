// Content-Encoding of upload bodies: identity, gzip (zlib) and zstd, decoded with a bound on the
// decoded size so that a small compressed body cannot expand without limit.
#ifndef EDGELOOP_HUB_CODEC_H_
#define EDGELOOP_HUB_CODEC_H_

#include <string>
#include <string_view>

#include "common/status.h"

namespace edgeloop::hub {

// Decodes `body` sent with `encoding` ("", "identity", "gzip", "zstd"). Errors: an unknown
// encoding kUnimplemented, a corrupt or truncated body kInvalidArgument, a decoded size over
// `max_bytes` kOutOfRange (the handler answers 415, 400 and 413). Thread-safe.
StatusOr<std::string> Decode(std::string_view encoding, std::string_view body, size_t max_bytes);

// Encoders, for tests, benchmarks and clients.
StatusOr<std::string> GzipCompress(std::string_view data);
StatusOr<std::string> ZstdCompress(std::string_view data, int level = 3);

}  // namespace edgeloop::hub

#endif  // EDGELOOP_HUB_CODEC_H_
