// The columnar data file format, "col.zst" (see data_file.h for the layout).
//
// Why its own format: reading a numeric table back was mostly parsing text (21 million numbers
// of a 1M-row training table took about 1.8 CPU-seconds from csv.zst); here a column chunk is
// its values as they lie in memory, so reading is decompressing into the column.
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>
#include <zstd.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "lake/data_file_internal.h"
#include "lake/fs.h"
#include "lake/value_text.h"

namespace edgeloop::lake::internal {
namespace {

using Json = nlohmann::json;

constexpr char kMagic[8] = {'E', 'L', 'C', 'O', 'L', '0', '1', '\n'};
constexpr size_t kTrailerBytes = 16;  // footer frame size (u64, little-endian) + magic
// A row group holds at most this many rows, and at most kGroupBytes of values, so that a
// writer's buffer is bounded whatever the number of columns.
constexpr int64_t kGroupRows = 65536;
constexpr int64_t kGroupBytes = 4 << 20;
constexpr int kFooterVersion = 1;

bool StringFree(const Schema& schema) {
  for (const Field& f : schema.fields) {
    if (f.type == Type::kString) return false;
  }
  return true;
}

// The 8-byte values of a fixed-width column (ints or doubles, by type).
const char* ValueBytes(const Column& c) {
  return c.type() == Type::kDouble ? reinterpret_cast<const char*>(c.doubles().data())
                                   : reinterpret_cast<const char*>(c.ints().data());
}

// Byte-stream split (Parquet's BYTE_STREAM_SPLIT): byte b of value i goes to plane b, at
// planes[b * rows + i]. The high bytes of integers and the sign/exponent bytes of doubles vary
// little, and the low mantissa bytes of doubles that came from floats are zero, so the planes
// compress far better than the interleaved values (a 1M x 20 table of such doubles: 150 MB
// interleaved, 142 MB split, where csv.zst is 113 MB).
void SplitBytes(const char* values, int64_t rows, char* planes) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int b = 0; b < 8; ++b) planes[b * rows + i] = values[8 * i + b];
  }
}

// The inverse of SplitBytes, on the read path: 16 values at a time by an 8 x 16 byte transpose
// (three rounds of SSE2 unpacks), which is about 4x the byte loop.
void JoinBytes(const char* planes, int64_t rows, char* values) {
  int64_t i = 0;
#ifdef __SSE2__
  for (; i + 16 <= rows; i += 16) {
    __m128i p[8];
    for (int b = 0; b < 8; ++b) {
      p[b] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(planes + b * rows + i));
    }
    // Pairs of bytes (b0 b1, b2 b3, b4 b5, b6 b7) of values 0-7 (lo) and 8-15 (hi).
    __m128i lo[4], hi[4];
    for (int k = 0; k < 4; ++k) {
      lo[k] = _mm_unpacklo_epi8(p[2 * k], p[2 * k + 1]);
      hi[k] = _mm_unpackhi_epi8(p[2 * k], p[2 * k + 1]);
    }
    auto* out = reinterpret_cast<__m128i*>(values + 8 * i);
    for (int half = 0; half < 2; ++half) {
      const __m128i* pairs = half == 0 ? lo : hi;
      // Bytes 0-3 and 4-7 of values 0-3 (a, c) and 4-7 (b, d) of this half.
      const __m128i a = _mm_unpacklo_epi16(pairs[0], pairs[1]);
      const __m128i b = _mm_unpackhi_epi16(pairs[0], pairs[1]);
      const __m128i c = _mm_unpacklo_epi16(pairs[2], pairs[3]);
      const __m128i d = _mm_unpackhi_epi16(pairs[2], pairs[3]);
      _mm_storeu_si128(out + 4 * half + 0, _mm_unpacklo_epi32(a, c));
      _mm_storeu_si128(out + 4 * half + 1, _mm_unpackhi_epi32(a, c));
      _mm_storeu_si128(out + 4 * half + 2, _mm_unpacklo_epi32(b, d));
      _mm_storeu_si128(out + 4 * half + 3, _mm_unpackhi_epi32(b, d));
    }
  }
#endif
  for (; i < rows; ++i) {
    for (int b = 0; b < 8; ++b) values[8 * i + b] = planes[b * rows + i];
  }
}

void PutU64(char* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

uint64_t GetU64(const char* in) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

class ColumnarWriter : public DataFileWriter {
 public:
  ColumnarWriter(std::filesystem::path path, std::shared_ptr<const Schema> schema)
      : path_(std::move(path)), tmp_path_(path_.string() + ".tmp"), schema_(std::move(schema)) {}

  ~ColumnarWriter() override {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(tmp_path_.c_str());
    }
    if (cctx_ != nullptr) ZSTD_freeCCtx(cctx_);
    if (sha_ != nullptr) EVP_MD_CTX_free(sha_);
  }

  Status Open(int level) {
    if (!StringFree(*schema_)) {
      return InvalidArgumentError("the col.zst format holds no string columns");
    }
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
    const int64_t width = std::max<int64_t>(1, static_cast<int64_t>(schema_->fields.size()) * 9);
    group_rows_ = std::clamp<int64_t>(kGroupBytes / width, 1, kGroupRows);
    for (const Field& f : schema_->fields) {
      StatsAccumulator s;
      s.type = f.type;
      s.field_id = f.id;
      stats_.push_back(std::move(s));
    }
    buffer_ = Batch(schema_);
    for (Column& c : buffer_.columns()) c.Reserve(group_rows_);
    return Emit(std::string_view(kMagic, sizeof(kMagic)));
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
      if (fields[c].type == Type::kTimestamp || fields[c].type == Type::kDate) {
        RETURN_IF_ERROR(CheckRange(batch.column(c), fields[c]));
      }
    }
    const int64_t rows = batch.num_rows();
    for (int64_t done = 0; done < rows;) {
      const int64_t take = std::min(rows - done, group_rows_ - buffer_.num_rows());
      for (size_t c = 0; c < fields.size(); ++c) {
        const Column& from = batch.column(c);
        Column& to = buffer_.column(c);
        to.valid().insert(to.valid().end(), from.valid().begin() + done,
                          from.valid().begin() + done + take);
        if (from.type() == Type::kDouble) {
          to.doubles().insert(to.doubles().end(), from.doubles().begin() + done,
                              from.doubles().begin() + done + take);
        } else {
          to.ints().insert(to.ints().end(), from.ints().begin() + done,
                           from.ints().begin() + done + take);
        }
      }
      done += take;
      if (buffer_.num_rows() >= group_rows_) RETURN_IF_ERROR(FlushGroup());
    }
    for (size_t c = 0; c < fields.size(); ++c) stats_[c].Add(batch.column(c));
    rows_ += rows;
    return Status::Ok();
  }

  // Compressed bytes on disk plus an estimate (2:1) for values still buffered.
  int64_t bytes_written() const override {
    return written_ + buffer_.num_rows() * static_cast<int64_t>(schema_->fields.size()) * 9 / 2;
  }

  int64_t memory_bytes() const override {
    int64_t bytes = static_cast<int64_t>(out_.capacity() + split_.capacity());
    for (const Column& c : buffer_.columns()) {
      bytes += static_cast<int64_t>(c.valid().capacity() + 8 * c.ints().capacity() +
                                    8 * c.doubles().capacity());
    }
    return bytes + (cctx_ == nullptr ? 0 : static_cast<int64_t>(ZSTD_sizeof_CCtx(cctx_)));
  }

  StatusOr<FileStats> Finish() override {
    if (finished_) return FailedPreconditionError("data file writer already finished");
    finished_ = true;
    RETURN_IF_ERROR(FlushGroup());
    Json footer = {{"version", kFooterVersion}, {"rows", rows_}};
    Json fields = Json::array();
    for (const Field& f : schema_->fields) {
      fields.push_back({{"id", f.id}, {"name", f.name}, {"type", std::string(TypeName(f.type))}});
    }
    footer["fields"] = std::move(fields);
    footer["groups"] = std::move(groups_);
    ASSIGN_OR_RETURN(const size_t footer_bytes, CompressFrame(footer.dump()));
    char trailer[kTrailerBytes];
    PutU64(trailer, footer_bytes);
    std::memcpy(trailer + 8, kMagic, sizeof(kMagic));
    RETURN_IF_ERROR(Emit(std::string_view(trailer, sizeof(trailer))));
    return internal::PublishDataFile(&fd_, tmp_path_, path_, sha_, rows_, written_, stats_);
  }

 private:
  // The text forms of timestamps and dates cover years 0000-9999 only; the CSV format refuses
  // others, and so does this one, so that a table reads the same in either.
  static Status CheckRange(const Column& c, const Field& field) {
    const bool date = field.type == Type::kDate;
    const int64_t lo = date ? kMinDate : kMinTimestamp;
    const int64_t hi = date ? kMaxDate : kMaxTimestamp;
    for (int64_t i = 0; i < c.size(); ++i) {
      const int64_t v = c.ints()[i];
      if (c.valid()[i] && (v < lo || v > hi)) {
        return InvalidArgumentError(std::string(date ? "date " : "timestamp ") + std::to_string(v) +
                                    " in column '" + field.name + "' is outside years 0000-9999");
      }
    }
    return Status::Ok();
  }

  // Writes the buffered rows as one row group: per column, a zstd frame of its 8-byte values
  // and, when it has nulls, a frame of its validity bytes.
  Status FlushGroup() {
    const int64_t rows = buffer_.num_rows();
    if (rows == 0) return Status::Ok();
    Json chunks = Json::array();
    for (Column& c : buffer_.columns()) {
      const int64_t nulls =
          rows - std::count(c.valid().begin(), c.valid().end(), static_cast<uint8_t>(1));
      const int64_t offset = written_;
      split_.resize(8 * rows);
      SplitBytes(ValueBytes(c), rows, split_.data());
      ASSIGN_OR_RETURN(const size_t values_bytes, CompressFrame(split_));
      size_t valid_bytes = 0;
      if (nulls > 0) {
        ASSIGN_OR_RETURN(valid_bytes, CompressFrame(std::string_view(
                                          reinterpret_cast<const char*>(c.valid().data()), rows)));
      }
      chunks.push_back({offset, values_bytes, nulls, valid_bytes});
      c.Clear();
    }
    groups_.push_back({{"rows", rows}, {"chunks", std::move(chunks)}});
    return Status::Ok();
  }

  // Compresses `data` into one zstd frame (with its checksum) and writes it; returns its size.
  StatusOr<size_t> CompressFrame(std::string_view data) {
    out_.resize(ZSTD_compressBound(data.size()));
    const size_t n = ZSTD_compress2(cctx_, out_.data(), out_.size(), data.data(), data.size());
    if (ZSTD_isError(n)) return InternalError("zstd: " + std::string(ZSTD_getErrorName(n)));
    RETURN_IF_ERROR(Emit(std::string_view(out_.data(), n)));
    return n;
  }

  Status Emit(std::string_view bytes) {
    EVP_DigestUpdate(sha_, bytes.data(), bytes.size());
    RETURN_IF_ERROR(WriteAll(fd_, bytes, tmp_path_));
    written_ += static_cast<int64_t>(bytes.size());
    return Status::Ok();
  }

  std::filesystem::path path_;
  std::filesystem::path tmp_path_;
  std::shared_ptr<const Schema> schema_;
  int fd_ = -1;
  ZSTD_CCtx* cctx_ = nullptr;
  EVP_MD_CTX* sha_ = nullptr;
  int64_t group_rows_ = kGroupRows;
  Batch buffer_;       // rows of the row group being filled
  std::string split_;  // one column chunk's values, byte-stream split
  std::string out_;    // one compressed frame
  Json groups_ = Json::array();
  std::vector<StatsAccumulator> stats_;
  int64_t rows_ = 0;
  int64_t written_ = 0;
  bool finished_ = false;
};

class ColumnarReader : public DataFileReader {
 public:
  ColumnarReader(std::filesystem::path path, std::shared_ptr<const Schema> file_schema,
                 std::shared_ptr<const Schema> read_schema, int threads)
      : path_(std::move(path)),
        file_schema_(std::move(file_schema)),
        read_schema_(std::move(read_schema)),
        threads_(threads) {}

  ~ColumnarReader() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : decoders_) t.join();
    if (fd_ >= 0) ::close(fd_);
  }

  Status Open() {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      const int err = errno;
      const std::string message = "cannot open data file " + path_.string() + ": " + ErrnoText(err);
      return err == ENOENT ? DataLossError(message) : InternalError(message);
    }
    const off_t size = ::lseek(fd_, 0, SEEK_END);
    if (size < static_cast<off_t>(sizeof(kMagic) + kTrailerBytes)) return Corrupt("too short");
    std::string head(sizeof(kMagic), '\0');
    std::string trailer(kTrailerBytes, '\0');
    RETURN_IF_ERROR(ReadAt(0, head.data(), head.size()));
    RETURN_IF_ERROR(ReadAt(size - kTrailerBytes, trailer.data(), trailer.size()));
    if (std::memcmp(head.data(), kMagic, sizeof(kMagic)) != 0 ||
        std::memcmp(trailer.data() + 8, kMagic, sizeof(kMagic)) != 0) {
      return Corrupt("no col.zst magic at its start and end (truncated?)");
    }
    const uint64_t footer_bytes = GetU64(trailer.data());
    if (footer_bytes > static_cast<uint64_t>(size) - sizeof(kMagic) - kTrailerBytes) {
      return Corrupt("the footer's size is out of range");
    }
    std::string frame(footer_bytes, '\0');
    RETURN_IF_ERROR(ReadAt(size - kTrailerBytes - footer_bytes, frame.data(), frame.size()));
    ZSTD_DCtx* dctx = ZSTD_createDCtx();
    if (dctx == nullptr) return InternalError("cannot create a zstd context");
    std::string text;
    const Status decoded = Decompress(dctx, frame, &text);
    ZSTD_freeDCtx(dctx);
    RETURN_IF_ERROR(decoded);
    RETURN_IF_ERROR(ParseFooter(text, static_cast<uint64_t>(size) - kTrailerBytes - footer_bytes));
    ASSIGN_OR_RETURN(mapping_, internal::MapReadColumns(*file_schema_, *read_schema_, path_));
    return Status::Ok();
  }

  StatusOr<bool> Next(Batch* batch, int64_t max_rows) override {
    while (cursor_ >= current_.num_rows()) {
      ASSIGN_OR_RETURN(const bool more, NextGroup(&current_));
      if (!more) return false;
      cursor_ = 0;
    }
    const int64_t rows = current_.num_rows();
    if (cursor_ == 0 && rows <= max_rows) {
      *batch = std::move(current_);
      current_ = Batch();
      cursor_ = 0;
      return true;
    }
    if (batch->schema() != read_schema_ || batch->columns().size() != read_schema_->fields.size()) {
      *batch = Batch(read_schema_);
    } else {
      batch->Clear();
    }
    const int64_t take = std::min(max_rows, rows - cursor_);
    for (size_t c = 0; c < batch->columns().size(); ++c) {
      const Column& from = current_.column(c);
      Column& to = batch->column(c);
      if (from.type() == Type::kString) {
        for (int64_t i = cursor_; i < cursor_ + take; ++i) to.AppendFrom(from, i);
        continue;
      }
      to.valid().assign(from.valid().begin() + cursor_, from.valid().begin() + cursor_ + take);
      if (from.type() == Type::kDouble) {
        to.doubles().assign(from.doubles().begin() + cursor_,
                            from.doubles().begin() + cursor_ + take);
      } else {
        to.ints().assign(from.ints().begin() + cursor_, from.ints().begin() + cursor_ + take);
      }
    }
    cursor_ += take;
    return true;
  }

 private:
  struct Chunk {
    uint64_t offset = 0;
    uint64_t values_bytes = 0;
    int64_t nulls = 0;
    uint64_t valid_bytes = 0;
  };
  struct Group {
    int64_t rows = 0;
    std::vector<Chunk> chunks;  // one per file field
  };
  struct Decoded {
    Status status;
    Batch batch;
  };

  Status Corrupt(const std::string& what) const {
    return DataLossError("data file " + path_.string() + " is corrupt: " + what);
  }

  Status ReadAt(uint64_t offset, char* out, size_t size) const {
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::pread(fd_, out + done, size - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return InternalError("cannot read " + path_.string() + ": " + ErrnoText(errno));
      if (n == 0) return Corrupt("truncated");
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  }

  // Decompresses one whole frame into `out` (resized to its content).
  Status Decompress(ZSTD_DCtx* dctx, std::string_view frame, std::string* out) const {
    const unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > (1ULL << 34)) {
      return Corrupt("a zstd frame without a valid content size");
    }
    out->resize(size);
    return DecompressInto(dctx, frame, out->data(), size);
  }

  Status DecompressInto(ZSTD_DCtx* dctx, std::string_view frame, char* out, size_t size) const {
    const size_t n = ZSTD_decompressDCtx(dctx, out, size, frame.data(), frame.size());
    if (ZSTD_isError(n)) return Corrupt(std::string("zstd: ") + ZSTD_getErrorName(n));
    if (n != size) return Corrupt("a column chunk of the wrong size");
    return Status::Ok();
  }

  Status ParseFooter(const std::string& text, uint64_t data_end) {
    Json footer = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (footer.is_discarded() || !footer.is_object()) return Corrupt("the footer is not JSON");
    const Json& fields = footer.value("fields", Json::array());
    const auto& expected = file_schema_->fields;
    bool same = fields.is_array() && fields.size() == expected.size();
    for (size_t i = 0; same && i < expected.size(); ++i) {
      same = fields[i].is_object() && fields[i].value("name", "") == expected[i].name &&
             fields[i].value("type", "") == TypeName(expected[i].type);
    }
    if (!same) return Corrupt("its fields do not match the file's schema");
    const Json& groups = footer.value("groups", Json::array());
    if (!groups.is_array()) return Corrupt("no row groups in the footer");
    for (const Json& g : groups) {
      Group group;
      const Json& chunks = g.is_object() ? g.value("chunks", Json()) : Json();
      group.rows = g.is_object() ? g.value("rows", int64_t{-1}) : -1;
      if (group.rows < 0 || !chunks.is_array() || chunks.size() != expected.size()) {
        return Corrupt("a row group of the footer is malformed");
      }
      for (const Json& c : chunks) {
        if (!c.is_array() || c.size() != 4) return Corrupt("a column chunk entry is malformed");
        for (const Json& v : c) {
          if (!v.is_number_unsigned()) return Corrupt("a column chunk entry is malformed");
        }
        Chunk chunk{c[0].get<uint64_t>(), c[1].get<uint64_t>(), c[2].get<int64_t>(),
                    c[3].get<uint64_t>()};
        if (chunk.offset < sizeof(kMagic) ||
            chunk.offset + chunk.values_bytes + chunk.valid_bytes > data_end ||
            chunk.nulls > group.rows || (chunk.nulls > 0) != (chunk.valid_bytes > 0)) {
          return Corrupt("a column chunk lies outside the data");
        }
        group.chunks.push_back(chunk);
      }
      groups_.push_back(std::move(group));
    }
    return Status::Ok();
  }

  // The next row group as a batch of the read schema; false after the last. With threads > 1,
  // that many threads decode the groups ahead (at most kAheadPerThread each) and the caller
  // takes them in file order, so that decompression runs on several cores and overlaps the
  // caller's work on the previous group. The first error (in file order) is sticky.
  StatusOr<bool> NextGroup(Batch* out) {
    if (!failed_.ok()) return failed_;
    if (next_group_ >= groups_.size()) return false;
    if (threads_ <= 1) {
      if (dctx_ == nullptr) dctx_.reset(ZSTD_createDCtx());
      if (dctx_ == nullptr) return InternalError("cannot create a zstd context");
      failed_ = DecodeGroup(dctx_.get(), groups_[next_group_++], out);
      RETURN_IF_ERROR(failed_);
      return true;
    }
    if (decoders_.empty()) {
      const int n = static_cast<int>(std::min<size_t>(threads_, groups_.size()));
      for (int i = 0; i < n; ++i) decoders_.emplace_back([this] { Decode(); });
    }
    Decoded next;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return done_.count(next_group_) > 0; });
      next = std::move(done_[next_group_]);
      done_.erase(next_group_);
      ++next_group_;
    }
    cv_.notify_all();
    failed_ = next.status;
    RETURN_IF_ERROR(failed_);
    *out = std::move(next.batch);
    return true;
  }

  void Decode() {
    std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
    const size_t ahead = kAheadPerThread * static_cast<size_t>(threads_);
    while (true) {
      size_t g = 0;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] {
          return stop_ || next_to_decode_ >= groups_.size() ||
                 next_to_decode_ < next_group_ + ahead;
        });
        if (stop_ || next_to_decode_ >= groups_.size()) return;
        g = next_to_decode_++;
      }
      Decoded d;
      d.status = dctx == nullptr ? InternalError("cannot create a zstd context")
                                 : DecodeGroup(dctx.get(), groups_[g], &d.batch);
      {
        std::lock_guard<std::mutex> lock(mu_);
        done_[g] = std::move(d);
      }
      cv_.notify_all();
    }
  }

  Status DecodeGroup(ZSTD_DCtx* dctx, const Group& group, Batch* out) const {
    *out = Batch(read_schema_);
    const int64_t rows = group.rows;
    std::string frame;
    std::string planes;
    for (size_t c = 0; c < mapping_.size(); ++c) {
      Column& col = out->column(c);
      if (mapping_[c] < 0) {
        col.Reserve(rows);
        for (int64_t i = 0; i < rows; ++i) col.AppendNull();
        continue;
      }
      const Type file_type = file_schema_->fields[mapping_[c]].type;
      // Same type: decompress straight into the column; widened: into a column of the file's
      // type, then convert.
      Column widened(file_type);
      Column& into = file_type == col.type() ? col : widened;
      const Chunk& chunk = group.chunks[mapping_[c]];
      frame.resize(chunk.values_bytes + chunk.valid_bytes);
      RETURN_IF_ERROR(ReadAt(chunk.offset, frame.data(), frame.size()));
      char* values = nullptr;
      if (file_type == Type::kDouble) {
        into.doubles().resize(rows);
        values = reinterpret_cast<char*>(into.doubles().data());
      } else {
        into.ints().resize(rows);
        values = reinterpret_cast<char*>(into.ints().data());
      }
      planes.resize(8 * rows);
      RETURN_IF_ERROR(DecompressInto(dctx, std::string_view(frame.data(), chunk.values_bytes),
                                     planes.data(), 8 * rows));
      JoinBytes(planes.data(), rows, values);
      into.valid().resize(rows);
      if (chunk.nulls == 0) {
        std::fill(into.valid().begin(), into.valid().end(), 1);
      } else {
        RETURN_IF_ERROR(DecompressInto(
            dctx, std::string_view(frame.data() + chunk.values_bytes, chunk.valid_bytes),
            reinterpret_cast<char*>(into.valid().data()), rows));
      }
      if (&into == &widened) Widen(widened, &col);
    }
    return Status::Ok();
  }

  static void Widen(const Column& from, Column* to) {
    to->Reserve(from.size());
    for (int64_t i = 0; i < from.size(); ++i) {
      if (from.IsNull(i)) {
        to->AppendNull();
      } else if (to->type() == Type::kString) {
        to->AppendString(FormatValue(from, i));
      } else if (to->type() == Type::kDouble) {
        to->AppendDouble(static_cast<double>(from.GetInt(i)));
      } else {  // date -> timestamp
        to->AppendInt(from.GetInt(i) * 86'400'000'000LL);
      }
    }
  }

  static constexpr size_t kAheadPerThread = 2;

  std::filesystem::path path_;
  std::shared_ptr<const Schema> file_schema_;
  std::shared_ptr<const Schema> read_schema_;
  const int threads_;
  std::vector<int> mapping_;  // read column -> file column, or -1 (reads as null)
  std::vector<Group> groups_;
  int fd_ = -1;
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx_{nullptr, ZSTD_freeDCtx};
  Batch current_;  // the decoded group Next hands out
  int64_t cursor_ = 0;
  Status failed_;

  // Decoding on threads_ threads (threads_ > 1).
  std::vector<std::thread> decoders_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t next_group_ = 0;           // GUARDED_BY(mu_) when decoding on threads
  size_t next_to_decode_ = 0;       // GUARDED_BY(mu_)
  std::map<size_t, Decoded> done_;  // GUARDED_BY(mu_)
  bool stop_ = false;               // GUARDED_BY(mu_)
};

}  // namespace

StatusOr<std::unique_ptr<DataFileWriter>> OpenColumnarWriter(const std::filesystem::path& path,
                                                             std::shared_ptr<const Schema> schema,
                                                             int compression_level) {
  auto writer = std::make_unique<ColumnarWriter>(path, std::move(schema));
  RETURN_IF_ERROR(writer->Open(compression_level));
  return std::unique_ptr<DataFileWriter>(std::move(writer));
}

StatusOr<std::unique_ptr<DataFileReader>> OpenColumnarReader(
    const std::filesystem::path& path, std::shared_ptr<const Schema> file_schema,
    std::shared_ptr<const Schema> read_schema, int threads) {
  auto reader = std::make_unique<ColumnarReader>(path, std::move(file_schema),
                                                 std::move(read_schema), threads);
  RETURN_IF_ERROR(reader->Open());
  return std::unique_ptr<DataFileReader>(std::move(reader));
}

}  // namespace edgeloop::lake::internal
