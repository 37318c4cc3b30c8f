// Who may use the web app: the users file (names, roles and Argon2id password hashes from
// libsodium's crypto_pwhash_str), sessions with their CSRF tokens, and the cookie.
//
// The users file is text, one user a line: `name:role:$argon2id$...`; `#` starts a comment.
// Roles: `user` (score, give feedback, see recent anomalies) and `operator` (also the operator
// view). The file is rewritten atomically (temporary file, fsync, rename), so a crash leaves the
// old or the new file.
#ifndef EDGELOOP_WEBAPP_AUTH_H_
#define EDGELOOP_WEBAPP_AUTH_H_

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace edgeloop::webapp {

enum class Role { kUser, kOperator };
std::string_view RoleName(Role role);  // "user", "operator"
std::optional<Role> RoleFromName(std::string_view name);

struct User {
  std::string name;
  Role role = Role::kUser;
  std::string password_hash;  // crypto_pwhash_str's encoded string
};

// How hard hashing is: kInteractive (libsodium's interactive limits: 64 MiB, about 0.1 s here)
// for real users; kMinimal only for unit tests.
enum class HashCost { kInteractive, kMinimal };

// A hash of `password` to store; kInternal when libsodium fails (out of memory).
StatusOr<std::string> HashPassword(std::string_view password, HashCost cost);
// True when `password` matches `hash` (constant time in libsodium).
bool VerifyPassword(std::string_view password, const std::string& hash);

// Names: 1 to 64 characters of [A-Za-z0-9._@-]. Passwords: 8 to 1024 bytes.
Status ValidateUserName(std::string_view name);
Status ValidatePassword(std::string_view password);

// The users file. Load() reads it; Save() writes it atomically. Not thread-safe: the CLI edits it,
// the server loads it once.
class UsersFile {
 public:
  // A missing file is an empty list (so `users add` can create it); a malformed line is
  // kInvalidArgument naming the line.
  static StatusOr<UsersFile> Load(const std::filesystem::path& path);

  const std::vector<User>& users() const { return users_; }
  const User* Find(std::string_view name) const;
  // Adds or replaces (kAlreadyExists unless `replace`).
  Status Put(User user, bool replace);
  // kNotFound when absent.
  Status Remove(std::string_view name);
  Status Save() const;

 private:
  std::filesystem::path path_;
  std::vector<User> users_;
};

struct Session {
  std::string id;    // the cookie value: 32 random bytes, hex
  std::string csrf;  // sent back in X-CSRF-Token on every state-changing request
  std::string user;
  Role role = Role::kUser;
  Clock::SteadyTime last_used;
};

// Sessions in memory (a restart logs everyone out). Idle sessions expire after `idle_timeout`;
// beyond `max_sessions` the least recently used one goes. Thread-safe.
class SessionStore {
 public:
  SessionStore(Clock* clock, std::chrono::seconds idle_timeout, size_t max_sessions);

  Session Create(std::string user, Role role);
  // The live session with this id (its idle time restarts), or nullopt.
  std::optional<Session> Find(std::string_view id);
  void Remove(std::string_view id);
  size_t size() const;

 private:
  Clock* clock_;
  const std::chrono::seconds idle_timeout_;
  const size_t max_sessions_;
  mutable std::mutex mu_;
  std::map<std::string, Session, std::less<>> sessions_;  // GUARDED_BY(mu_)
};

// Hex of `bytes` random bytes (libsodium randombytes_buf).
std::string RandomHex(size_t bytes);
// Equality that takes the same time wherever the strings differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b);
// The value of cookie `name` in a Cookie header, or "".
std::string_view CookieValue(std::string_view header, std::string_view name);

}  // namespace edgeloop::webapp

#endif  // EDGELOOP_WEBAPP_AUTH_H_
