// Tokens and who may do what.
//
// A token is "elh_" plus 32 random bytes in base64url; the store keeps only its SHA-256. Roles:
//   site   uploads its own site's events (POST /api/v1/ingest) and reads nothing
//   read   reads every query endpoint (people, dashboards, BI exports)
//   admin  reads, and manages sites and tokens over the API
#ifndef EDGELOOP_HUB_AUTH_H_
#define EDGELOOP_HUB_AUTH_H_

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/clock.h"
#include "common/status.h"
#include "hub/store.h"

namespace edgeloop::hub {

// A fresh token from OpenSSL's CSPRNG.
StatusOr<std::string> NewToken();
// Lower-case hex SHA-256 of the token.
std::string HashToken(std::string_view token);

struct Principal {
  std::string name;
  Role role = Role::kRead;
  std::string site;  // role kSite
};

// Resolves `Authorization: Bearer <token>` headers to principals. Lookups are cached for
// `cache_ttl` (so a revoked or expired token stops working within that time; expiry itself is
// checked on every call). Thread-safe.
class Authenticator {
 public:
  Authenticator(Store* store, Clock* clock, std::chrono::milliseconds cache_ttl)
      : store_(store), clock_(clock), ttl_(cache_ttl) {}

  // kUnauthenticated for a missing, malformed, unknown, revoked or expired token; kUnavailable
  // when the store cannot be read.
  StatusOr<Principal> Authenticate(std::string_view authorization_header);

 private:
  struct Entry {
    TokenRecord record;
    Clock::SteadyTime fetched;
  };
  Store* store_;
  Clock* clock_;
  const std::chrono::milliseconds ttl_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> cache_;  // by hash; GUARDED_BY(mu_)
};

}  // namespace edgeloop::hub

#endif  // EDGELOOP_HUB_AUTH_H_
