#include "registry/remote_store.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <system_error>
#include <thread>
#include <utility>

#include "common/clock.h"
#include "common/logging.h"
#include "registry/http_client.h"

namespace edgeloop::registry {
namespace {

using Json = nlohmann::json;

// registry:2 answers 404 to a manifest request whose Accept names no OCI type. The Docker types
// are accepted too so that images copied in by other tools can still be resolved and read.
constexpr char kManifestAccept[] =
    "Accept: application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr char kIndexAccept[] = "Accept: application/vnd.oci.image.index.v1+json";

// Page size asked of the tags API; registries may return fewer and link to the next page.
constexpr int kTagsPageSize = 100;
constexpr int kMaxPages = 100'000;
// 429/502/503/504 on idempotent requests: this many retries, honouring Retry-After up to
// kMaxRetryAfter, else exponential backoff from kFirstBackoff.
constexpr int kMaxRetries = 3;
constexpr std::chrono::seconds kMaxRetryAfter{30};
constexpr std::chrono::milliseconds kFirstBackoff{250};
constexpr int kMaxRedirects = 5;
constexpr size_t kIoBufferSize = 256 << 10;
// Tokens are refreshed this long before they expire.
constexpr std::chrono::seconds kTokenMargin{5};
constexpr int64_t kDefaultTokenSeconds = 60;  // distribution token spec default

enum class Access { kPull, kPush };

std::string Base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(std::max(n, 0)));
  return out;
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  return text;
}

std::optional<int64_t> ParseInt(std::string_view text) {
  text = Trim(text);
  if (text.empty() || text.size() > 18) return std::nullopt;
  int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

// The media type of a Content-Type header, without parameters.
std::string MediaTypeOf(std::optional<std::string_view> content_type) {
  if (!content_type) return {};
  std::string_view v = *content_type;
  const size_t semi = v.find(';');
  if (semi != std::string_view::npos) v = v.substr(0, semi);
  return std::string(Trim(v));
}

// "CODE: message; CODE: message" from an OCI error body, or "" when it is not one. Also
// collects the codes.
std::string OciErrorSummary(const std::string& body, std::set<std::string>* codes) {
  const Json json = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object() || !json.contains("errors") ||
      !json["errors"].is_array()) {
    return {};
  }
  std::string out;
  for (const Json& error : json["errors"]) {
    if (!error.is_object()) continue;
    std::string code = error.contains("code") && error["code"].is_string()
                           ? error["code"].get<std::string>()
                           : "UNKNOWN";
    std::string message = error.contains("message") && error["message"].is_string()
                              ? error["message"].get<std::string>()
                              : "";
    if (!out.empty()) out += "; ";
    out += code;
    if (!message.empty()) out += ": " + message;
    codes->insert(std::move(code));
    if (out.size() > 400) break;
  }
  if (out.size() > 400) out = out.substr(0, 400) + "...";
  return out;
}

// One WWW-Authenticate challenge: `Bearer realm="...",service="...",scope="a:b:pull,push"`.
struct Challenge {
  std::string scheme;                         // lowercased: "bearer", "basic"
  std::map<std::string, std::string> params;  // names lowercased

  std::string Param(const std::string& name) const {
    const auto it = params.find(name);
    return it == params.end() ? std::string() : it->second;
  }
};

std::optional<Challenge> ParseChallenge(std::string_view header) {
  header = Trim(header);
  const size_t space = header.find(' ');
  Challenge challenge;
  challenge.scheme = Lower(header.substr(0, space));
  if (challenge.scheme.empty()) return std::nullopt;
  if (space == std::string_view::npos) return challenge;
  std::string_view rest = header.substr(space + 1);
  while (!rest.empty()) {
    rest = Trim(rest);
    if (!rest.empty() && rest.front() == ',') {
      rest.remove_prefix(1);
      continue;
    }
    const size_t eq = rest.find('=');
    if (eq == std::string_view::npos) break;
    const std::string name = Lower(Trim(rest.substr(0, eq)));
    rest.remove_prefix(eq + 1);
    rest = Trim(rest);
    std::string value;
    if (!rest.empty() && rest.front() == '"') {
      size_t i = 1;
      for (; i < rest.size() && rest[i] != '"'; ++i) {
        if (rest[i] == '\\' && i + 1 < rest.size()) ++i;
        value.push_back(rest[i]);
      }
      rest.remove_prefix(std::min(rest.size(), i + 1));
    } else {
      const size_t comma = rest.find(',');
      value = std::string(Trim(rest.substr(0, comma)));
      rest.remove_prefix(comma == std::string_view::npos ? rest.size() : comma);
    }
    challenge.params[name] = std::move(value);
  }
  return challenge;
}

// Prefers a Bearer challenge over Basic when a server offers both.
std::optional<Challenge> PickChallenge(const HttpHeaders& headers) {
  std::optional<Challenge> picked;
  for (std::string_view header : headers.GetAll("www-authenticate")) {
    std::optional<Challenge> c = ParseChallenge(header);
    if (!c) continue;
    if (c->scheme == "bearer") return c;
    if (c->scheme == "basic" && !picked) picked = std::move(c);
  }
  return picked;
}

// The target of `Link: <url>; rel="next"`, if any.
std::optional<std::string> NextLink(const HttpHeaders& headers) {
  for (std::string_view header : headers.GetAll("link")) {
    size_t pos = 0;
    while (pos < header.size()) {
      const size_t open = header.find('<', pos);
      if (open == std::string_view::npos) break;
      const size_t close = header.find('>', open);
      if (close == std::string_view::npos) break;
      const size_t next = header.find('<', close);
      const std::string params = Lower(header.substr(close + 1, next - close - 1));
      if (params.find("rel=\"next\"") != std::string::npos ||
          params.find("rel=next") != std::string::npos) {
        return std::string(header.substr(open + 1, close - open - 1));
      }
      pos = next == std::string_view::npos ? header.size() : next;
    }
  }
  return std::nullopt;
}

// For responses without an OCI error body (HEAD, proxies).
const char* ReasonPhrase(int status) {
  switch (status) {
    case 400:
      return "bad request";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    case 404:
      return "not found";
    case 405:
      return "method not allowed";
    case 409:
      return "conflict";
    case 413:
      return "too large";
    case 416:
      return "range not satisfiable";
    case 429:
      return "too many requests";
    case 500:
      return "internal server error";
    case 502:
      return "bad gateway";
    case 503:
      return "service unavailable";
    case 504:
      return "gateway timeout";
    default:
      return nullptr;
  }
}

bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

bool IsRetryable(int status) {
  return status == 429 || status == 502 || status == 503 || status == 504;
}

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Close(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void Reset(int fd) {
    Close();
    fd_ = fd;
  }
  // Returns 0 or the errno of close().
  int Close() {
    if (fd_ < 0) return 0;
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

// Reads a blob source in order, hashing every byte exactly once, and refuses to hand out the
// source's last bytes unless its digest matches the descriptor: a request that would complete a
// mismatched blob is aborted before the registry can commit it. Earlier offsets may be read
// again (a retried request rewinds its body); they are not hashed twice.
class VerifiedSource {
 public:
  static StatusOr<std::unique_ptr<VerifiedSource>> Open(const Descriptor& blob,
                                                        const BlobSource& source) {
    auto out = std::unique_ptr<VerifiedSource>(new VerifiedSource(blob));
    if (!source.file.empty()) {
      out->name_ = "file " + source.file.string();
      out->fd_.Reset(::open(source.file.c_str(), O_RDONLY | O_CLOEXEC));
      if (out->fd_.get() < 0) {
        const int err = errno;
        const std::string text = "cannot read " + source.file.string() + ": " + ErrnoText(err);
        return err == ENOENT ? NotFoundError(text) : InternalError(text);
      }
      struct stat st {};
      if (::fstat(out->fd_.get(), &st) != 0) {
        return InternalError("cannot stat " + source.file.string() + ": " + ErrnoText(errno));
      }
      out->size_ = static_cast<int64_t>(st.st_size);
    } else {
      out->name_ = "in-memory source";
      out->bytes_ = source.bytes;
      out->size_ = static_cast<int64_t>(source.bytes.size());
    }
    if (out->size_ != blob.size) {
      return InvalidArgumentError(out->name_ + " has " + std::to_string(out->size_) +
                                  " bytes but the descriptor of " + blob.digest.str() + " says " +
                                  std::to_string(blob.size));
    }
    if (out->size_ == 0) RETURN_IF_ERROR(out->Conclude());
    return out;
  }

  int64_t size() const { return size_; }

  StatusOr<size_t> ReadAt(int64_t offset, char* buffer, size_t max) {
    if (offset > hashed_) return InternalError("blob source read out of order");
    const size_t want = static_cast<size_t>(
        std::min<int64_t>(static_cast<int64_t>(max), std::max<int64_t>(0, size_ - offset)));
    if (want == 0) return size_t{0};
    size_t got = 0;
    if (fd_.get() >= 0) {
      while (got < want) {
        const ssize_t n = ::pread(fd_.get(), buffer + got, want - got,
                                  static_cast<off_t>(offset) + static_cast<off_t>(got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return InternalError("cannot read " + name_ + ": " + ErrnoText(errno));
        if (n == 0) {
          return InvalidArgumentError(name_ + " shrank while being uploaded (ends at " +
                                      std::to_string(offset + static_cast<int64_t>(got)) +
                                      " bytes, descriptor says " + std::to_string(size_) + ")");
        }
        got += static_cast<size_t>(n);
      }
    } else {
      std::memcpy(buffer, bytes_.data() + offset, want);
      got = want;
    }
    const int64_t end = offset + static_cast<int64_t>(got);
    if (end > hashed_) {
      hasher_.Update(buffer + (hashed_ - offset), static_cast<size_t>(end - hashed_));
      hashed_ = end;
      if (hashed_ == size_) RETURN_IF_ERROR(Conclude());
    }
    if (end == size_ && !verdict_.ok()) return verdict_;
    return got;
  }

 private:
  explicit VerifiedSource(const Descriptor& blob) : blob_(blob) {}

  Status Conclude() {
    const Digest actual = hasher_.Finish();
    if (actual != blob_.digest) {
      verdict_ = InvalidArgumentError(name_ + " does not match its descriptor: digest is " +
                                      actual.str() + ", descriptor says " + blob_.digest.str());
    }
    return verdict_;
  }

  Descriptor blob_;
  std::string name_;
  Fd fd_;
  std::string_view bytes_;
  int64_t size_ = 0;
  Sha256 hasher_;
  int64_t hashed_ = 0;
  Status verdict_;
};

// The bytes [start, start + length) of a VerifiedSource as a request body; reports progress as
// the highest offset handed to the network.
class SourceRangeBody final : public RequestBody {
 public:
  SourceRangeBody(VerifiedSource* source, int64_t start, int64_t length, const ProgressFn& progress,
                  int64_t* high_water)
      : source_(source),
        start_(start),
        length_(length),
        progress_(progress),
        high_water_(high_water) {}

  int64_t size() const override { return length_; }
  Status Rewind() override {
    pos_ = 0;
    return Status::Ok();
  }
  StatusOr<size_t> Read(char* buffer, size_t max) override {
    const size_t want =
        static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(max), length_ - pos_));
    ASSIGN_OR_RETURN(size_t n, source_->ReadAt(start_ + pos_, buffer, want));
    pos_ += static_cast<int64_t>(n);
    if (start_ + pos_ > *high_water_) {
      *high_water_ = start_ + pos_;
      if (progress_) progress_(*high_water_, source_->size());
    }
    return n;
  }

 private:
  VerifiedSource* source_;
  int64_t start_;
  int64_t length_;
  const ProgressFn& progress_;
  int64_t* high_water_;
  int64_t pos_ = 0;
};

// Writes a blob download to a file that may already hold a prefix of it, hashing as it goes.
class BlobFileSink final : public ResponseSink {
 public:
  BlobFileSink(int fd, const Descriptor& blob, int64_t offset, std::unique_ptr<Sha256> hasher,
               const ProgressFn& progress)
      : fd_(fd), blob_(blob), written_(offset), hasher_(std::move(hasher)), progress_(progress) {}

  Status Begin(int status, const HttpHeaders& headers) override {
    if (status == 206) {
      // "bytes START-END/TOTAL": the server must continue exactly where the file ends.
      const std::string range(headers.Get("content-range").value_or(""));
      const size_t space = range.find(' ');
      const size_t dash = range.find('-');
      std::optional<int64_t> start;
      if (space != std::string::npos && dash != std::string::npos && dash > space) {
        start = ParseInt(std::string_view(range).substr(space + 1, dash - space - 1));
      }
      if (!start || *start != written_) {
        return UnavailableError("registry answered a range request for offset " +
                                std::to_string(written_) + " with Content-Range '" + range + "'");
      }
      return Status::Ok();
    }
    // A whole body: the server ignored our Range (or none was sent). Start over.
    if (written_ > 0) {
      log::Info("registry ignored the download range; restarting from 0",
                {{"digest", blob_.digest.str()}, {"had", written_}});
      RETURN_IF_ERROR(Restart());
    }
    return Status::Ok();
  }

  Status Write(std::string_view data) override {
    if (written_ + static_cast<int64_t>(data.size()) > blob_.size) {
      return DataLossError("blob " + blob_.digest.str() + " is longer than its descriptor's " +
                           std::to_string(blob_.size) + " bytes");
    }
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        const std::string text = "cannot write the download: " + ErrnoText(err);
        return err == ENOSPC ? ResourceExhaustedError(text) : InternalError(text);
      }
      done += static_cast<size_t>(n);
    }
    hasher_->Update(data);
    written_ += static_cast<int64_t>(data.size());
    if (progress_) progress_(written_, blob_.size);
    return Status::Ok();
  }

  // Forgets everything written so far.
  Status Restart() {
    if (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) != 0) {
      return InternalError("cannot truncate the download: " + ErrnoText(errno));
    }
    hasher_ = std::make_unique<Sha256>();
    written_ = 0;
    return Status::Ok();
  }

  int64_t written() const { return written_; }
  Digest Finish() { return hasher_->Finish(); }

 private:
  int fd_;
  const Descriptor& blob_;
  int64_t written_;
  std::unique_ptr<Sha256> hasher_;
  const ProgressFn& progress_;
};

// Keeps a small blob in memory, refusing more bytes than the descriptor announces.
class BlobMemorySink final : public ResponseSink {
 public:
  explicit BlobMemorySink(const Descriptor& blob) : blob_(blob) {}
  Status Begin(int, const HttpHeaders&) override {
    bytes_.clear();
    return Status::Ok();
  }
  Status Write(std::string_view data) override {
    if (static_cast<int64_t>(bytes_.size() + data.size()) > blob_.size) {
      return DataLossError("blob " + blob_.digest.str() + " is longer than its descriptor's " +
                           std::to_string(blob_.size) + " bytes");
    }
    bytes_.append(data);
    return Status::Ok();
  }
  std::string& bytes() { return bytes_; }

 private:
  const Descriptor& blob_;
  std::string bytes_;
};

// A repository in a registry. Authentication state (scheme, realm, cached tokens) is learnt
// lazily from the first request and kept for the store's life. Not thread-safe (see store.h):
// it owns one HttpClient, whose connection it keeps alive.
class RemoteStore final : public Store {
 public:
  RemoteStore(Reference reference, StoreOptions options, std::string base_url,
              std::unique_ptr<HttpClient> http)
      : reference_(std::move(reference)),
        options_(std::move(options)),
        base_url_(std::move(base_url)),
        origin_(UrlOrigin(base_url_)),
        http_(std::move(http)) {}

  std::string Describe() const override {
    return "oci://" + reference_.host + "/" + reference_.repository;
  }

  StatusOr<bool> HasBlob(const Digest& digest) override {
    return BlobExists(digest, Access::kPull);
  }
  Status FetchBlob(const Descriptor& blob, const std::filesystem::path& dest,
                   const ProgressFn& progress) override;
  StatusOr<std::string> ReadBlob(const Descriptor& blob) override;
  Status PushBlob(const Descriptor& blob, const BlobSource& source,
                  const ProgressFn& progress) override;
  StatusOr<Descriptor> Resolve(std::string_view tag_or_digest) override;
  StatusOr<FetchedManifest> FetchManifest(std::string_view tag_or_digest) override;
  Status PushManifest(std::string_view tag_or_digest, std::string_view bytes,
                      std::string_view media_type) override;
  StatusOr<std::vector<std::string>> ListTags() override;
  StatusOr<Index> ReferrersApi(const Digest& subject) override;

 private:
  enum class AuthScheme { kUnknown, kNone, kBasic, kBearer };
  struct CachedToken {
    std::string token;
    Clock::SteadyTime refresh_at;
  };

  bool HasCredentials() const { return !options_.credentials.username.empty(); }
  std::string RepoUrl(std::string_view suffix) const {
    return base_url_ + "/v2/" + reference_.repository + std::string(suffix);
  }
  std::string Scope(Access access) const {
    return "repository:" + reference_.repository +
           (access == Access::kPush ? ":pull,push" : ":pull");
  }

  Status CheckUrlAllowed(std::string_view url) const;
  // Sends with authentication (for the registry's own origin), answering one 401 challenge and
  // retrying 429/5xx when `idempotent`. Returns the final response whatever its status.
  StatusOr<HttpResponse> Send(HttpRequest request, Access access, bool idempotent);
  // Send() for a GET that may be redirected (blob storage).
  StatusOr<HttpResponse> SendFollowingRedirects(HttpRequest request, Access access);
  // Send without registry authentication (ping, token service), with retries.
  StatusOr<HttpResponse> SendAnonymous(const HttpRequest& request);
  // Sleeps before a retry and returns true, or returns false when the response is final.
  bool BackOff(const HttpResponse& response, const HttpRequest& request, int* retries) const;
  // The Authorization header for a registry request, or "" when none is needed. Sets
  // `*fetched` when it had to get a new token.
  StatusOr<std::string> AuthorizationFor(Access access, bool* fetched);
  Status FetchToken(Access access, const std::string& challenge_scope);
  // Turns an unexpected response into a Status; `what` says what was being done.
  Status ErrorFrom(const HttpResponse& response, std::string_view what, Access access) const;
  StatusOr<bool> BlobExists(const Digest& digest, Access access);
  // A tag or digest, validated so that it can go into a URL path.
  StatusOr<std::string> CheckTagOrDigest(std::string_view tag_or_digest) const;
  StatusOr<std::string> UploadLocation(const HttpResponse& response,
                                       std::string_view request_url) const;
  Status FetchBlobTo(const Descriptor& blob, const std::filesystem::path& dest,
                     const ProgressFn& progress);
  Status UploadBlob(const Descriptor& blob, VerifiedSource* source, const ProgressFn& progress,
                    std::string* location);

  const Reference reference_;
  const StoreOptions options_;
  const std::string base_url_;  // "https://host:port"
  const std::string origin_;
  std::unique_ptr<HttpClient> http_;

  AuthScheme scheme_ = AuthScheme::kUnknown;
  std::string realm_;                          // bearer token service
  std::string service_;                        // bearer "service" parameter
  std::map<std::string, CachedToken> tokens_;  // by scope
};

Status RemoteStore::CheckUrlAllowed(std::string_view url) const {
  const std::string scheme = UrlScheme(url);
  const std::string host = UrlHost(url);
  if (scheme == "https") return Status::Ok();
  if (scheme == "http") {
    if (IsLoopbackHost(host) || options_.allow_http) return Status::Ok();
    return FailedPreconditionError("refusing plain HTTP to " + host +
                                   ", which is not a loopback host (allow_http permits it)");
  }
  return FailedPreconditionError("refusing URL with scheme '" + scheme + "' (host '" + host + "')");
}

bool RemoteStore::BackOff(const HttpResponse& response, const HttpRequest& request,
                          int* retries) const {
  if (!IsRetryable(response.status) || *retries >= kMaxRetries) return false;
  std::chrono::milliseconds delay = kFirstBackoff * (1 << *retries);
  if (const auto after = response.headers.Get("retry-after")) {
    const std::optional<int64_t> seconds = ParseInt(*after);
    if (seconds) {
      if (std::chrono::seconds(*seconds) > kMaxRetryAfter) return false;
      delay = std::chrono::seconds(*seconds);
    }
  }
  ++*retries;
  log::Warn("registry busy; retrying", {{"registry", reference_.host},
                                        {"method", request.method},
                                        {"status", response.status},
                                        {"retry", *retries},
                                        {"delay_ms", static_cast<int64_t>(delay.count())}});
  std::this_thread::sleep_for(delay);
  return true;
}

StatusOr<HttpResponse> RemoteStore::SendAnonymous(const HttpRequest& request) {
  RETURN_IF_ERROR(CheckUrlAllowed(request.url));
  int retries = 0;
  for (;;) {
    if (request.body != nullptr) RETURN_IF_ERROR(request.body->Rewind());
    ASSIGN_OR_RETURN(HttpResponse response, http_->Send(request));
    if (BackOff(response, request, &retries)) continue;
    return response;
  }
}

StatusOr<std::string> RemoteStore::AuthorizationFor(Access access, bool* fetched) {
  switch (scheme_) {
    case AuthScheme::kBasic:
      if (!HasCredentials()) return std::string();
      return "Authorization: Basic " +
             Base64(options_.credentials.username + ":" + options_.credentials.password);
    case AuthScheme::kBearer: {
      const auto now = Clock::Real()->Now();
      // A push token also grants pull.
      for (Access a : {access, Access::kPush}) {
        const auto it = tokens_.find(Scope(a));
        if (it != tokens_.end() && now < it->second.refresh_at) {
          return "Authorization: Bearer " + it->second.token;
        }
      }
      RETURN_IF_ERROR(FetchToken(access, ""));
      *fetched = true;
      return "Authorization: Bearer " + tokens_[Scope(access)].token;
    }
    case AuthScheme::kUnknown:
    case AuthScheme::kNone:
      break;
  }
  return std::string();
}

Status RemoteStore::FetchToken(Access access, const std::string& challenge_scope) {
  if (realm_.empty()) {
    return UnauthenticatedError(Describe() + " asks for a bearer token but names no realm");
  }
  const std::string scope = Scope(access);
  HttpRequest request;
  request.url = realm_;
  if (!service_.empty()) request.url = AppendQuery(request.url, "service", service_);
  request.url = AppendQuery(request.url, "scope", scope);
  if (!challenge_scope.empty() && challenge_scope != scope) {
    request.url = AppendQuery(request.url, "scope", challenge_scope);
  }
  request.max_body = 1 << 20;
  if (HasCredentials()) {
    request.headers.push_back("Authorization: Basic " + Base64(options_.credentials.username + ":" +
                                                               options_.credentials.password));
  }
  const std::string realm_host = UrlAuthority(realm_);
  ASSIGN_OR_RETURN(HttpResponse response, SendAnonymous(request));
  if (response.status == 401) {
    return UnauthenticatedError(
        HasCredentials()
            ? "token service " + realm_host + " rejected the credentials of user '" +
                  options_.credentials.username + "' for " + Describe()
            : "token service " + realm_host + " requires credentials for " + Describe());
  }
  if (response.status == 403) {
    return PermissionDeniedError("token service " + realm_host + " refused " + scope);
  }
  if (response.status != 200) {
    return ErrorFrom(response, "get a token from " + realm_host, access);
  }
  const Json json = Json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  std::string token;
  int64_t seconds = kDefaultTokenSeconds;
  if (json.is_object()) {
    for (const char* field : {"token", "access_token"}) {
      if (json.contains(field) && json[field].is_string() && token.empty()) {
        token = json[field].get<std::string>();
      }
    }
    if (json.contains("expires_in") && json["expires_in"].is_number_integer()) {
      seconds = std::max<int64_t>(json["expires_in"].get<int64_t>(), 1);
    }
  }
  if (token.empty()) {
    return UnauthenticatedError("token service " + realm_host + " returned no token for " +
                                Describe());
  }
  const auto lifetime = std::max<std::chrono::seconds>(std::chrono::seconds(seconds) - kTokenMargin,
                                                       std::chrono::seconds(1));
  tokens_[scope] = CachedToken{std::move(token), Clock::Real()->Now() + lifetime};
  log::Debug("registry token obtained",
             {{"registry", reference_.host}, {"scope", scope}, {"expires_in", seconds}});
  return Status::Ok();
}

StatusOr<HttpResponse> RemoteStore::Send(HttpRequest request, Access access, bool idempotent) {
  // No `GET /v2/` ping first: the first request goes out as it is, and a 401 tells the scheme
  // (answered below), so an up-to-date check costs one request.
  RETURN_IF_ERROR(CheckUrlAllowed(request.url));
  // Credentials go to the registry only, never to storage it redirects to.
  const bool to_registry = UrlOrigin(request.url) == origin_;
  const std::vector<std::string> headers = request.headers;
  bool answered_challenge = false;
  int retries = 0;
  for (;;) {
    request.headers = headers;
    bool fetched = false;
    if (to_registry) {
      ASSIGN_OR_RETURN(std::string authorization, AuthorizationFor(access, &fetched));
      if (!authorization.empty()) request.headers.push_back(std::move(authorization));
    }
    if (request.body != nullptr) RETURN_IF_ERROR(request.body->Rewind());
    ASSIGN_OR_RETURN(HttpResponse response, http_->Send(request));
    if (response.status == 401 && to_registry && !answered_challenge) {
      answered_challenge = true;
      const std::optional<Challenge> challenge = PickChallenge(response.headers);
      if (challenge && challenge->scheme == "bearer" && !fetched) {
        // First bearer challenge, or a cached token that expired or lacks the scope.
        scheme_ = AuthScheme::kBearer;
        if (!challenge->Param("realm").empty()) realm_ = challenge->Param("realm");
        if (!challenge->Param("service").empty()) service_ = challenge->Param("service");
        tokens_.erase(Scope(access));
        RETURN_IF_ERROR(FetchToken(access, challenge->Param("scope")));
        continue;
      }
      if (challenge && challenge->scheme == "basic" && scheme_ != AuthScheme::kBasic) {
        scheme_ = AuthScheme::kBasic;
        if (HasCredentials()) continue;
      }
      return response;
    }
    if (idempotent && BackOff(response, request, &retries)) continue;
    return response;
  }
}

StatusOr<HttpResponse> RemoteStore::SendFollowingRedirects(HttpRequest request, Access access) {
  for (int hop = 0; hop <= kMaxRedirects; ++hop) {
    ASSIGN_OR_RETURN(HttpResponse response, Send(request, access, /*idempotent=*/true));
    if (!IsRedirect(response.status)) return response;
    const std::optional<std::string_view> location = response.headers.Get("location");
    if (!location) return response;
    ASSIGN_OR_RETURN(request.url, ResolveUrl(request.url, *location));
  }
  return UnavailableError(Describe() + ": more than " + std::to_string(kMaxRedirects) +
                          " redirects");
}

Status RemoteStore::ErrorFrom(const HttpResponse& response, std::string_view what,
                              Access access) const {
  std::set<std::string> codes;
  const std::string summary = OciErrorSummary(response.body, &codes);
  std::string message = std::string(what) + ": HTTP " + std::to_string(response.status);
  if (!summary.empty()) {
    message += " (" + summary + ")";
  } else if (const char* reason = ReasonPhrase(response.status)) {
    message += " (" + std::string(reason) + ")";
  }
  const auto has = [&](const char* code) { return codes.count(code) > 0; };
  switch (response.status) {
    case 400:
      if (has("MANIFEST_BLOB_UNKNOWN") || has("BLOB_UNKNOWN")) {
        return FailedPreconditionError(message);
      }
      return InvalidArgumentError(message);
    case 401: {
      const std::optional<Challenge> challenge = PickChallenge(response.headers);
      const bool insufficient = challenge && challenge->Param("error") == "insufficient_scope";
      if (!HasCredentials()) {
        return UnauthenticatedError(message + "; " + reference_.host +
                                    " requires authentication and no credentials were given");
      }
      if (insufficient) {
        return PermissionDeniedError(
            message + "; user '" + options_.credentials.username + "' may not " +
            (access == Access::kPush ? "push to " : "pull from ") + Describe());
      }
      return UnauthenticatedError(message + "; " + reference_.host +
                                  " rejected the credentials of user '" +
                                  options_.credentials.username + "'");
    }
    case 403:
      return PermissionDeniedError(message);
    case 404:
      return NotFoundError(message);
    case 405:
    case 501:
      return UnimplementedError(message);
    case 409:
      return FailedPreconditionError(message);
    case 413:
      return ResourceExhaustedError(message);
    case 416:
      return OutOfRangeError(message);
    case 429:
      return UnavailableError(
          message +
          (response.headers.Get("retry-after")
               ? "; retry after " + std::string(*response.headers.Get("retry-after")) + " s"
               : std::string()));
    default:
      break;
  }
  if (response.status >= 500) return UnavailableError(message);
  return Status(StatusCode::kUnknown, message + " (unexpected)");
}

StatusOr<std::string> RemoteStore::CheckTagOrDigest(std::string_view tag_or_digest) const {
  if (tag_or_digest.substr(0, 7) == "sha256:") {
    ASSIGN_OR_RETURN(Digest digest, Digest::Parse(tag_or_digest));
    return digest.str();
  }
  if (!IsValidTag(tag_or_digest)) {
    return InvalidArgumentError("'" + std::string(tag_or_digest) +
                                "' is neither a valid tag nor a sha256 digest");
  }
  return std::string(tag_or_digest);
}

StatusOr<bool> RemoteStore::BlobExists(const Digest& digest, Access access) {
  HttpRequest request;
  request.method = "HEAD";
  request.url = RepoUrl("/blobs/" + digest.str());
  ASSIGN_OR_RETURN(HttpResponse response, SendFollowingRedirects(request, access));
  if (response.status == 200) return true;
  if (response.status == 404) return false;
  return ErrorFrom(response, "check blob " + digest.str() + " in " + Describe(), access);
}

StatusOr<std::string> RemoteStore::UploadLocation(const HttpResponse& response,
                                                  std::string_view request_url) const {
  const std::optional<std::string_view> location = response.headers.Get("location");
  if (!location || location->empty()) {
    return UnavailableError(Describe() + " answered an upload request without a Location");
  }
  ASSIGN_OR_RETURN(std::string url, ResolveUrl(request_url, *location));
  RETURN_IF_ERROR(CheckUrlAllowed(url));
  return url;
}

Status RemoteStore::UploadBlob(const Descriptor& blob, VerifiedSource* source,
                               const ProgressFn& progress, std::string* location) {
  const std::string what = "push blob " + blob.digest.str() + " to " + Describe();
  HttpRequest start;
  start.method = "POST";
  start.url = RepoUrl("/blobs/uploads/");
  ASSIGN_OR_RETURN(HttpResponse started, Send(start, Access::kPush, /*idempotent=*/false));
  if (started.status != 202) return ErrorFrom(started, what, Access::kPush);
  ASSIGN_OR_RETURN(*location, UploadLocation(started, start.url));

  int64_t high_water = 0;
  int64_t offset = 0;
  const int64_t size = blob.size;
  const bool chunked = options_.chunk_size > 0 && size > options_.chunk_size;
  if (chunked) {
    // Each PATCH goes to the Location of the previous answer: registry:2 keeps the upload's
    // state (an HMAC'd offset) in its query, and an old one is refused.
    while (offset < size) {
      const int64_t length = std::min(options_.chunk_size, size - offset);
      SourceRangeBody body(source, offset, length, progress, &high_water);
      HttpRequest patch;
      patch.method = "PATCH";
      patch.url = *location;
      patch.body = &body;
      patch.headers.push_back("Content-Type: application/octet-stream");
      patch.headers.push_back("Content-Range: " + std::to_string(offset) + "-" +
                              std::to_string(offset + length - 1));
      ASSIGN_OR_RETURN(HttpResponse patched, Send(patch, Access::kPush, /*idempotent=*/false));
      if (patched.status != 202) return ErrorFrom(patched, what, Access::kPush);
      ASSIGN_OR_RETURN(*location, UploadLocation(patched, *location));
      int64_t next = offset + length;
      // "Range: 0-<last byte received>": trust the registry's count when it is behind ours.
      if (const auto range = patched.headers.Get("range")) {
        const size_t dash = range->find('-');
        const std::optional<int64_t> last =
            dash == std::string_view::npos ? std::nullopt : ParseInt(range->substr(dash + 1));
        if (last && *last + 1 != next) {
          if (*last + 1 <= offset || *last + 1 > next) {
            return UnavailableError(what + ": registry reports " + std::to_string(*last + 1) +
                                    " bytes received after sending " + std::to_string(next));
          }
          next = *last + 1;
        }
      }
      offset = next;
    }
  }
  HttpRequest put;
  put.method = "PUT";
  put.url = AppendQuery(*location, "digest", blob.digest.str());
  SourceRangeBody body(source, offset, size - offset, progress, &high_water);
  if (!chunked) put.body = &body;
  ASSIGN_OR_RETURN(HttpResponse done, Send(put, Access::kPush, /*idempotent=*/false));
  if (done.status != 201 && done.status != 204 && done.status != 200) {
    return ErrorFrom(done, what, Access::kPush);
  }
  location->clear();  // completed: nothing to cancel
  if (const auto echoed = done.headers.Get("docker-content-digest");
      echoed && *echoed != blob.digest.str()) {
    return DataLossError(what + ": registry stored it as " + std::string(*echoed));
  }
  return Status::Ok();
}

Status RemoteStore::PushBlob(const Descriptor& blob, const BlobSource& source,
                             const ProgressFn& progress) {
  ASSIGN_OR_RETURN(bool exists, BlobExists(blob.digest, Access::kPush));
  if (exists) {
    // The registry vouches for the content of its digest: the source is not read (store.h).
    log::Debug("blob already in registry",
               {{"registry", Describe()}, {"digest", blob.digest.str()}});
    if (progress) progress(blob.size, blob.size);
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(std::unique_ptr<VerifiedSource> verified, VerifiedSource::Open(blob, source));
  std::string location;
  Status status = UploadBlob(blob, verified.get(), progress, &location);
  if (!status.ok() && !location.empty()) {
    // Best effort: free the registry's half-finished upload.
    HttpRequest cancel;
    cancel.method = "DELETE";
    cancel.url = location;
    StatusOr<HttpResponse> ignored = Send(cancel, Access::kPush, /*idempotent=*/false);
    (void)ignored;
  }
  if (status.ok()) {
    log::Debug("blob pushed",
               {{"registry", Describe()}, {"digest", blob.digest.str()}, {"bytes", blob.size}});
  }
  return status;
}

Status RemoteStore::FetchBlob(const Descriptor& blob, const std::filesystem::path& dest,
                              const ProgressFn& progress) {
  std::error_code ec;
  const bool existed = std::filesystem::exists(dest, ec);
  Status status = FetchBlobTo(blob, dest, progress);
  // Leave no empty file behind when nothing could be downloaded (a partial one is kept to resume).
  if (!status.ok() && !existed && std::filesystem::file_size(dest, ec) == 0 && !ec) {
    std::filesystem::remove(dest, ec);
  }
  return status;
}

Status RemoteStore::FetchBlobTo(const Descriptor& blob, const std::filesystem::path& dest,
                                const ProgressFn& progress) {
  const std::string what = "fetch blob " + blob.digest.str() + " from " + Describe();
  Fd fd(::open(dest.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    return InternalError(what + ": cannot open " + dest.string() + ": " + ErrnoText(errno));
  }
  const auto discard = [&](Status status) {
    fd.Close();
    std::error_code ec;
    std::filesystem::remove(dest, ec);
    return status;
  };
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return InternalError(what + ": cannot stat " + dest.string() + ": " + ErrnoText(errno));
  }
  int64_t have = static_cast<int64_t>(st.st_size);
  auto hasher = std::make_unique<Sha256>();
  if (have > blob.size) {
    log::Warn("download target is longer than the blob; starting over",
              {{"path", dest.string()}, {"digest", blob.digest.str()}});
    if (::ftruncate(fd.get(), 0) != 0) {
      return InternalError(what + ": cannot truncate " + dest.string() + ": " + ErrnoText(errno));
    }
    have = 0;
  }
  // Hash the prefix an earlier, interrupted download left behind.
  std::vector<char> buffer(kIoBufferSize);
  for (int64_t done = 0; done < have;) {
    const ssize_t n = ::pread(
        fd.get(), buffer.data(),
        static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(buffer.size()), have - done)),
        static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return InternalError(what + ": cannot read " + dest.string() + ": " + ErrnoText(errno));
    }
    hasher->Update(buffer.data(), static_cast<size_t>(n));
    done += n;
  }
  if (have == blob.size) {
    const Digest digest = hasher->Finish();
    if (digest != blob.digest) {
      return discard(DataLossError(what + ": " + dest.string() + " already has " +
                                   std::to_string(have) + " bytes with digest " + digest.str()));
    }
    if (progress) progress(blob.size, blob.size);
    return fd.Close() == 0 ? Status::Ok() : InternalError(what + ": cannot close the file");
  }
  if (::lseek(fd.get(), static_cast<off_t>(have), SEEK_SET) < 0) {
    return InternalError(what + ": cannot seek " + dest.string() + ": " + ErrnoText(errno));
  }
  if (have > 0) {
    log::Debug("resuming blob download",
               {{"digest", blob.digest.str()}, {"have", have}, {"size", blob.size}});
  }

  BlobFileSink sink(fd.get(), blob, have, std::move(hasher), progress);
  HttpResponse response;
  for (bool ranged = have > 0;; ranged = false) {
    HttpRequest request;
    request.url = RepoUrl("/blobs/" + blob.digest.str());
    request.sink = &sink;
    if (ranged) request.headers.push_back("Range: bytes=" + std::to_string(sink.written()) + "-");
    StatusOr<HttpResponse> sent = SendFollowingRedirects(request, Access::kPull);
    if (!sent.ok()) {
      // A broken transfer keeps what it wrote, for the next attempt to resume.
      if (sent.status().code() == StatusCode::kDataLoss) {
        return discard(sent.status().WithContext(what));
      }
      return sent.status().WithContext(what);
    }
    response = std::move(*sent);
    if (response.status == 416 && ranged) {
      // The registry cannot continue after our prefix: download it all.
      RETURN_IF_ERROR(sink.Restart().WithContext(what));
      continue;
    }
    break;
  }
  if (response.status != 200 && response.status != 206) {
    return ErrorFrom(response, what, Access::kPull);
  }
  if (sink.written() != blob.size) {
    return discard(DataLossError(what + ": got " + std::to_string(sink.written()) +
                                 " bytes, descriptor says " + std::to_string(blob.size)));
  }
  const Digest digest = sink.Finish();
  if (digest != blob.digest) {
    return discard(DataLossError(what + ": content has digest " + digest.str()));
  }
  if (fd.Close() != 0) return InternalError(what + ": cannot close " + dest.string());
  return Status::Ok();
}

StatusOr<std::string> RemoteStore::ReadBlob(const Descriptor& blob) {
  const std::string what = "read blob " + blob.digest.str() + " from " + Describe();
  if (blob.size > options_.max_manifest_bytes) {
    return FailedPreconditionError(what + ": " + std::to_string(blob.size) +
                                   " bytes is more than the in-memory limit of " +
                                   std::to_string(options_.max_manifest_bytes));
  }
  BlobMemorySink sink(blob);
  HttpRequest request;
  request.url = RepoUrl("/blobs/" + blob.digest.str());
  request.sink = &sink;
  StatusOr<HttpResponse> sent = SendFollowingRedirects(request, Access::kPull);
  if (!sent.ok()) return sent.status().WithContext(what);
  if (sent->status != 200) return ErrorFrom(*sent, what, Access::kPull);
  if (static_cast<int64_t>(sink.bytes().size()) != blob.size) {
    return DataLossError(what + ": got " + std::to_string(sink.bytes().size()) +
                         " bytes, descriptor says " + std::to_string(blob.size));
  }
  const Digest digest = Digest::Of(sink.bytes());
  if (digest != blob.digest) return DataLossError(what + ": content has digest " + digest.str());
  return std::move(sink.bytes());
}

StatusOr<Descriptor> RemoteStore::Resolve(std::string_view tag_or_digest) {
  ASSIGN_OR_RETURN(const std::string ref, CheckTagOrDigest(tag_or_digest));
  const std::string what = "resolve " + ref + " in " + Describe();
  HttpRequest request;
  request.method = "HEAD";
  request.url = RepoUrl("/manifests/" + ref);
  request.headers.push_back(kManifestAccept);
  ASSIGN_OR_RETURN(HttpResponse response, Send(request, Access::kPull, /*idempotent=*/true));
  if (response.status != 200) return ErrorFrom(response, what, Access::kPull);
  const auto digest_header = response.headers.Get("docker-content-digest");
  const auto length = ParseInt(response.headers.Get("content-length").value_or(""));
  std::string media_type = MediaTypeOf(response.headers.Get("content-type"));
  if (!digest_header || !length || media_type.empty() || media_type == "application/json") {
    // Not every registry describes a manifest on HEAD; fetching it costs one more request.
    ASSIGN_OR_RETURN(FetchedManifest manifest, FetchManifest(ref));
    return DescribeBytes(manifest.media_type, manifest.bytes);
  }
  StatusOr<Digest> digest = Digest::Parse(*digest_header);
  if (!digest.ok()) return DataLossError(what + ": " + digest.status().message());
  if (ref.rfind("sha256:", 0) == 0 && digest->str() != ref) {
    return DataLossError(what + ": registry answered with digest " + digest->str());
  }
  Descriptor descriptor;
  descriptor.media_type = std::move(media_type);
  descriptor.digest = *std::move(digest);
  descriptor.size = *length;
  return descriptor;
}

StatusOr<FetchedManifest> RemoteStore::FetchManifest(std::string_view tag_or_digest) {
  ASSIGN_OR_RETURN(const std::string ref, CheckTagOrDigest(tag_or_digest));
  const std::string what = "fetch manifest " + ref + " from " + Describe();
  HttpRequest request;
  request.url = RepoUrl("/manifests/" + ref);
  request.headers.push_back(kManifestAccept);
  request.max_body = options_.max_manifest_bytes;
  StatusOr<HttpResponse> sent = Send(request, Access::kPull, /*idempotent=*/true);
  if (!sent.ok() && sent.status().code() == StatusCode::kResourceExhausted) {
    // Same code as a layout store's oversized manifest.
    return FailedPreconditionError(what + ": the manifest is larger than the limit of " +
                                   std::to_string(options_.max_manifest_bytes) + " bytes");
  }
  if (!sent.ok()) return sent.status().WithContext(what);
  HttpResponse& response = *sent;
  if (response.status != 200) return ErrorFrom(response, what, Access::kPull);

  FetchedManifest out;
  out.digest = Digest::Of(response.body);
  if (ref.rfind("sha256:", 0) == 0) {
    if (out.digest.str() != ref) {
      return DataLossError(what + ": content has digest " + out.digest.str());
    }
  } else if (const auto header = response.headers.Get("docker-content-digest")) {
    if (*header != out.digest.str()) {
      return DataLossError(what + ": content has digest " + out.digest.str() +
                           " but the registry says " + std::string(*header));
    }
  }
  out.media_type = MediaTypeOf(response.headers.Get("content-type"));
  if (out.media_type.empty() || out.media_type == "application/json" ||
      out.media_type == "application/octet-stream") {
    const Json json = Json::parse(response.body, nullptr, /*allow_exceptions=*/false);
    if (json.is_object() && json.contains("mediaType") && json["mediaType"].is_string()) {
      out.media_type = json["mediaType"].get<std::string>();
    }
  }
  out.bytes = std::move(response.body);
  return out;
}

Status RemoteStore::PushManifest(std::string_view tag_or_digest, std::string_view bytes,
                                 std::string_view media_type) {
  ASSIGN_OR_RETURN(const std::string ref, CheckTagOrDigest(tag_or_digest));
  const std::string what = "push manifest " + ref + " to " + Describe();
  if (static_cast<int64_t>(bytes.size()) > options_.max_manifest_bytes) {
    return InvalidArgumentError(what + ": " + std::to_string(bytes.size()) +
                                " bytes is more than the manifest limit of " +
                                std::to_string(options_.max_manifest_bytes));
  }
  if (media_type.empty() || media_type.find_first_of("\r\n") != std::string_view::npos) {
    return InvalidArgumentError(what + ": invalid media type");
  }
  const Digest digest = Digest::Of(bytes);
  if (ref.rfind("sha256:", 0) == 0 && digest.str() != ref) {
    return InvalidArgumentError(what + ": the bytes have digest " + digest.str());
  }
  StringBody body(bytes);
  HttpRequest request;
  request.method = "PUT";
  request.url = RepoUrl("/manifests/" + ref);
  request.body = &body;
  request.headers.push_back("Content-Type: " + std::string(media_type));
  ASSIGN_OR_RETURN(HttpResponse response, Send(request, Access::kPush, /*idempotent=*/true));
  if (response.status != 201 && response.status != 200 && response.status != 202) {
    return ErrorFrom(response, what, Access::kPush);
  }
  if (const auto echoed = response.headers.Get("docker-content-digest");
      echoed && *echoed != digest.str()) {
    return DataLossError(what + ": registry stored it as " + std::string(*echoed) + ", expected " +
                         digest.str());
  }
  log::Debug("manifest pushed", {{"registry", Describe()}, {"ref", ref}, {"digest", digest.str()}});
  return Status::Ok();
}

StatusOr<std::vector<std::string>> RemoteStore::ListTags() {
  const std::string what = "list tags of " + Describe();
  std::vector<std::string> tags;
  std::set<std::string> visited;
  std::string url = RepoUrl("/tags/list?n=" + std::to_string(kTagsPageSize));
  for (int page = 0; page < kMaxPages; ++page) {
    if (!visited.insert(url).second) {
      return UnavailableError(what + ": the registry's pagination loops");
    }
    HttpRequest request;
    request.url = url;
    request.max_body = 16 << 20;
    StatusOr<HttpResponse> sent = Send(request, Access::kPull, /*idempotent=*/true);
    if (!sent.ok()) return sent.status().WithContext(what);
    if (sent->status != 200) return ErrorFrom(*sent, what, Access::kPull);
    const Json json = Json::parse(sent->body, nullptr, /*allow_exceptions=*/false);
    if (!json.is_object()) return UnavailableError(what + ": the answer is not a JSON object");
    if (json.contains("tags") && json["tags"].is_array()) {
      for (const Json& tag : json["tags"]) {
        if (tag.is_string()) tags.push_back(tag.get<std::string>());
      }
    }
    const std::optional<std::string> next = NextLink(sent->headers);
    if (!next) {
      std::sort(tags.begin(), tags.end());
      tags.erase(std::unique(tags.begin(), tags.end()), tags.end());
      return tags;
    }
    ASSIGN_OR_RETURN(url, ResolveUrl(url, *next));
  }
  return UnavailableError(what + ": more than " + std::to_string(kMaxPages) + " pages");
}

StatusOr<Index> RemoteStore::ReferrersApi(const Digest& subject) {
  const std::string what = "list referrers of " + subject.str() + " in " + Describe();
  Index merged;
  std::set<std::string> visited;
  std::string url = RepoUrl("/referrers/" + subject.str());
  for (int page = 0; page < kMaxPages; ++page) {
    if (!visited.insert(url).second) {
      return UnavailableError(what + ": the registry's pagination loops");
    }
    HttpRequest request;
    request.url = url;
    request.headers.push_back(kIndexAccept);
    request.max_body = options_.max_manifest_bytes;
    StatusOr<HttpResponse> sent = Send(request, Access::kPull, /*idempotent=*/true);
    if (!sent.ok()) return sent.status().WithContext(what);
    // The distribution spec forbids 404 from a registry that implements the API.
    if (sent->status == 404 || sent->status == 405) {
      return UnimplementedError(reference_.host + " has no referrers API (HTTP " +
                                std::to_string(sent->status) + ")");
    }
    if (sent->status != 200) return ErrorFrom(*sent, what, Access::kPull);
    StatusOr<Index> index = ParseIndex(sent->body);
    if (!index.ok()) return index.status().WithContext(what);
    for (Descriptor& d : index->manifests) merged.manifests.push_back(std::move(d));
    for (auto& [k, v] : index->annotations) merged.annotations.emplace(k, v);
    const std::optional<std::string> next = NextLink(sent->headers);
    if (!next) return merged;
    ASSIGN_OR_RETURN(url, ResolveUrl(url, *next));
  }
  return UnavailableError(what + ": more than " + std::to_string(kMaxPages) + " pages");
}

}  // namespace

StatusOr<std::unique_ptr<Store>> OpenRemoteStore(const Reference& reference,
                                                 const StoreOptions& options) {
  if (reference.kind != Reference::Kind::kRegistry) {
    return InvalidArgumentError("'" + reference.ToString() + "' is not a registry reference");
  }
  if (reference.host.empty()) return InvalidArgumentError("registry reference has no host");
  if (!IsValidRepositoryName(reference.repository)) {
    return InvalidArgumentError("invalid repository name '" + reference.repository + "'");
  }
  if (options.chunk_size < 0 || options.timeout_ms <= 0 || options.max_manifest_bytes <= 0) {
    return InvalidArgumentError(
        "store options: chunk_size must be >= 0, timeout_ms and max_manifest_bytes > 0");
  }
  // A reference has no scheme of its own: HTTPS, except for loopback registries (which rarely
  // have certificates) or when plain HTTP is explicitly allowed. Never a silent downgrade.
  const bool plain = reference.IsLoopback() || options.allow_http;
  const std::string base_url = (plain ? "http://" : "https://") + reference.host;
  if (UrlOrigin(base_url).empty()) {
    return InvalidArgumentError("invalid registry host '" + reference.host + "'");
  }
  HttpClientOptions http_options;
  http_options.insecure_tls = options.insecure_tls;
  http_options.ca_file = options.ca_file;
  http_options.timeout_ms = options.timeout_ms;
  http_options.connect_timeout_ms = std::min<int64_t>(options.timeout_ms, 10'000);
  ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> http, HttpClient::Create(http_options));
  return std::unique_ptr<Store>(new RemoteStore(reference, options, base_url, std::move(http)));
}

}  // namespace edgeloop::registry
