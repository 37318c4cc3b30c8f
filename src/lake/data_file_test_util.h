// Helpers shared by the data file format tests (data_file_test.cc, columnar_file_test.cc).
#ifndef EDGELOOP_LAKE_DATA_FILE_TEST_UTIL_H_
#define EDGELOOP_LAKE_DATA_FILE_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "common/status.h"
#include "lake/batch.h"
#include "lake/data_file.h"
#include "lake/value_text.h"

namespace edgeloop::lake::data_file_testing {

inline std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "sha256:<hex>", computed here independently of the writers' digest.
inline std::string Sha256(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned size = 0;
  EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr);
  std::string out = "sha256:";
  char hex[3];
  for (unsigned i = 0; i < size; ++i) {
    std::snprintf(hex, sizeof(hex), "%02x", digest[i]);
    out += hex;
  }
  return out;
}

// Every row of the file, read `batch_rows` at a time (checking that no batch is larger).
inline StatusOr<Batch> ReadAll(const std::filesystem::path& p,
                               std::shared_ptr<const Schema> file_schema,
                               std::shared_ptr<const Schema> read_schema, int64_t batch_rows = 3,
                               int threads = 1) {
  ASSIGN_OR_RETURN(auto reader, OpenDataFileReader(p, file_schema, read_schema, threads));
  Batch all(read_schema);
  Batch b;
  while (true) {
    ASSIGN_OR_RETURN(const bool more, reader->Next(&b, batch_rows));
    if (!more) break;
    EXPECT_LE(b.num_rows(), batch_rows);
    for (int64_t i = 0; i < b.num_rows(); ++i) all.AppendRow(b, i);
  }
  return all;
}

inline void ExpectSameBatch(const Batch& a, const Batch& b) {
  ASSERT_EQ(a.num_rows(), b.num_rows());
  ASSERT_EQ(a.columns().size(), b.columns().size());
  for (size_t c = 0; c < a.columns().size(); ++c) {
    for (int64_t r = 0; r < a.num_rows(); ++r) {
      ASSERT_EQ(a.column(c).IsNull(r), b.column(c).IsNull(r)) << c << "," << r;
      EXPECT_EQ(FormatValue(a.column(c), r), FormatValue(b.column(c), r)) << c << "," << r;
    }
  }
}

}  // namespace edgeloop::lake::data_file_testing

#endif  // EDGELOOP_LAKE_DATA_FILE_TEST_UTIL_H_
