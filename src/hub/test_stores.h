// The two store backends as gtest type parameters, so that one typed suite runs over both.
// Tests only.
#ifndef EDGELOOP_HUB_TEST_STORES_H_
#define EDGELOOP_HUB_TEST_STORES_H_

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>

#include "common/test_util.h"
#include "hub/store.h"
#include "hub/test_postgres.h"

namespace edgeloop::hub::testing {

struct SqliteBackend {
  static constexpr const char* kName = "sqlite";
  // A fresh database URL, or "" with `skip` set.
  std::string NewUrl(std::string* skip) {
    (void)skip;
    return "sqlite://" + (dir.path() / ("hub" + std::to_string(counter++) + ".db")).string();
  }
  edgeloop::testing::TempDir dir{"hub_sqlite"};
  int counter = 0;
};

struct PostgresBackend {
  static constexpr const char* kName = "postgresql";
  std::string NewUrl(std::string* skip) {
    static StatusOr<std::unique_ptr<TestPostgres>>* server =
        new StatusOr<std::unique_ptr<TestPostgres>>(TestPostgres::Start());
    static struct Stopper {
      ~Stopper() { delete server; }
    } stopper;
    if (!server->ok()) {
      *skip = server->status().ToString();
      return "";
    }
    static std::atomic<int> counter{0};
    auto url = (**server)->CreateDatabase("hub_" + std::to_string(::getpid()) + "_" +
                                          std::to_string(counter++));
    if (!url.ok()) {
      *skip = url.status().ToString();
      return "";
    }
    return *url;
  }
};

using Backends = ::testing::Types<SqliteBackend, PostgresBackend>;

// A fresh store of `Backend` for each test (skipped when PostgreSQL is not installed, failed
// when it does not start). Fixtures derive from it and add their sites in their own SetUp.
template <typename Backend>
class StoreFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string skip;
    url_ = backend_.NewUrl(&skip);
    if (url_.empty()) {
      if (skip.rfind("NOT_FOUND", 0) == 0) GTEST_SKIP() << skip;
      FAIL() << skip;
    }
    auto store = Store::Open(url_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  // Whether SetUp opened a store (false: skipped or failed; the derived SetUp returns).
  bool Opened() const { return store_ != nullptr; }

  Backend backend_;
  std::string url_;
  std::unique_ptr<Store> store_;
};

struct BackendNames {
  template <typename T>
  static std::string GetName(int) {
    return T::kName;
  }
};

}  // namespace edgeloop::hub::testing

#endif  // EDGELOOP_HUB_TEST_STORES_H_
