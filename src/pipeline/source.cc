#include "pipeline/source.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <glob.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unordered_map>
#include <utility>

#include "lake/csv.h"
#include "pipeline/expr.h"

namespace edgeloop::pipeline {

using lake::Batch;
using lake::Column;
using lake::Schema;
using lake::Type;

namespace {

constexpr size_t kReadChunk = 1 << 20;

std::shared_ptr<const Schema> MakeSchema(const std::vector<std::pair<std::string, Type>>& fields) {
  auto schema = std::make_shared<Schema>();
  int32_t id = 1;
  for (const auto& [name, type] : fields) schema->fields.push_back({id++, name, type});
  return schema;
}

std::string Shorten(std::string_view text, size_t max = 80) {
  if (text.size() <= max) return std::string(text);
  return std::string(text.substr(0, max)) + "...";
}

// Pushes one row's values into a batch, or reports why the row is rejected. Shared by the
// CSV and JSON readers. Not thread-safe.
class BatchBuilder {
 public:
  BatchBuilder(std::shared_ptr<const Schema> schema, int64_t batch_rows, SourceSink* sink)
      : schema_(std::move(schema)), batch_rows_(batch_rows), sink_(sink) {
    Reset();
  }

  void StartFile(std::string origin) { origin_ = std::move(origin); }

  Batch& batch() { return chunk_.batch; }
  void AddLine(int64_t line) { chunk_.lines.push_back(line); }

  Status MaybeFlush(bool force) {
    const int64_t rows = chunk_.batch.num_rows();
    if (rows == 0 || (!force && rows < batch_rows_)) return Status::Ok();
    chunk_.origin = origin_;
    Chunk out = std::move(chunk_);
    Reset();
    return sink_->Rows(std::move(out));
  }

  Status Reject(int64_t line, std::string_view raw, std::string reason) {
    return sink_->Rejected({origin_, line, std::string(raw), std::move(reason)});
  }

  const Schema& schema() const { return *schema_; }

 private:
  void Reset() {
    chunk_ = Chunk();
    chunk_.batch = Batch(schema_);
    for (Column& c : chunk_.batch.columns()) c.Reserve(batch_rows_);
    chunk_.lines.reserve(batch_rows_);
  }

  std::shared_ptr<const Schema> schema_;
  int64_t batch_rows_;
  SourceSink* sink_;
  std::string origin_;
  Chunk chunk_;
};

// Parses CSV bytes (one file or body) into batches. Not thread-safe.
class CsvReader {
 public:
  CsvReader(const SourceSpec& spec, BatchBuilder* builder)
      : builder_(builder),
        tokenizer_(lake::CsvOptions{.delimiter = spec.delimiter,
                                    .quote = '"',
                                    .max_record_bytes = 64 << 20,
                                    .recover_malformed = true}) {
    const Schema& schema = builder->schema();
    parsed_.resize(schema.fields.size());
    if (!spec.header) setup_ = MapColumns(spec.columns);
  }

  Status Feed(std::string_view bytes) {
    return tokenizer_.Feed(bytes, [this](const lake::CsvRecord& r) { return OnRecord(r); });
  }
  Status Finish() {
    return tokenizer_.Finish([this](const lake::CsvRecord& r) { return OnRecord(r); });
  }

 private:
  struct Parsed {
    bool null = false;
    std::string_view text;
    int64_t i = 0;
    double d = 0;
    Column scratch{Type::kInt64};
  };

  Status MapColumns(const std::vector<std::string>& names) {
    const Schema& schema = builder_->schema();
    width_ = names.size();
    index_.assign(schema.fields.size(), -1);
    for (size_t f = 0; f < schema.fields.size(); ++f) {
      for (size_t i = 0; i < names.size(); ++i) {
        if (names[i] == schema.fields[f].name) {
          index_[f] = static_cast<int>(i);
          break;
        }
      }
      if (index_[f] < 0) {
        return InvalidArgumentError("the header has no column '" + schema.fields[f].name + "'");
      }
    }
    mapped_ = true;
    return Status::Ok();
  }

  Status OnRecord(const lake::CsvRecord& r) {
    RETURN_IF_ERROR(setup_);
    if (!r.error.empty()) {
      // Malformed quoting: the header cannot be guessed, a row is rejected (its first line;
      // the tokenizer resumes at the next line).
      if (!mapped_) return InvalidArgumentError("line " + std::to_string(r.line) + ": " + r.error);
      return builder_->Reject(r.line, r.raw, "malformed CSV: " + r.error);
    }
    if (r.fields.size() == 1 && r.fields[0].empty() && !r.quoted[0]) return Status::Ok();
    if (!mapped_) {
      std::vector<std::string> names;
      names.reserve(r.fields.size());
      for (std::string_view f : r.fields) {
        std::string_view name = f;
        if (names.empty() && name.substr(0, 3) == "\xEF\xBB\xBF") name.remove_prefix(3);
        names.emplace_back(name);
      }
      Status status = MapColumns(names);
      if (!status.ok()) {
        return InvalidArgumentError("line " + std::to_string(r.line) + ": " + status.message());
      }
      return Status::Ok();
    }
    if (r.fields.size() != width_) {
      return builder_->Reject(
          r.line, r.raw,
          "expected " + std::to_string(width_) + " fields, got " + std::to_string(r.fields.size()));
    }
    const Schema& schema = builder_->schema();
    Batch& batch = builder_->batch();
    // Parse every value first, so that a rejected row leaves nothing behind.
    for (size_t f = 0; f < index_.size(); ++f) {
      const size_t i = static_cast<size_t>(index_[f]);
      const std::string_view text = r.fields[i];
      Parsed& p = parsed_[f];
      p.null = text.empty() && (!r.quoted[i] || schema.fields[f].type != Type::kString);
      if (p.null) continue;
      if (!ParseValue(text, schema.fields[f].type, &p)) return RejectValue(r, f, text);
    }
    for (size_t f = 0; f < index_.size(); ++f) {
      const Parsed& p = parsed_[f];
      Column& c = batch.column(f);
      if (p.null) {
        c.AppendNull();
      } else if (c.type() == Type::kString) {
        c.AppendString(p.text);
      } else if (c.type() == Type::kDouble) {
        c.AppendDouble(p.d);
      } else {
        c.AppendInt(p.i);
      }
    }
    builder_->AddLine(r.line);
    return builder_->MaybeFlush(false);
  }

  // The hot path: numbers and timestamps parse without a temporary column.
  static bool ParseValue(std::string_view text, Type type, Parsed* p) {
    switch (type) {
      case Type::kString:
        p->text = text;
        return true;
      case Type::kDouble:
      case Type::kInt64: {
        const char* begin = text.data();
        const char* end = begin + text.size();
        if (begin != end && (*begin == ' ' || *begin == '+' || end[-1] == ' ')) break;
        const auto [ptr, ec] = type == Type::kDouble ? std::from_chars(begin, end, p->d)
                                                     : std::from_chars(begin, end, p->i);
        if (ec == std::errc() && ptr == end) return true;
        if (type == Type::kInt64) break;  // leave "1e3" etc. to the general path
        return false;
      }
      case Type::kTimestamp:
        if (std::optional<int64_t> v = lake::ParseTimestamp(text)) {
          p->i = *v;
          return true;
        }
        break;
      default:
        break;
    }
    p->scratch = Column(type);
    if (!AppendParsed(text, type, &p->scratch)) return false;
    if (type == Type::kDouble) {
      p->d = p->scratch.GetDouble(0);
    } else {
      p->i = p->scratch.GetInt(0);
    }
    return true;
  }

  Status RejectValue(const lake::CsvRecord& r, size_t f, std::string_view text) {
    const Type type = builder_->schema().fields[f].type;
    return builder_->Reject(r.line, r.raw,
                            "column '" + builder_->schema().fields[f].name + "': cannot parse '" +
                                Shorten(text, 40) + "' as " + std::string(lake::TypeName(type)));
  }

  BatchBuilder* builder_;
  lake::CsvTokenizer tokenizer_;
  Status setup_;
  bool mapped_ = false;
  size_t width_ = 0;
  std::vector<int> index_;  // schema field -> record field
  std::vector<Parsed> parsed_;
};

// Parses JSON Lines (one object per line) into batches. Not thread-safe.
class JsonLinesReader {
 public:
  explicit JsonLinesReader(BatchBuilder* builder) : builder_(builder) {}

  Status Feed(std::string_view bytes) {
    size_t start = 0;
    while (true) {
      const size_t nl = bytes.find('\n', start);
      if (nl == std::string_view::npos) {
        pending_.append(bytes.substr(start));
        if (pending_.size() > (64 << 20)) {
          return InvalidArgumentError("line " + std::to_string(line_) +
                                      ": a line longer than 64 MiB");
        }
        return Status::Ok();
      }
      if (pending_.empty()) {
        RETURN_IF_ERROR(OnLine(bytes.substr(start, nl - start)));
      } else {
        pending_.append(bytes.substr(start, nl - start));
        std::string line = std::move(pending_);
        pending_.clear();
        RETURN_IF_ERROR(OnLine(line));
      }
      start = nl + 1;
    }
  }

  Status Finish() {
    if (pending_.empty()) return Status::Ok();
    std::string line = std::move(pending_);
    pending_.clear();
    return OnLine(line);
  }

 private:
  Status OnLine(std::string_view line) {
    const int64_t number = line_++;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) return Status::Ok();
    simdjson::dom::element doc;
    const simdjson::error_code error = parser_.parse(line.data(), line.size()).get(doc);
    if (error) {
      return builder_->Reject(number, line,
                              std::string("invalid JSON: ") + simdjson::error_message(error));
    }
    simdjson::dom::object object;
    if (doc.get_object().get(object)) {
      return builder_->Reject(number, line, "not a JSON object");
    }
    const Schema& schema = builder_->schema();
    Batch& batch = builder_->batch();
    if (values_.empty()) {
      for (const lake::Field& field : schema.fields) values_.emplace_back(field.type);
    }
    for (size_t f = 0; f < schema.fields.size(); ++f) {
      const lake::Field& field = schema.fields[f];
      Column& value = values_[f];
      value.Clear();
      simdjson::dom::element e;
      if (object.at_key(field.name).get(e) || e.is_null()) {
        value.AppendNull();
        continue;
      }
      bool ok = true;
      switch (e.type()) {
        case simdjson::dom::element_type::STRING: {
          std::string_view s;
          if (e.get_string().get(s)) s = {};
          ok = field.type == Type::kString ? (value.AppendString(s), true)
                                           : AppendParsed(s, field.type, &value);
          break;
        }
        case simdjson::dom::element_type::BOOL:
          if (field.type == Type::kBool) {
            bool b = false;
            if (e.get_bool().get(b)) b = false;
            value.AppendBool(b);
          } else if (field.type == Type::kString) {
            value.AppendString(simdjson::to_string(e));
          } else {
            ok = false;
          }
          break;
        case simdjson::dom::element_type::INT64:
        case simdjson::dom::element_type::UINT64:
        case simdjson::dom::element_type::DOUBLE: {
          const std::string text = simdjson::to_string(e);
          ok = (field.type == Type::kString || IsNumber(field.type)) &&
               AppendParsed(text, field.type, &value);
          break;
        }
        default:
          if (field.type == Type::kString) {
            value.AppendString(simdjson::to_string(e));
          } else {
            ok = false;
          }
      }
      if (!ok) {
        return builder_->Reject(number, line,
                                "column '" + field.name + "': cannot read " +
                                    Shorten(simdjson::to_string(e), 40) + " as " +
                                    std::string(lake::TypeName(field.type)));
      }
    }
    for (size_t f = 0; f < schema.fields.size(); ++f) batch.column(f).AppendFrom(values_[f], 0);
    builder_->AddLine(number);
    return builder_->MaybeFlush(false);
  }

  static bool IsNumber(Type t) { return t == Type::kInt64 || t == Type::kDouble; }

  BatchBuilder* builder_;
  simdjson::dom::parser parser_;
  std::string pending_;
  int64_t line_ = 1;
  std::vector<Column> values_;
};

// One of the two readers, chosen by format.
class FormatReader {
 public:
  FormatReader(const SourceSpec& spec, SourceSpec::Kind format, BatchBuilder* builder) {
    if (format == SourceSpec::Kind::kCsv) {
      csv_ = std::make_unique<CsvReader>(spec, builder);
    } else {
      json_ = std::make_unique<JsonLinesReader>(builder);
    }
  }
  Status Feed(std::string_view bytes) { return csv_ ? csv_->Feed(bytes) : json_->Feed(bytes); }
  Status Finish() { return csv_ ? csv_->Finish() : json_->Finish(); }

 private:
  std::unique_ptr<CsvReader> csv_;
  std::unique_ptr<JsonLinesReader> json_;
};

StatusOr<FileState> StatFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return NotFoundError("cannot read " + path + ": " + std::strerror(errno));
  }
  return FileState{static_cast<int64_t>(st.st_size),
                   static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

// Reads the first record of a CSV file (its header) or the keys of a JSON file's first object.
StatusOr<std::vector<std::string>> ReadColumnNames(const std::string& path,
                                                   const SourceSpec& spec) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFoundError("cannot open " + path + ": " + std::strerror(errno));
  std::string head;
  char buffer[65536];
  std::vector<std::string> names;
  bool done = false;
  lake::CsvTokenizer tokenizer(lake::CsvOptions{spec.delimiter, '"', 1 << 20});
  Status status;
  while (!done && head.size() < (1 << 20)) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n <= 0) break;
    if (spec.kind == SourceSpec::Kind::kCsv) {
      // Stops at the first record: later lines are the reader's business.
      status = tokenizer.Feed(std::string_view(buffer, n), [&](const lake::CsvRecord& r) {
        for (std::string_view f : r.fields) names.emplace_back(f);
        done = true;
        return CancelledError("header read");
      });
      if (done) status = Status::Ok();
      if (!status.ok()) break;
    } else {
      head.append(buffer, n);
      done = head.find('\n') != std::string::npos;
    }
  }
  ::close(fd);
  RETURN_IF_ERROR(status.WithContext(path));
  if (spec.kind == SourceSpec::Kind::kCsv) {
    if (!done) {
      status = tokenizer.Finish([&](const lake::CsvRecord& r) {
        for (std::string_view f : r.fields) names.emplace_back(f);
        return Status::Ok();
      });
      RETURN_IF_ERROR(status.WithContext(path));
    }
    if (!names.empty() && names[0].rfind("\xEF\xBB\xBF", 0) == 0) names[0].erase(0, 3);
    return names;
  }
  const std::string line = head.substr(0, head.find('\n'));
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  if (parser.parse(line).get_object().get(object)) {
    return InvalidArgumentError(path + ": line 1 is not a JSON object; give the source a schema");
  }
  for (auto field : object) names.emplace_back(field.key);
  return names;
}

// Reads csv or jsonl files.
class FileSource final : public Source {
 public:
  FileSource(const PipelineSpec& spec, const SourceOptions& options, std::vector<std::string> files,
             std::shared_ptr<const Schema> schema)
      : spec_(spec.source),
        options_(options),
        files_(std::move(files)),
        schema_(std::move(schema)) {
    for (const std::string& f : files_) {
      StatusOr<FileState> state = StatFile(f);
      if (state.ok()) total_ += state->size;
    }
  }

  const std::shared_ptr<const Schema>& schema() const override { return schema_; }
  int64_t total_bytes() const override { return total_; }
  std::map<std::string, FileState> files_read() const override { return read_; }
  int64_t files_skipped() const override { return skipped_; }

  Status Run(SourceSink* sink) override {
    BatchBuilder builder(schema_, options_.batch_rows, sink);
    std::vector<char> buffer(kReadChunk);
    int64_t done_bytes = 0;
    for (const std::string& path : files_) {
      ASSIGN_OR_RETURN(FileState state, StatFile(path));
      if (auto it = options_.skip_files.find(path);
          it != options_.skip_files.end() && it->second == state) {
        ++skipped_;
        done_bytes += state.size;
        continue;
      }
      builder.StartFile(path);
      FormatReader reader(spec_, spec_.kind, &builder);
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return NotFoundError("cannot open " + path + ": " + std::strerror(errno));
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
      Status status;
      int64_t remaining = state.size;  // read what was there when the file was listed
      while (remaining > 0) {
        const ssize_t n = ::read(fd, buffer.data(),
                                 static_cast<size_t>(std::min<int64_t>(remaining, kReadChunk)));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          status = InternalError("reading " + path + ": " + std::strerror(errno));
          break;
        }
        if (n == 0) break;
        remaining -= n;
        done_bytes += n;
        status = reader.Feed(std::string_view(buffer.data(), n));
        if (!status.ok()) break;
        sink->Progress(done_bytes);
      }
      ::close(fd);
      if (status.ok()) status = reader.Finish();
      if (status.ok()) status = builder.MaybeFlush(true);
      if (!status.ok()) {
        if (status.code() == StatusCode::kInvalidArgument) return status.WithContext(path);
        return status;
      }
      read_[path] = state;
    }
    return Status::Ok();
  }

 private:
  SourceSpec spec_;
  SourceOptions options_;
  std::vector<std::string> files_;
  std::shared_ptr<const Schema> schema_;
  int64_t total_ = 0;
  int64_t skipped_ = 0;
  std::map<std::string, FileState> read_;
};

// Streams an HTTP(S) body through a reader with libcurl.
class HttpSource final : public Source {
 public:
  HttpSource(const PipelineSpec& spec, const SourceOptions& options,
             std::shared_ptr<const Schema> schema, std::vector<std::string> headers = {})
      : spec_(spec.source),
        options_(options),
        schema_(std::move(schema)),
        headers_(std::move(headers)) {}

  const std::shared_ptr<const Schema>& schema() const override { return schema_; }
  int64_t total_bytes() const override { return -1; }

  Status Run(SourceSink* sink) override {
    BatchBuilder builder(schema_, options_.batch_rows, sink);
    builder.StartFile(spec_.url);
    FormatReader reader(spec_, spec_.format, &builder);
    struct State {
      FormatReader* reader;
      SourceSink* sink;
      Status status;
      int64_t bytes = 0;
    } state{&reader, sink, Status(), 0};
    CURL* curl = curl_easy_init();
    if (curl == nullptr) return InternalError("libcurl failed to start");
    char error[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(curl, CURLOPT_URL, spec_.url.c_str());
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, std::min<long>(spec_.timeout_ms, 30'000));
    // No progress for timeout_ms fails the request (below one byte per second).
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME,
                     std::max<long>(1, static_cast<long>((spec_.timeout_ms + 999) / 1000)));
    curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "edgeloop-pipeline");
    curl_slist* headers = nullptr;
    for (const std::string& h : headers_) headers = curl_slist_append(headers, h.c_str());
    if (headers != nullptr) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &state);
    curl_easy_setopt(
        curl, CURLOPT_WRITEFUNCTION,
        +[](char* data, size_t size, size_t count, void* user) -> size_t {
          auto* s = static_cast<State*>(user);
          const size_t n = size * count;
          s->status = s->reader->Feed(std::string_view(data, n));
          if (!s->status.ok()) return 0;  // aborts the transfer
          s->bytes += static_cast<int64_t>(n);
          s->sink->Progress(s->bytes);
          return n;
        });
    const CURLcode code = curl_easy_perform(curl);
    long http_status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_status);
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    if (!state.status.ok()) return state.status.WithContext(spec_.url);
    if (code == CURLE_HTTP_RETURNED_ERROR) {
      return UnavailableError("GET " + spec_.url + ": HTTP " + std::to_string(http_status));
    }
    if (code == CURLE_OPERATION_TIMEDOUT) {
      return DeadlineExceededError("GET " + spec_.url + ": no progress for " +
                                   std::to_string(spec_.timeout_ms) + " ms");
    }
    if (code != CURLE_OK) {
      return UnavailableError("GET " + spec_.url + ": " +
                              (error[0] ? std::string(error) : curl_easy_strerror(code)));
    }
    RETURN_IF_ERROR(reader.Finish().WithContext(spec_.url));
    return builder.MaybeFlush(true);
  }

 private:
  SourceSpec spec_;
  SourceOptions options_;
  std::shared_ptr<const Schema> schema_;
  std::vector<std::string> headers_;
};

// --- The hub source: labelled events from GET /api/v1/labelled (docs/pipeline.md).

std::string UrlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

struct HubTarget {
  std::string base_url;
  std::vector<std::string> headers;
};

StatusOr<HubTarget> ResolveHub(const PipelineSpec& spec) {
  HubTarget target;
  target.base_url = spec.source.url;
  if (target.base_url.empty()) {
    if (const char* env = std::getenv("EDGELOOP_HUB_URL")) target.base_url = env;
  }
  if (target.base_url.empty()) {
    return InvalidArgumentError("a hub source needs a 'url' (or EDGELOOP_HUB_URL)");
  }
  if (target.base_url.rfind("http://", 0) != 0 && target.base_url.rfind("https://", 0) != 0) {
    return InvalidArgumentError("the hub URL must start with http:// or https://");
  }
  while (!target.base_url.empty() && target.base_url.back() == '/') target.base_url.pop_back();
  std::string token;
  if (!spec.source.token_file.empty()) {
    std::filesystem::path file = spec.source.token_file;
    if (file.is_relative()) file = spec.base_dir / file;
    std::ifstream in(file);
    if (!in) return NotFoundError("cannot read the hub token file " + file.string());
    std::getline(in, token);
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
      token.pop_back();
    }
    if (token.empty())
      return InvalidArgumentError("the hub token file " + file.string() + " is empty");
  } else if (const char* env = std::getenv("EDGELOOP_HUB_TOKEN")) {
    token = env;
  }
  if (token.empty()) {
    return InvalidArgumentError("a hub source needs a 'token_file' (or EDGELOOP_HUB_TOKEN)");
  }
  if (token.find_first_of("\r\n") != std::string::npos) {
    return InvalidArgumentError("the hub token must be one line");
  }
  target.headers.push_back("Authorization: Bearer " + token);
  return target;
}

std::string LabelledUrl(const HubTarget& hub, const SourceSpec& source,
                        const std::optional<int64_t>& after_ms, int64_t limit) {
  std::string url = hub.base_url + "/api/v1/labelled?format=jsonl&model=" + UrlEncode(source.model);
  if (!source.site.empty()) url += "&site=" + UrlEncode(source.site);
  if (after_ms) url += "&after=" + std::to_string(*after_ms);
  if (limit > 0) url += "&limit=" + std::to_string(limit);
  return url;
}

// A small GET into memory (the schema sample).
StatusOr<std::string> HttpGet(const std::string& url, const std::vector<std::string>& header_lines,
                              int64_t timeout_ms) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return InternalError("libcurl failed to start");
  std::string body;
  char error[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  for (const std::string& h : header_lines) headers = curl_slist_append(headers, h.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
  curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "edgeloop-pipeline");
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION,
      +[](char* data, size_t size, size_t count, void* user) -> size_t {
        static_cast<std::string*>(user)->append(data, size * count);
        return size * count;
      });
  const CURLcode code = curl_easy_perform(curl);
  long http_status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_status);
  curl_easy_cleanup(curl);
  curl_slist_free_all(headers);
  if (code == CURLE_HTTP_RETURNED_ERROR) {
    const std::string hint = http_status == 401 || http_status == 403
                                 ? " (the hub refused the token: it needs the read role)"
                                 : "";
    return UnavailableError("GET " + url + ": HTTP " + std::to_string(http_status) + hint);
  }
  if (code != CURLE_OK) {
    return UnavailableError("GET " + url + ": " +
                            (error[0] ? std::string(error) : curl_easy_strerror(code)));
  }
  return body;
}

// The columns of labelled events: the fixed ones, then every input seen in the sample, typed
// double (numbers), bool, or string (anything else).
StatusOr<std::shared_ptr<const Schema>> InferHubSchema(std::string_view sample) {
  std::vector<std::pair<std::string, Type>> fields = {{"id", Type::kString},
                                                      {"site", Type::kString},
                                                      {"ts", Type::kTimestamp},
                                                      {"model", Type::kString},
                                                      {"model_version", Type::kString},
                                                      {"model_digest", Type::kString},
                                                      {"prediction", Type::kString},
                                                      {"label", Type::kString},
                                                      {"correct", Type::kBool},
                                                      {"labelled_at", Type::kTimestamp},
                                                      {"feedback_id", Type::kString}};
  const size_t fixed = fields.size();
  std::map<std::string, int> kinds;  // 0 unknown (null), 1 number, 2 bool, 3 string
  simdjson::dom::parser parser;
  size_t start = 0;
  while (start < sample.size()) {
    size_t end = sample.find('\n', start);
    if (end == std::string_view::npos) end = sample.size();
    const std::string_view line = sample.substr(start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    simdjson::dom::object object;
    if (parser.parse(line).get_object().get(object)) {
      return InvalidArgumentError("the hub answered a line that is not a JSON object");
    }
    for (auto field : object) {
      const std::string key(field.key);
      bool known = false;
      for (size_t i = 0; i < fixed; ++i) known = known || fields[i].first == key;
      if (known) continue;
      int kind = 0;
      switch (field.value.type()) {
        case simdjson::dom::element_type::INT64:
        case simdjson::dom::element_type::UINT64:
        case simdjson::dom::element_type::DOUBLE:
          kind = 1;
          break;
        case simdjson::dom::element_type::BOOL:
          kind = 2;
          break;
        case simdjson::dom::element_type::NULL_VALUE:
          kind = 0;
          break;
        default:
          kind = 3;
      }
      auto [it, fresh] = kinds.try_emplace(key, kind);
      if (fresh) {
        fields.emplace_back(key, Type::kString);
      } else if (it->second == 0) {
        it->second = kind;
      } else if (kind != 0 && kind != it->second) {
        it->second = 3;  // mixed kinds: text
      }
    }
  }
  for (size_t i = fixed; i < fields.size(); ++i) {
    const int kind = kinds[fields[i].first];
    fields[i].second = kind == 1 ? Type::kDouble : kind == 2 ? Type::kBool : Type::kString;
  }
  return MakeSchema(fields);
}

StatusOr<std::unique_ptr<Source>> OpenHubSource(const PipelineSpec& spec,
                                                const SourceOptions& options) {
  ASSIGN_OR_RETURN(HubTarget hub, ResolveHub(spec));
  // Incremental by `labelled_at`: the hub sends only labels received after the watermark.
  std::optional<int64_t> after_ms;
  if (spec.watermark == "labelled_at" && options.watermark) {
    const std::optional<int64_t> micros = lake::ParseTimestamp(*options.watermark);
    if (micros) after_ms = *micros / 1000;
  }
  std::shared_ptr<const Schema> schema;
  if (!spec.schema.empty()) {
    schema = MakeSchema(spec.schema);
  } else {
    ASSIGN_OR_RETURN(std::string sample, HttpGet(LabelledUrl(hub, spec.source, after_ms, 500),
                                                 hub.headers, spec.source.timeout_ms));
    ASSIGN_OR_RETURN(schema, InferHubSchema(sample));
  }
  PipelineSpec http = spec;
  http.source.url = LabelledUrl(hub, spec.source, after_ms, 0);
  http.source.format = SourceSpec::Kind::kJsonLines;
  return std::unique_ptr<Source>(
      new HttpSource(http, options, std::move(schema), std::move(hub.headers)));
}

// Reads another table of the lake at a snapshot.
class LakeSource final : public Source {
 public:
  LakeSource(const PipelineSpec& spec, const SourceOptions& options, int64_t snapshot,
             std::shared_ptr<const Schema> schema)
      : spec_(spec.source), options_(options), snapshot_(snapshot), schema_(std::move(schema)) {}

  const std::shared_ptr<const Schema>& schema() const override { return schema_; }
  int64_t total_bytes() const override { return -1; }

  Status Run(SourceSink* sink) override {
    lake::ScanOptions scan;
    scan.snapshot = snapshot_;
    ASSIGN_OR_RETURN(std::unique_ptr<lake::TableReader> reader,
                     options_.lake->Scan(spec_.table, scan));
    const std::string origin = "lake:" + spec_.table + "@" + std::to_string(snapshot_);
    int64_t row = 0;
    while (true) {
      Chunk chunk;
      chunk.batch = Batch(schema_);
      ASSIGN_OR_RETURN(bool more, reader->Next(&chunk.batch));
      if (!more) break;
      if (chunk.batch.num_rows() == 0) continue;
      chunk.origin = origin;
      chunk.lines.resize(chunk.batch.num_rows());
      for (int64_t& line : chunk.lines) line = ++row;
      RETURN_IF_ERROR(sink->Rows(std::move(chunk)));
    }
    return Status::Ok();
  }

 private:
  SourceSpec spec_;
  SourceOptions options_;
  int64_t snapshot_;
  std::shared_ptr<const Schema> schema_;
};

bool HasGlobChars(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

}  // namespace

StatusOr<std::vector<std::string>> ListSourceFiles(const std::string& path,
                                                   const std::filesystem::path& base_dir) {
  namespace fs = std::filesystem;
  fs::path full = path;
  if (full.is_relative()) full = base_dir / full;
  std::vector<std::string> files;
  if (HasGlobChars(path)) {
    glob_t g{};
    const int rc = ::glob(full.c_str(), GLOB_NOSORT, nullptr, &g);
    if (rc != 0 && rc != GLOB_NOMATCH) {
      globfree(&g);
      return InvalidArgumentError("cannot expand the path pattern '" + path + "'");
    }
    for (size_t i = 0; i < g.gl_pathc; ++i) {
      std::error_code ec;
      if (fs::is_regular_file(g.gl_pathv[i], ec)) files.emplace_back(g.gl_pathv[i]);
    }
    globfree(&g);
  } else {
    std::error_code ec;
    if (fs::is_directory(full, ec)) {
      for (const fs::directory_entry& e : fs::directory_iterator(full, ec)) {
        const std::string name = e.path().filename().string();
        if (!name.empty() && name[0] != '.' && e.is_regular_file(ec)) {
          files.push_back(e.path().string());
        }
      }
      if (ec) return InternalError("cannot list " + full.string() + ": " + ec.message());
    } else if (fs::is_regular_file(full, ec)) {
      files.push_back(full.string());
    } else {
      return NotFoundError("source path " + full.string() + " does not exist");
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

StatusOr<std::unique_ptr<Source>> OpenSource(const PipelineSpec& spec,
                                             const SourceOptions& options) {
  const SourceSpec& source = spec.source;
  if (source.kind == SourceSpec::Kind::kLake) {
    if (options.lake == nullptr) return InternalError("a lake source needs the lake");
    if (!spec.schema.empty()) {
      return InvalidArgumentError(
          "a lake source has its table's schema; use a cast step instead of 'schema'");
    }
    int64_t snapshot = 0;
    if (source.snapshot) {
      snapshot = *source.snapshot;
    } else {
      ASSIGN_OR_RETURN(snapshot, options.lake->LatestSnapshot());
    }
    ASSIGN_OR_RETURN(lake::TableInfo info, options.lake->Describe(source.table, snapshot));
    auto schema = std::make_shared<Schema>(info.schema);
    return std::unique_ptr<Source>(new LakeSource(spec, options, snapshot, std::move(schema)));
  }
  if (source.kind == SourceSpec::Kind::kHub) return OpenHubSource(spec, options);
  std::shared_ptr<const Schema> schema;
  if (!spec.schema.empty()) schema = MakeSchema(spec.schema);
  if (source.kind == SourceSpec::Kind::kHttp) {
    if (!schema) {
      if (source.format == SourceSpec::Kind::kCsv && !source.columns.empty()) {
        std::vector<std::pair<std::string, Type>> fields;
        for (const std::string& c : source.columns) fields.emplace_back(c, Type::kString);
        schema = MakeSchema(fields);
      } else {
        return InvalidArgumentError(
            "an http source needs a 'schema' (or 'columns' for headerless CSV)");
      }
    }
    return std::unique_ptr<Source>(new HttpSource(spec, options, std::move(schema)));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> files, ListSourceFiles(source.path, spec.base_dir));
  if (!schema) {
    std::vector<std::string> names;
    if (source.kind == SourceSpec::Kind::kCsv && !source.header) {
      names = source.columns;
    } else if (!files.empty()) {
      ASSIGN_OR_RETURN(names, ReadColumnNames(files.front(), source));
    } else {
      return NotFoundError("no files match '" + source.path +
                           "', and without 'schema' the columns are unknown");
    }
    std::vector<std::pair<std::string, Type>> fields;
    for (std::string& n : names) {
      for (const auto& [existing, t] : fields) {
        if (existing == n) {
          return InvalidArgumentError(files.front() + ": the header names column '" + n +
                                      "' twice");
        }
      }
      if (n.empty()) return InvalidArgumentError(files.front() + ": a header column is empty");
      fields.emplace_back(std::move(n), Type::kString);
    }
    if (fields.empty()) return InvalidArgumentError(files.front() + ": no header row");
    schema = MakeSchema(fields);
  }
  return std::unique_ptr<Source>(
      new FileSource(spec, options, std::move(files), std::move(schema)));
}

}  // namespace edgeloop::pipeline
