// A real redis-server for tests: started on 127.0.0.1 on a free port with its data in a temp
// dir (AOF on, appendfsync always), stopped by PID. Tests only.
#ifndef EDGELOOP_QUEUE_TEST_REDIS_H_
#define EDGELOOP_QUEUE_TEST_REDIS_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "common/status.h"
#include "common/test_util.h"

namespace edgeloop::queue::testing {

class TestRedis {
 public:
  // kNotFound when redis-server is not installed (tests then skip); other errors when it would
  // not start.
  static StatusOr<std::unique_ptr<TestRedis>> Start();
  ~TestRedis();  // SIGTERM, then SIGKILL after 10 s; waits for the process

  int port() const { return port_; }
  // "redis://127.0.0.1:PORT/<stream>"
  std::string Url(const std::string& stream) const;

 private:
  TestRedis() = default;
  edgeloop::testing::TempDir dir_{"queue_redis"};
  int port_ = 0;
  pid_t pid_ = -1;
};

// The path of redis-server, or "" when it is not installed.
std::string FindRedisServer();

}  // namespace edgeloop::queue::testing

#endif  // EDGELOOP_QUEUE_TEST_REDIS_H_
