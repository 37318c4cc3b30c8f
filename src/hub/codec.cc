#include "hub/codec.h"

#include <zlib.h>
#include <zstd.h>

#include <memory>

namespace edgeloop::hub {
namespace {

Status TooLarge(size_t max_bytes) {
  return OutOfRangeError("the decoded batch exceeds the limit of " + std::to_string(max_bytes) +
                         " bytes");
}

StatusOr<std::string> GunzipBounded(std::string_view body, size_t max_bytes) {
  z_stream stream{};
  // 16 + MAX_WBITS: a gzip wrapper.
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) return InternalError("inflateInit2 failed");
  std::unique_ptr<z_stream, void (*)(z_stream*)> guard(&stream, [](z_stream* s) { inflateEnd(s); });
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(body.data()));
  stream.avail_in = static_cast<uInt>(body.size());
  std::string out;
  char chunk[64 * 1024];
  for (;;) {
    stream.next_out = reinterpret_cast<Bytef*>(chunk);
    stream.avail_out = sizeof(chunk);
    const int rc = inflate(&stream, Z_NO_FLUSH);
    const size_t produced = sizeof(chunk) - stream.avail_out;
    if (out.size() + produced > max_bytes) return TooLarge(max_bytes);
    out.append(chunk, produced);
    if (rc == Z_STREAM_END) {
      // Concatenated gzip members are valid gzip; continue with the next one.
      if (stream.avail_in == 0) break;
      if (inflateReset(&stream) != Z_OK) return InvalidArgumentError("corrupt gzip body");
      continue;
    }
    if (rc == Z_BUF_ERROR && stream.avail_in == 0) {
      return InvalidArgumentError("truncated gzip body");
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      return InvalidArgumentError(std::string("corrupt gzip body: ") +
                                  (stream.msg != nullptr ? stream.msg : "inflate failed"));
    }
  }
  return out;
}

StatusOr<std::string> UnzstdBounded(std::string_view body, size_t max_bytes) {
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!ctx) return InternalError("ZSTD_createDCtx failed");
  ZSTD_inBuffer in{body.data(), body.size(), 0};
  std::string out;
  char chunk[64 * 1024];
  size_t last = 1;
  while (in.pos < in.size) {
    ZSTD_outBuffer output{chunk, sizeof(chunk), 0};
    last = ZSTD_decompressStream(ctx.get(), &output, &in);
    if (ZSTD_isError(last)) {
      return InvalidArgumentError(std::string("corrupt zstd body: ") + ZSTD_getErrorName(last));
    }
    if (out.size() + output.pos > max_bytes) return TooLarge(max_bytes);
    out.append(chunk, output.pos);
    if (output.pos == 0 && in.pos == in.size) break;
  }
  // Flush what the decoder still holds.
  while (last != 0) {
    ZSTD_outBuffer output{chunk, sizeof(chunk), 0};
    last = ZSTD_decompressStream(ctx.get(), &output, &in);
    if (ZSTD_isError(last)) {
      return InvalidArgumentError(std::string("corrupt zstd body: ") + ZSTD_getErrorName(last));
    }
    if (out.size() + output.pos > max_bytes) return TooLarge(max_bytes);
    out.append(chunk, output.pos);
    if (output.pos == 0) {
      if (last != 0) return InvalidArgumentError("truncated zstd body");
      break;
    }
  }
  return out;
}

}  // namespace

StatusOr<std::string> Decode(std::string_view encoding, std::string_view body, size_t max_bytes) {
  if (encoding.empty() || encoding == "identity") {
    if (body.size() > max_bytes) return TooLarge(max_bytes);
    return std::string(body);
  }
  if (encoding == "gzip" || encoding == "x-gzip") return GunzipBounded(body, max_bytes);
  if (encoding == "zstd") return UnzstdBounded(body, max_bytes);
  return UnimplementedError("unsupported Content-Encoding '" + std::string(encoding.substr(0, 32)) +
                            "'; use zstd, gzip or identity");
}

StatusOr<std::string> GzipCompress(std::string_view data) {
  z_stream stream{};
  if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    return InternalError("deflateInit2 failed");
  }
  std::string out(deflateBound(&stream, static_cast<uLong>(data.size())) + 32, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  if (rc != Z_STREAM_END) return InternalError("deflate failed");
  return out;
}

StatusOr<std::string> ZstdCompress(std::string_view data, int level) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  const size_t size = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), level);
  if (ZSTD_isError(size)) return InternalError(ZSTD_getErrorName(size));
  out.resize(size);
  return out;
}

}  // namespace edgeloop::hub
