#include "hub/codec.h"

#include <gtest/gtest.h>

namespace edgeloop::hub {
namespace {

std::string Sample() {
  std::string text;
  for (int i = 0; i < 5000; ++i) text += "{\"id\":" + std::to_string(i) + ",\"x\":\"abcdefgh\"}\n";
  return text;
}

TEST(CodecTest, RoundTripsGzipZstdAndIdentity) {
  const std::string data = Sample();
  EXPECT_EQ(*Decode("identity", data, 1 << 20), data);
  EXPECT_EQ(*Decode("", data, 1 << 20), data);
  EXPECT_EQ(*Decode("gzip", *GzipCompress(data), 1 << 20), data);
  EXPECT_EQ(*Decode("zstd", *ZstdCompress(data), 1 << 20), data);
}

TEST(CodecTest, DecodedSizeIsBounded) {
  const std::string zeros(10 << 20, '\0');
  for (const auto& [encoding, body] :
       {std::pair<std::string, std::string>{"gzip", *GzipCompress(zeros)},
        {"zstd", *ZstdCompress(zeros)}}) {
    EXPECT_LT(body.size(), 64u << 10);
    auto decoded = Decode(encoding, body, 1 << 20);
    EXPECT_EQ(decoded.status().code(), StatusCode::kOutOfRange) << encoding;
  }
  EXPECT_EQ(Decode("identity", std::string(11, 'x'), 10).status().code(), StatusCode::kOutOfRange);
}

TEST(CodecTest, CorruptTruncatedAndUnknownEncodingsAreErrors) {
  const std::string data = Sample();
  std::string gz = *GzipCompress(data);
  std::string zs = *ZstdCompress(data);
  EXPECT_EQ(Decode("gzip", gz.substr(0, gz.size() / 2), 1 << 20).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Decode("zstd", zs.substr(0, zs.size() / 2), 1 << 20).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Decode("gzip", "not gzip at all", 1 << 20).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Decode("zstd", "not zstd at all", 1 << 20).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Decode("br", data, 1 << 20).status().code(), StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace edgeloop::hub
