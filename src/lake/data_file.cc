#include "lake/data_file.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "lake/csv.h"
#include "lake/data_file_internal.h"
#include "lake/fs.h"
#include "lake/value_text.h"

namespace edgeloop::lake {
namespace internal {

void StatsAccumulator::Add(const Column& c) {
  const int64_t n = c.size();
  const uint8_t* valid = c.valid().data();
  switch (type) {
    case Type::kDouble: {
      const double* v = c.doubles().data();
      for (int64_t i = 0; i < n; ++i) {
        if (!valid[i]) {
          ++nulls;
        } else if (!std::isnan(v[i])) {  // NaN has no order; it stays out of min/max
          if (!any) {
            min_double = max_double = v[i];
            any = true;
          } else {
            min_double = std::min(min_double, v[i]);
            max_double = std::max(max_double, v[i]);
          }
        }
      }
      break;
    }
    case Type::kString: {
      std::string_view lo, hi;
      bool local = false;
      for (int64_t i = 0; i < n; ++i) {
        if (!valid[i]) {
          ++nulls;
          continue;
        }
        const std::string_view s = c.GetString(i);
        if (!local) {
          lo = hi = s;
          local = true;
        } else if (s < lo) {
          lo = s;
        } else if (s > hi) {
          hi = s;
        }
      }
      if (local) {
        if (!any || lo < min_string) min_string.assign(lo);
        if (!any || hi > max_string) max_string.assign(hi);
        any = true;
      }
      break;
    }
    default: {
      const int64_t* v = c.ints().data();
      for (int64_t i = 0; i < n; ++i) {
        if (!valid[i]) {
          ++nulls;
        } else if (!any) {
          min_int = max_int = v[i];
          any = true;
        } else {
          min_int = std::min(min_int, v[i]);
          max_int = std::max(max_int, v[i]);
        }
      }
    }
  }
}

ColumnStats StatsAccumulator::Finish() const {
  ColumnStats out;
  out.field_id = field_id;
  out.null_count = nulls;
  if (!any) return out;
  char buf[kMaxTimestampText];
  auto text = [&](int64_t v) {
    switch (type) {
      case Type::kBool:
        return std::string(v ? "true" : "false");
      case Type::kTimestamp:
        return FormatTimestamp(v);
      case Type::kDate:
        return FormatDate(static_cast<int32_t>(v));
      default:
        return std::string(buf, WriteInt(buf, v));
    }
  };
  switch (type) {
    case Type::kDouble:
      out.min = std::string(buf, WriteDouble(buf, min_double));
      out.max = std::string(buf, WriteDouble(buf, max_double));
      break;
    case Type::kString:
      out.min = min_string;
      out.max = max_string;
      break;
    default:
      out.min = text(min_int);
      out.max = text(max_int);
  }
  return out;
}

std::string HexDigest(const unsigned char* digest, unsigned size) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned i = 0; i < size; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

StatusOr<std::vector<int>> MapReadColumns(const Schema& file_schema, const Schema& read_schema,
                                          const std::filesystem::path& path) {
  std::vector<int> mapping;
  mapping.reserve(read_schema.fields.size());
  for (const Field& f : read_schema.fields) {
    int index = -1;
    for (size_t i = 0; i < file_schema.fields.size(); ++i) {
      if (file_schema.fields[i].id == f.id) index = static_cast<int>(i);
    }
    if (index >= 0 && f.type != file_schema.fields[index].type &&
        !CanWiden(file_schema.fields[index].type, f.type)) {
      return InvalidArgumentError("column '" + f.name + "' is " + std::string(TypeName(f.type)) +
                                  " but " + std::string(TypeName(file_schema.fields[index].type)) +
                                  " in " + path.string());
    }
    mapping.push_back(index);
  }
  return mapping;
}

StatusOr<FileStats> PublishDataFile(int* fd, const std::filesystem::path& tmp_path,
                                    const std::filesystem::path& path, EVP_MD_CTX* sha,
                                    int64_t rows, int64_t bytes,
                                    const std::vector<StatsAccumulator>& columns) {
  if (::fsync(*fd) != 0) {
    return InternalError("cannot fsync " + tmp_path.string() + ": " + ErrnoText(errno));
  }
  const int rc = ::close(*fd);
  *fd = -1;
  if (rc != 0) {
    ::unlink(tmp_path.c_str());
    return InternalError("cannot close " + tmp_path.string() + ": " + ErrnoText(errno));
  }
  if (::rename(tmp_path.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_path.c_str());
    return InternalError("cannot rename " + tmp_path.string() + ": " + ErrnoText(err));
  }
  RETURN_IF_ERROR(SyncDirectory(path.parent_path()));
  if (path.parent_path().has_parent_path()) {
    RETURN_IF_ERROR(SyncDirectory(path.parent_path().parent_path()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned size = 0;
  EVP_DigestFinal_ex(sha, digest, &size);
  FileStats stats;
  stats.rows = rows;
  stats.bytes = bytes;
  stats.sha256 = HexDigest(digest, size);
  for (const StatsAccumulator& column : columns) stats.columns.push_back(column.Finish());
  return stats;
}

}  // namespace internal

namespace {

using internal::StatsAccumulator;

constexpr size_t kFlushBytes = 1 << 20;  // CSV text handed to zstd at a time
// zstd's job size on its worker thread. The default for level 3 (8 MiB jobs, a 32 MiB input
// ring) costs about 34 MiB per open file, so memory grew with every partition a write touched;
// the minimum (512 KiB) keeps a file writer at a few MiB and the compression on its own core.
constexpr int kZstdJobBytes = 512 << 10;

// Bytes that force a string field into quotes.
struct QuoteTable {
  bool special[256] = {};
  constexpr QuoteTable() {
    special[static_cast<unsigned char>(',')] = true;
    special[static_cast<unsigned char>('"')] = true;
    special[static_cast<unsigned char>('\n')] = true;
    special[static_cast<unsigned char>('\r')] = true;
  }
};
constexpr QuoteTable kQuoteTable;

class CsvZstWriter : public DataFileWriter {
 public:
  CsvZstWriter(std::filesystem::path path, std::shared_ptr<const Schema> schema)
      : path_(std::move(path)), tmp_path_(path_.string() + ".tmp"), schema_(std::move(schema)) {}

  ~CsvZstWriter() override {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(tmp_path_.c_str());
    }
    if (cctx_ != nullptr) ZSTD_freeCCtx(cctx_);
    if (sha_ != nullptr) EVP_MD_CTX_free(sha_);
  }

  Status Open(int level) {
    std::error_code ec;
    std::filesystem::create_directories(path_.parent_path(), ec);
    if (ec) {
      return InternalError("cannot create " + path_.parent_path().string() + ": " + ec.message());
    }
    fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      return InternalError("cannot create " + tmp_path_.string() + ": " + ErrnoText(errno));
    }
    cctx_ = ZSTD_createCCtx();
    sha_ = EVP_MD_CTX_new();
    if (cctx_ == nullptr || sha_ == nullptr ||
        EVP_DigestInit_ex(sha_, EVP_sha256(), nullptr) != 1) {
      return InternalError("cannot set up zstd or sha256");
    }
    ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(cctx_, ZSTD_c_checksumFlag, 1);
    // Compress on a second thread when the library is built with threads (Debian's is); the
    // call fails harmlessly otherwise.
    if (!ZSTD_isError(ZSTD_CCtx_setParameter(cctx_, ZSTD_c_nbWorkers, 1))) {
      ZSTD_CCtx_setParameter(cctx_, ZSTD_c_jobSize, kZstdJobBytes);
    }
    out_.resize(ZSTD_CStreamOutSize());
    for (const Field& f : schema_->fields) {
      StatsAccumulator s;
      s.type = f.type;
      s.field_id = f.id;
      stats_.push_back(std::move(s));
    }
    std::string header;
    for (size_t i = 0; i < schema_->fields.size(); ++i) {
      if (i > 0) header.push_back(',');
      AppendCsvField(&header, schema_->fields[i].name);
    }
    header.push_back('\n');
    Append(header.data(), header.size());
    return Status::Ok();
  }

  Status Write(const Batch& batch) override {
    if (finished_) return FailedPreconditionError("data file writer already finished");
    const auto& fields = schema_->fields;
    if (batch.columns().size() != fields.size()) {
      return InvalidArgumentError("batch has " + std::to_string(batch.columns().size()) +
                                  " columns, the data file's schema " +
                                  std::to_string(fields.size()));
    }
    for (size_t c = 0; c < fields.size(); ++c) {
      if (batch.column(c).type() != fields[c].type) {
        return InvalidArgumentError("column '" + fields[c].name + "' is " +
                                    std::string(TypeName(batch.column(c).type())) +
                                    " in the batch but " + std::string(TypeName(fields[c].type)) +
                                    " in the data file's schema");
      }
    }
    const int64_t rows = batch.num_rows();
    const size_t ncols = fields.size();
    size_t fixed_need = 1;
    for (size_t c = 0; c < ncols; ++c) fixed_need += fields[c].type == Type::kString ? 4 : 34;
    for (int64_t r = 0; r < rows; ++r) {
      size_t need = fixed_need;
      for (size_t c = 0; c < ncols; ++c) {
        const Column& col = batch.column(c);
        if (col.type() == Type::kString) need += 2 * (col.offsets()[r + 1] - col.offsets()[r]);
      }
      char* o = Reserve(need);
      for (size_t c = 0; c < ncols; ++c) {
        if (c > 0) *o++ = ',';
        const Column& col = batch.column(c);
        if (col.IsNull(r)) continue;
        switch (col.type()) {
          case Type::kBool:
            if (col.GetBool(r)) {
              std::memcpy(o, "true", 4);
              o += 4;
            } else {
              std::memcpy(o, "false", 5);
              o += 5;
            }
            break;
          case Type::kInt64:
            o = WriteInt(o, col.GetInt(r));
            break;
          case Type::kDouble:
            o = WriteDouble(o, col.GetDouble(r));
            break;
          case Type::kTimestamp: {
            const int64_t v = col.GetInt(r);
            if (v < kMinTimestamp || v > kMaxTimestamp) {
              return InvalidArgumentError("timestamp " + std::to_string(v) + " in column '" +
                                          fields[c].name + "' is outside years 0000-9999");
            }
            o = WriteTimestamp(o, v);
            break;
          }
          case Type::kDate: {
            const int64_t v = col.GetInt(r);
            if (v < kMinDate || v > kMaxDate) {
              return InvalidArgumentError("date " + std::to_string(v) + " in column '" +
                                          fields[c].name + "' is outside years 0000-9999");
            }
            o = WriteDate(o, v);
            break;
          }
          case Type::kString:
            o = WriteString(o, col.GetString(r));
            break;
        }
      }
      *o++ = '\n';
      len_ = static_cast<size_t>(o - buf_.get());
      // Hand the text to zstd as it fills, so that the buffer stays at kFlushBytes however
      // large the batch is.
      if (len_ >= kFlushBytes) RETURN_IF_ERROR(Compress(ZSTD_e_continue));
    }
    for (size_t c = 0; c < ncols; ++c) stats_[c].Add(batch.column(c));
    rows_ += rows;
    return Status::Ok();
  }

  int64_t memory_bytes() const override {
    return static_cast<int64_t>(cap_ + out_.capacity() +
                                (cctx_ == nullptr ? 0 : ZSTD_sizeof_CCtx(cctx_)));
  }

  // Compressed bytes on disk plus an estimate (4:1) for text still buffered, so that small
  // targets roll too.
  int64_t bytes_written() const override { return written_ + static_cast<int64_t>((len_ + 3) / 4); }

  StatusOr<FileStats> Finish() override {
    if (finished_) return FailedPreconditionError("data file writer already finished");
    finished_ = true;
    RETURN_IF_ERROR(Compress(ZSTD_e_end));
    return internal::PublishDataFile(&fd_, tmp_path_, path_, sha_, rows_, written_, stats_);
  }

 private:
  // Room for `need` more bytes of text; returns where they go.
  char* Reserve(size_t need) {
    if (len_ + need > cap_) {
      const size_t cap = std::max(cap_ * 2, std::max<size_t>(len_ + need, kFlushBytes + 4096));
      auto bigger = std::make_unique_for_overwrite<char[]>(cap);
      if (len_ > 0) std::memcpy(bigger.get(), buf_.get(), len_);
      buf_ = std::move(bigger);
      cap_ = cap;
    }
    return buf_.get() + len_;
  }

  void Append(const char* data, size_t size) {
    std::memcpy(Reserve(size), data, size);
    len_ += size;
  }

  static char* WriteString(char* o, std::string_view s) {
    bool quote = s.empty() || s.front() == ' ' || s.back() == ' ';
    if (!quote) {
      for (char ch : s) {
        if (kQuoteTable.special[static_cast<unsigned char>(ch)]) {
          quote = true;
          break;
        }
      }
    }
    if (!quote) {
      std::memcpy(o, s.data(), s.size());
      return o + s.size();
    }
    *o++ = '"';
    for (char ch : s) {
      *o++ = ch;
      if (ch == '"') *o++ = '"';
    }
    *o++ = '"';
    return o;
  }

  Status Compress(ZSTD_EndDirective mode) {
    ZSTD_inBuffer in{buf_.get(), len_, 0};
    while (true) {
      ZSTD_outBuffer out{out_.data(), out_.size(), 0};
      const size_t remaining = ZSTD_compressStream2(cctx_, &out, &in, mode);
      if (ZSTD_isError(remaining)) {
        return InternalError("zstd: " + std::string(ZSTD_getErrorName(remaining)));
      }
      if (out.pos > 0) {
        EVP_DigestUpdate(sha_, out_.data(), out.pos);
        RETURN_IF_ERROR(WriteAll(fd_, std::string_view(out_.data(), out.pos), tmp_path_));
        written_ += static_cast<int64_t>(out.pos);
      }
      const bool done = mode == ZSTD_e_end ? remaining == 0 : in.pos == in.size;
      if (done) break;
    }
    len_ = 0;
    if (cap_ > 4 * kFlushBytes) {  // grown for one very long row: give it back
      buf_.reset();
      cap_ = 0;
    }
    return Status::Ok();
  }

  std::filesystem::path path_;
  std::filesystem::path tmp_path_;
  std::shared_ptr<const Schema> schema_;
  int fd_ = -1;
  ZSTD_CCtx* cctx_ = nullptr;
  EVP_MD_CTX* sha_ = nullptr;
  std::unique_ptr<char[]> buf_;  // CSV text not yet compressed
  size_t len_ = 0;
  size_t cap_ = 0;
  std::string out_;  // compressed bytes on their way to the file
  std::vector<StatsAccumulator> stats_;
  int64_t rows_ = 0;
  int64_t written_ = 0;
  bool finished_ = false;
};

class CsvZstReader : public DataFileReader {
 public:
  CsvZstReader(std::filesystem::path path, std::shared_ptr<const Schema> file_schema,
               std::shared_ptr<const Schema> read_schema, int threads)
      : path_(std::move(path)),
        file_schema_(std::move(file_schema)),
        read_schema_(std::move(read_schema)),
        threads_(threads) {}

  ~CsvZstReader() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : pool_) t.join();
    if (fd_ >= 0) ::close(fd_);
    if (dctx_ != nullptr) ZSTD_freeDCtx(dctx_);
  }

  Status Open() {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      const int err = errno;
      const std::string message = "cannot open data file " + path_.string() + ": " + ErrnoText(err);
      return err == ENOENT ? DataLossError(message) : InternalError(message);
    }
    dctx_ = ZSTD_createDCtx();
    if (dctx_ == nullptr) return InternalError("cannot create a zstd context");
    in_.resize(ZSTD_DStreamInSize());
    ASSIGN_OR_RETURN(mapping_, internal::MapReadColumns(*file_schema_, *read_schema_, path_));
    // The header row.
    CsvRecord header;
    ASSIGN_OR_RETURN(const bool got, NextRecord(&header));
    if (!got) return Corrupt("no header row");
    const auto& fields = file_schema_->fields;
    bool same = header.fields.size() == fields.size();
    for (size_t i = 0; same && i < fields.size(); ++i) same = header.fields[i] == fields[i].name;
    if (!same) {
      return Corrupt("the header row '" + std::string(header.raw).substr(0, 200) +
                     "' does not match the file's schema");
    }
    return Status::Ok();
  }

  StatusOr<bool> Next(Batch* batch, int64_t max_rows) override {
    if (threads_ > 1) return NextParallel(batch, max_rows);
    if (batch->schema() != read_schema_ || batch->columns().size() != read_schema_->fields.size()) {
      *batch = Batch(read_schema_);
    } else {
      batch->Clear();
    }
    CsvRecord record;
    while (batch->num_rows() < max_rows) {
      ASSIGN_OR_RETURN(const bool got, NextRecord(&record));
      if (!got) break;
      RETURN_IF_ERROR(AppendRecord(record, batch));
    }
    return batch->num_rows() > 0;
  }

 private:
  // Text of whole records, cut from the decompressed stream, and what parsing it gave.
  struct Block {
    int64_t seq = 0;
    std::string text;
    int64_t first_line = 0;
    bool last = false;  // the end of the file's data
    Status error;       // set by the producer (a corrupt frame): the reader fails here
  };
  struct Parsed {
    Status status;
    std::vector<Batch> batches;
    bool last = false;
  };

  // Appends `record` (a data row) to `batch`, or says why the file is corrupt.
  Status AppendRecord(const CsvRecord& record, Batch* batch) const {
    const size_t nfile = file_schema_->fields.size();
    if (record.fields.size() != nfile) {
      return Corrupt("line " + std::to_string(record.line) + " has " +
                     std::to_string(record.fields.size()) + " fields, expected " +
                     std::to_string(nfile));
    }
    for (size_t c = 0; c < mapping_.size(); ++c) {
      Column& col = batch->column(c);
      if (mapping_[c] < 0) {
        col.AppendNull();
        continue;
      }
      const std::string_view text = record.fields[mapping_[c]];
      if (text.empty() && !record.quoted[mapping_[c]]) {
        col.AppendNull();
        continue;
      }
      if (!AppendParsed(&col, text)) {
        return Corrupt("line " + std::to_string(record.line) + ": '" +
                       std::string(text.substr(0, 100)) + "' is not a valid " +
                       std::string(TypeName(col.type())) + " for column '" +
                       read_schema_->fields[c].name + "'");
      }
    }
    return Status::Ok();
  }

  // Parallel reading (threads_ > 1): one producer thread decompresses and cuts the text into
  // blocks of whole records; threads_ workers parse blocks into batches; Next hands the batches
  // out in file order. At most kMaxBlocksInFlight blocks are decompressed and not yet handed
  // out, so memory is bounded. The file's first error (in file order) is the one reported.
  static constexpr size_t kBlockBytes = 4 << 20;

  StatusOr<bool> NextParallel(Batch* batch, int64_t max_rows) {
    if (!started_) {
      started_ = true;
      max_rows_ = max_rows;
      pool_.emplace_back([this] { Produce(); });
      for (int i = 0; i < threads_; ++i) pool_.emplace_back([this] { Work(); });
    }
    while (true) {
      if (current_index_ < current_.batches.size()) {
        *batch = std::move(current_.batches[current_index_++]);
        return true;
      }
      if (!failed_.ok()) return failed_;
      if (current_.last) return false;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return done_.count(next_seq_) > 0; });
        current_ = std::move(done_[next_seq_]);
        done_.erase(next_seq_);
        ++next_seq_;
      }
      cv_.notify_all();  // the producer may cut the next block
      current_index_ = 0;
      if (!current_.status.ok()) {
        failed_ = current_.status;
        current_.batches.clear();
      }
    }
  }

  // The length of the longest prefix of `text` (which starts at a record boundary) that ends
  // with a line end outside quotes, or 0. In these files a quote only appears inside quoted
  // fields (as ""), so a line end is outside quotes exactly when the quotes before it are even
  // in number.
  static size_t RecordBoundary(std::string_view text) {
    auto count_quotes = [](const char* p, const char* end) {
      size_t n = 0;
      while ((p = static_cast<const char*>(std::memchr(p, '"', end - p))) != nullptr) {
        ++n;
        ++p;
      }
      return n;
    };
    const char* begin = text.data();
    const auto* nl = static_cast<const char*>(::memrchr(begin, '\n', text.size()));
    if (nl == nullptr) return 0;
    size_t quotes = count_quotes(begin, nl);
    while (quotes % 2 != 0) {
      const auto* previous = static_cast<const char*>(::memrchr(begin, '\n', nl - begin));
      if (previous == nullptr) return 0;
      quotes -= count_quotes(previous, nl);
      nl = previous;
    }
    return static_cast<size_t>(nl + 1 - begin);
  }

  void Produce() {
    int64_t seq = 0;
    int64_t line = line_;
    text_.erase(0, pos_);  // after the header
    pos_ = 0;
    while (true) {
      Block block;
      block.seq = seq++;
      size_t cut = 0;
      while (true) {
        if (eof_) {
          cut = text_.size();
          break;
        }
        if (text_.size() >= kBlockBytes) {
          cut = RecordBoundary(text_);
          if (cut > 0) break;
          // No record ends in sight: let the parser report the over-long record.
          if (text_.size() > static_cast<size_t>(CsvOptions().max_record_bytes) + kBlockBytes) {
            cut = text_.size();
            break;
          }
        }
        block.error = Fill();
        if (!block.error.ok()) break;
      }
      if (block.error.ok()) {
        block.text = text_.substr(0, cut);
        text_.erase(0, cut);
        block.first_line = line;
        block.last = eof_ && text_.empty();
        for (const char *p = block.text.data(), *end = p + block.text.size();
             (p = static_cast<const char*>(std::memchr(p, '\n', end - p))) != nullptr; ++p) {
          ++line;
        }
      } else {
        block.last = true;
      }
      const bool last = block.last;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || block.seq - next_seq_ < kMaxBlocksInFlight; });
        if (stop_) return;
        work_.push_back(std::move(block));
      }
      cv_.notify_all();
      if (last) break;
    }
    std::lock_guard<std::mutex> lock(mu_);
    produced_all_ = true;
    cv_.notify_all();
  }

  void Work() {
    CsvRecordParser parser;
    while (true) {
      Block block;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !work_.empty() || produced_all_; });
        if (stop_ || work_.empty()) return;
        block = std::move(work_.front());
        work_.pop_front();
      }
      Parsed parsed;
      parsed.last = block.last;
      parsed.status = block.error.ok() ? ParseBlock(block, &parser, &parsed.batches) : block.error;
      {
        std::lock_guard<std::mutex> lock(mu_);
        done_[block.seq] = std::move(parsed);
      }
      cv_.notify_all();
    }
  }

  Status ParseBlock(const Block& block, CsvRecordParser* parser, std::vector<Batch>* out) const {
    const std::string_view text = block.text;
    size_t pos = 0;
    int64_t line = block.first_line;
    CsvRecord record;
    while (pos < text.size()) {
      size_t consumed = 0;
      int64_t newlines = 0;
      Status error;
      switch (parser->Parse(text.substr(pos), block.last, line, &record, &consumed, &newlines,
                            &error)) {
        case CsvRecordParser::Result::kError:
          return Corrupt(error.message());
        case CsvRecordParser::Result::kNeedMore:
          return Corrupt("line " + std::to_string(line) + ": a record that does not end");
        case CsvRecordParser::Result::kRecord:
          break;
      }
      pos += consumed;
      line += newlines;
      if (out->empty() || out->back().num_rows() >= max_rows_) {
        out->emplace_back(read_schema_);
        for (Column& c : out->back().columns()) c.Reserve(max_rows_);
      }
      RETURN_IF_ERROR(AppendRecord(record, &out->back()));
    }
    return Status::Ok();
  }

  static bool AppendParsed(Column* col, std::string_view text) {
    switch (col->type()) {
      case Type::kBool: {
        const auto v = ParseBool(text);
        if (!v) return false;
        col->AppendBool(*v);
        return true;
      }
      case Type::kInt64: {
        const auto v = ParseInt64(text);
        if (!v) return false;
        col->AppendInt(*v);
        return true;
      }
      case Type::kDouble: {
        const auto v = ParseDouble(text);
        if (!v) return false;
        col->AppendDouble(*v);
        return true;
      }
      case Type::kString:
        col->AppendString(text);
        return true;
      case Type::kTimestamp: {
        const auto v = ParseTimestamp(text);
        if (!v) return false;
        col->AppendInt(*v);
        return true;
      }
      case Type::kDate: {
        const auto v = ParseDate(text);
        if (!v) return false;
        col->AppendInt(*v);
        return true;
      }
    }
    return false;
  }

  Status Corrupt(const std::string& what) const {
    return DataLossError("data file " + path_.string() + " is corrupt: " + what);
  }

  // The next CSV record; false at the end of the data.
  StatusOr<bool> NextRecord(CsvRecord* record) {
    while (true) {
      if (pos_ < text_.size() || eof_) {
        size_t consumed = 0;
        int64_t newlines = 0;
        Status error;
        switch (parser_.Parse(std::string_view(text_).substr(pos_), eof_, line_, record, &consumed,
                              &newlines, &error)) {
          case CsvRecordParser::Result::kError:
            return Corrupt(error.message());
          case CsvRecordParser::Result::kRecord:
            pos_ += consumed;
            line_ += newlines;
            return true;
          case CsvRecordParser::Result::kNeedMore:
            if (eof_) return false;  // only when nothing is left
            break;
        }
      }
      RETURN_IF_ERROR(Fill());
    }
  }

  // Decompresses more text, keeping the unparsed tail.
  Status Fill() {
    if (pos_ > 0) {
      text_.erase(0, pos_);
      pos_ = 0;
    }
    const size_t chunk = ZSTD_DStreamOutSize() * 2;
    while (true) {
      if (in_pos_ == in_len_ && !file_done_) {
        ssize_t n;
        do {
          n = ::read(fd_, in_.data(), in_.size());
        } while (n < 0 && errno == EINTR);
        if (n < 0) return InternalError("cannot read " + path_.string() + ": " + ErrnoText(errno));
        in_len_ = static_cast<size_t>(n);
        in_pos_ = 0;
        if (n == 0) file_done_ = true;
      }
      if (file_done_ && in_pos_ == in_len_) {
        if (!frame_done_) return Corrupt("truncated (the zstd frame does not end)");
        eof_ = true;
        return Status::Ok();
      }
      const size_t old = text_.size();
      text_.resize(old + chunk);
      ZSTD_inBuffer in{in_.data(), in_len_, in_pos_};
      ZSTD_outBuffer out{text_.data() + old, chunk, 0};
      const size_t rc = ZSTD_decompressStream(dctx_, &out, &in);
      in_pos_ = in.pos;
      text_.resize(old + out.pos);
      if (ZSTD_isError(rc)) return Corrupt(std::string("zstd: ") + ZSTD_getErrorName(rc));
      frame_done_ = rc == 0;
      if (out.pos > 0) return Status::Ok();
    }
  }

  std::filesystem::path path_;
  std::shared_ptr<const Schema> file_schema_;
  std::shared_ptr<const Schema> read_schema_;
  std::vector<int> mapping_;  // read column -> file column, or -1 (reads as null)
  int fd_ = -1;
  ZSTD_DCtx* dctx_ = nullptr;
  std::string in_;
  size_t in_pos_ = 0;
  size_t in_len_ = 0;
  bool file_done_ = false;
  bool frame_done_ = false;
  bool eof_ = false;
  std::string text_;
  size_t pos_ = 0;
  int64_t line_ = 1;
  CsvRecordParser parser_;

  // Parallel reading; the decompression state above then belongs to the producer thread.
  static constexpr int64_t kMaxBlocksInFlight = 8;
  const int threads_;
  bool started_ = false;
  int64_t max_rows_ = 0;
  std::vector<std::thread> pool_;
  Parsed current_;  // the block Next hands out
  size_t current_index_ = 0;
  Status failed_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Block> work_;          // GUARDED_BY(mu_)
  std::map<int64_t, Parsed> done_;  // GUARDED_BY(mu_)
  int64_t next_seq_ = 0;            // GUARDED_BY(mu_): the block Next takes next
  bool produced_all_ = false;       // GUARDED_BY(mu_)
  bool stop_ = false;               // GUARDED_BY(mu_)
};

}  // namespace

const DataFormat& DefaultDataFormat() {
  static const DataFormat* format = new DataFormat{"csv.zst", ".csv.zst"};
  return *format;
}

const DataFormat& ColumnarDataFormat() {
  static const DataFormat* format = new DataFormat{"col.zst", ".col.zst"};
  return *format;
}

const DataFormat& DataFormatFor(const Schema& schema) {
  for (const Field& f : schema.fields) {
    if (f.type == Type::kString) return DefaultDataFormat();
  }
  return ColumnarDataFormat();
}

namespace {

bool IsColumnar(const std::filesystem::path& path) {
  const std::string name = path.filename().string();
  const std::string& ext = ColumnarDataFormat().extension;
  return name.size() >= ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0;
}

}  // namespace

StatusOr<std::unique_ptr<DataFileWriter>> OpenDataFileWriter(const std::filesystem::path& path,
                                                             std::shared_ptr<const Schema> schema,
                                                             int compression_level) {
  if (schema == nullptr) return InvalidArgumentError("data file writer needs a schema");
  if (IsColumnar(path)) {
    return internal::OpenColumnarWriter(path, std::move(schema), compression_level);
  }
  auto writer = std::make_unique<CsvZstWriter>(path, std::move(schema));
  RETURN_IF_ERROR(writer->Open(compression_level));
  return std::unique_ptr<DataFileWriter>(std::move(writer));
}

StatusOr<std::unique_ptr<DataFileReader>> OpenDataFileReader(
    const std::filesystem::path& path, std::shared_ptr<const Schema> file_schema,
    std::shared_ptr<const Schema> read_schema, int threads) {
  if (file_schema == nullptr || read_schema == nullptr) {
    return InvalidArgumentError("data file reader needs both schemas");
  }
  if (IsColumnar(path)) {
    return internal::OpenColumnarReader(path, std::move(file_schema), std::move(read_schema),
                                        threads);
  }
  auto reader =
      std::make_unique<CsvZstReader>(path, std::move(file_schema), std::move(read_schema), threads);
  RETURN_IF_ERROR(reader->Open());
  return std::unique_ptr<DataFileReader>(std::move(reader));
}

}  // namespace edgeloop::lake
