#include "registry/digest.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/test_util.h"

namespace edgeloop::registry {
namespace {

constexpr char kEmptySha[] =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

TEST(DigestTest, HashesBytesAndFiles) {
  EXPECT_EQ(Digest::Of("").str(), kEmptySha);
  EXPECT_EQ(Digest::Of("{}").str(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
  edgeloop::testing::TempDir dir;
  std::ofstream(dir.path() / "f") << "{}";
  EXPECT_EQ(Digest::OfFile(dir.path() / "f")->str(), Digest::Of("{}").str());
  EXPECT_EQ(Digest::OfFile(dir.path() / "missing").status().code(), StatusCode::kNotFound);
}

TEST(DigestTest, StreamingEqualsOneShot) {
  Sha256 hasher;
  hasher.Update("hello ");
  hasher.Update("world");
  EXPECT_EQ(hasher.Finish(), Digest::Of("hello world"));
}

TEST(DigestTest, ParsesOnlyWellFormedSha256) {
  auto parsed = Digest::Parse(kEmptySha);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->hex().size(), 64u);
  for (const char* bad : {"", "sha256:", "sha512:e3b0",
                          "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                          "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
                          "md5:d41d8cd98f00b204e9800998ecf8427e", "sha256:../../etc/passwd"}) {
    EXPECT_FALSE(Digest::Parse(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace edgeloop::registry
