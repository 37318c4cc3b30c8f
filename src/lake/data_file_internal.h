// Private to lake/: what the data file formats share (statistics, digests) and the columnar
// format's entry points. The public contract is data_file.h.
#ifndef EDGELOOP_LAKE_DATA_FILE_INTERNAL_H_
#define EDGELOOP_LAKE_DATA_FILE_INTERNAL_H_

#include <openssl/evp.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "lake/batch.h"
#include "lake/data_file.h"
#include "lake/types.h"

namespace edgeloop::lake::internal {

// Running min/max/null count of one column, typed; text only at Finish.
struct StatsAccumulator {
  Type type = Type::kString;
  int32_t field_id = 0;
  int64_t nulls = 0;
  bool any = false;
  int64_t min_int = 0, max_int = 0;
  double min_double = 0, max_double = 0;
  std::string min_string, max_string;

  void Add(const Column& c);
  ColumnStats Finish() const;
};

// "sha256:<hex>" of a finished digest.
std::string HexDigest(const unsigned char* digest, unsigned size);

// For each column of `read_schema`, the index of the same field (by id) in `file_schema`, or -1
// when the file does not have it (it reads as null). kInvalidArgument, naming `path`, when a
// field's type in the file cannot be widened to the one asked for.
StatusOr<std::vector<int>> MapReadColumns(const Schema& file_schema, const Schema& read_schema,
                                          const std::filesystem::path& path);

// The last step of every format's writer: fsyncs and closes *fd (then -1), renames `tmp_path`
// to `path` and syncs the folders above it, so the file is durable before anyone can see it;
// then its stats, with the digest finished from `sha`. A failed fsync leaves *fd open; a failed
// close or rename removes the temp file.
StatusOr<FileStats> PublishDataFile(int* fd, const std::filesystem::path& tmp_path,
                                    const std::filesystem::path& path, EVP_MD_CTX* sha,
                                    int64_t rows, int64_t bytes,
                                    const std::vector<StatsAccumulator>& columns);

// The columnar format (data_file.h); only for schemas without string fields.
StatusOr<std::unique_ptr<DataFileWriter>> OpenColumnarWriter(const std::filesystem::path& path,
                                                             std::shared_ptr<const Schema> schema,
                                                             int compression_level);
StatusOr<std::unique_ptr<DataFileReader>> OpenColumnarReader(
    const std::filesystem::path& path, std::shared_ptr<const Schema> file_schema,
    std::shared_ptr<const Schema> read_schema, int threads);

}  // namespace edgeloop::lake::internal

#endif  // EDGELOOP_LAKE_DATA_FILE_INTERNAL_H_
