// A real PostgreSQL server for tests and benchmarks: Debian's initdb and postgres from
// /usr/lib/postgresql/<version>/bin, a cluster in a temp dir, listening on 127.0.0.1 on a free
// port, stopped by PID. When run as root the server runs as the `postgres` user (PostgreSQL
// refuses root). Never linked into the binary.
#ifndef EDGELOOP_HUB_TEST_POSTGRES_H_
#define EDGELOOP_HUB_TEST_POSTGRES_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "common/status.h"
#include "common/test_util.h"

namespace edgeloop::hub::testing {

class TestPostgres {
 public:
  // kNotFound when PostgreSQL is not installed (tests then skip); other errors when it would not
  // start. `durable`: fsync and synchronous_commit on (benchmarks); off for unit tests.
  static StatusOr<std::unique_ptr<TestPostgres>> Start(bool durable = false);
  ~TestPostgres();  // SIGINT (fast shutdown), SIGKILL after 20 s; waits for the process

  int port() const { return port_; }
  const std::string& bin_dir() const { return bin_dir_; }
  // Creates a database and returns its URL: postgresql://postgres@127.0.0.1:PORT/NAME
  StatusOr<std::string> CreateDatabase(const std::string& name);
  std::string Url(const std::string& database) const;

 private:
  TestPostgres() = default;
  edgeloop::testing::TempDir dir_{"hub_postgres"};
  std::string bin_dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// The folder holding initdb and postgres, or "" when PostgreSQL is not installed.
std::string FindPostgresBinDir();

}  // namespace edgeloop::hub::testing

#endif  // EDGELOOP_HUB_TEST_POSTGRES_H_
