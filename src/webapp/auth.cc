#include "webapp/auth.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace edgeloop::webapp {
namespace {

bool SodiumReady() {
  static const int result = sodium_init();
  return result >= 0;
}

}  // namespace

std::string_view RoleName(Role role) { return role == Role::kOperator ? "operator" : "user"; }

std::optional<Role> RoleFromName(std::string_view name) {
  if (name == "operator") return Role::kOperator;
  if (name == "user") return Role::kUser;
  return std::nullopt;
}

StatusOr<std::string> HashPassword(std::string_view password, HashCost cost) {
  if (!SodiumReady()) return InternalError("libsodium failed to initialise");
  char out[crypto_pwhash_STRBYTES];
  const unsigned long long ops =
      cost == HashCost::kMinimal ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_OPSLIMIT_INTERACTIVE;
  const size_t mem =
      cost == HashCost::kMinimal ? crypto_pwhash_MEMLIMIT_MIN : crypto_pwhash_MEMLIMIT_INTERACTIVE;
  if (crypto_pwhash_str(out, password.data(), password.size(), ops, mem) != 0) {
    return InternalError("cannot hash the password (out of memory)");
  }
  return std::string(out);
}

bool VerifyPassword(std::string_view password, const std::string& hash) {
  if (!SodiumReady() || hash.empty()) return false;
  return crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
}

Status ValidateUserName(std::string_view name) {
  if (name.empty() || name.size() > 64) {
    return InvalidArgumentError("a user name has 1 to 64 characters");
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '@' || c == '-';
    if (!ok) {
      return InvalidArgumentError("a user name may hold letters, digits and . _ @ - only");
    }
  }
  return Status::Ok();
}

Status ValidatePassword(std::string_view password) {
  if (password.size() < 8) return InvalidArgumentError("a password has at least 8 characters");
  if (password.size() > 1024) return InvalidArgumentError("a password has at most 1024 bytes");
  return Status::Ok();
}

StatusOr<UsersFile> UsersFile::Load(const std::filesystem::path& path) {
  UsersFile file;
  file.path_ = path;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return file;
  std::ifstream in(path);
  if (!in) return UnavailableError("cannot read the users file " + path.string());
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const size_t first = line.find(':');
    const size_t second = first == std::string::npos ? first : line.find(':', first + 1);
    const std::string where = path.string() + " line " + std::to_string(number);
    if (second == std::string::npos) {
      return InvalidArgumentError(where + ": expected name:role:hash");
    }
    User user;
    user.name = line.substr(0, first);
    const std::string role = line.substr(first + 1, second - first - 1);
    user.password_hash = line.substr(second + 1);
    if (Status status = ValidateUserName(user.name); !status.ok()) {
      return InvalidArgumentError(where + ": " + status.message());
    }
    auto parsed = RoleFromName(role);
    if (!parsed) return InvalidArgumentError(where + ": role must be user or operator");
    user.role = *parsed;
    if (user.password_hash.rfind("$argon2", 0) != 0) {
      return InvalidArgumentError(where + ": the password hash is not an Argon2 string");
    }
    if (file.Find(user.name) != nullptr) {
      return InvalidArgumentError(where + ": the user '" + user.name + "' appears twice");
    }
    file.users_.push_back(std::move(user));
  }
  return file;
}

const User* UsersFile::Find(std::string_view name) const {
  for (const User& user : users_) {
    if (user.name == name) return &user;
  }
  return nullptr;
}

Status UsersFile::Put(User user, bool replace) {
  RETURN_IF_ERROR(ValidateUserName(user.name));
  for (User& existing : users_) {
    if (existing.name != user.name) continue;
    if (!replace) {
      return AlreadyExistsError("the user '" + user.name + "' exists (use --replace)");
    }
    existing = std::move(user);
    return Status::Ok();
  }
  users_.push_back(std::move(user));
  return Status::Ok();
}

Status UsersFile::Remove(std::string_view name) {
  auto it = std::find_if(users_.begin(), users_.end(),
                         [&](const User& user) { return user.name == name; });
  if (it == users_.end()) return NotFoundError("no user '" + std::string(name) + "'");
  users_.erase(it);
  return Status::Ok();
}

Status UsersFile::Save() const {
  std::string text = "# edgeloop web app users: name:role:argon2id hash (edgeloop webapp users)\n";
  for (const User& user : users_) {
    text += user.name + ":" + std::string(RoleName(user.role)) + ":" + user.password_hash + "\n";
  }
  const std::filesystem::path tmp = path_.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return UnavailableError("cannot write " + tmp.string());
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) {
      ::close(fd);
      return UnavailableError("cannot write " + tmp.string());
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return UnavailableError("cannot sync " + tmp.string());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path_, ec);
  if (ec) return UnavailableError("cannot replace " + path_.string() + ": " + ec.message());
  // The rename itself is durable once the folder is synced.
  const std::filesystem::path dir = path_.has_parent_path() ? path_.parent_path() : ".";
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

SessionStore::SessionStore(Clock* clock, std::chrono::seconds idle_timeout, size_t max_sessions)
    : clock_(clock),
      idle_timeout_(idle_timeout),
      max_sessions_(std::max<size_t>(1, max_sessions)) {}

Session SessionStore::Create(std::string user, Role role) {
  Session session;
  session.id = RandomHex(32);
  session.csrf = RandomHex(32);
  session.user = std::move(user);
  session.role = role;
  session.last_used = clock_->Now();
  std::lock_guard<std::mutex> lock(mu_);
  // Expired sessions go first, then the least recently used while over the cap.
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    it = session.last_used - it->second.last_used > idle_timeout_ ? sessions_.erase(it)
                                                                  : std::next(it);
  }
  while (sessions_.size() >= max_sessions_) {
    auto oldest = std::min_element(sessions_.begin(), sessions_.end(), [](auto& a, auto& b) {
      return a.second.last_used < b.second.last_used;
    });
    sessions_.erase(oldest);
  }
  sessions_.emplace(session.id, session);
  return session;
}

std::optional<Session> SessionStore::Find(std::string_view id) {
  if (id.empty()) return std::nullopt;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  const Clock::SteadyTime now = clock_->Now();
  if (now - it->second.last_used > idle_timeout_) {
    sessions_.erase(it);
    return std::nullopt;
  }
  it->second.last_used = now;
  return it->second;
}

void SessionStore::Remove(std::string_view id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = sessions_.find(id); it != sessions_.end()) sessions_.erase(it);
}

size_t SessionStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.size();
}

std::string RandomHex(size_t bytes) {
  SodiumReady();
  std::vector<unsigned char> raw(bytes);
  randombytes_buf(raw.data(), raw.size());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  for (unsigned char c : raw) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  unsigned char difference = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    const char other = i < b.size() ? b[i] : '\0';
    difference |= static_cast<unsigned char>(a[i] ^ other);
  }
  return difference == 0;
}

std::string_view CookieValue(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    const size_t end = header.find(';');
    std::string_view pair = header.substr(0, end);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    const size_t eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == name) return pair.substr(eq + 1);
    if (end == std::string_view::npos) break;
    header.remove_prefix(end + 1);
  }
  return {};
}

}  // namespace edgeloop::webapp
