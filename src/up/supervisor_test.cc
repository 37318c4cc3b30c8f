#include "up/supervisor.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <thread>

#include "common/test_util.h"

namespace edgeloop::up {
namespace {

using std::chrono::milliseconds;

ChildSpec Shell(const std::string& name, const std::string& script,
                const std::filesystem::path& dir) {
  ChildSpec spec;
  spec.name = name;
  spec.argv = {"/bin/sh", "-c", script};
  spec.log = dir / (name + ".log");
  return spec;
}

bool Alive(pid_t pid) { return ::kill(pid, 0) == 0; }

TEST(SupervisorTest, WaitsForTheListeningLineAndStopsWithSigterm) {
  testing::TempDir dir;
  // Signals blocked in the parent (as `edgeloop up` blocks them) must not stay blocked in the
  // child, or SIGTERM would never stop it.
  sigset_t block, previous;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &previous);
  Supervisor supervisor;
  auto index = supervisor.Start(
      Shell("role", "echo starting; echo 'I listening address=127.0.0.1 port=4321'; exec sleep 30",
            dir.path()));
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  ASSERT_TRUE(index.ok());
  auto port = supervisor.WaitListening(*index, milliseconds(10'000), nullptr);
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_EQ(*port, 4321);
  const pid_t pid = supervisor.pid(*index);
  EXPECT_FALSE(supervisor.Exited().has_value());
  const auto started = std::chrono::steady_clock::now();
  supervisor.StopAll(milliseconds(20'000));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  EXPECT_FALSE(Alive(pid));
}

TEST(SupervisorTest, KillsAChildThatIgnoresSigterm) {
  testing::TempDir dir;
  Supervisor supervisor;
  auto index = supervisor.Start(Shell(
      "stubborn", "trap '' TERM; echo 'listening port=1'; while :; do sleep 1; done", dir.path()));
  ASSERT_TRUE(index.ok());
  ASSERT_TRUE(supervisor.WaitListening(*index, milliseconds(10'000), nullptr).ok());
  const pid_t pid = supervisor.pid(*index);
  supervisor.StopAll(milliseconds(200));
  EXPECT_FALSE(Alive(pid));
}

TEST(SupervisorTest, ReportsAChildThatExitsBeforeListening) {
  testing::TempDir dir;
  Supervisor supervisor;
  auto index = supervisor.Start(Shell("broken", "echo 'bad flag --nope' >&2; exit 3", dir.path()));
  ASSERT_TRUE(index.ok());
  auto port = supervisor.WaitListening(*index, milliseconds(10'000), nullptr);
  ASSERT_EQ(port.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(port.status().message().find("broken exited with code 3"), std::string::npos)
      << port.status().message();
  EXPECT_NE(port.status().message().find("bad flag --nope"), std::string::npos);
}

TEST(SupervisorTest, RunReturnsTheExitCodeAndCapturesStdout) {
  testing::TempDir dir;
  Supervisor supervisor;
  ChildSpec spec = Shell("step", "echo token-123; echo noise >&2; exit 2", dir.path());
  spec.stdout_file = dir.path() / "out.txt";
  auto code = supervisor.Run(spec, milliseconds(10'000), nullptr);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 2);
  std::ifstream out(spec.stdout_file);
  std::string line;
  std::getline(out, line);
  EXPECT_EQ(line, "token-123");
  EXPECT_NE(Supervisor::Tail(spec.log).find("noise"), std::string::npos);
}

TEST(SupervisorTest, RunTimesOutAndCancels) {
  testing::TempDir dir;
  Supervisor supervisor;
  auto timed_out =
      supervisor.Run(Shell("slow", "exec sleep 30", dir.path()), milliseconds(100), nullptr);
  EXPECT_EQ(timed_out.status().code(), StatusCode::kDeadlineExceeded);
  int polls = 0;
  auto cancelled = supervisor.Run(Shell("slow", "exec sleep 30", dir.path()), milliseconds(30'000),
                                  [&] { return ++polls > 2; });
  EXPECT_EQ(cancelled.status().code(), StatusCode::kCancelled);
}

TEST(SupervisorTest, ExitedNamesTheRoleAndCode) {
  testing::TempDir dir;
  Supervisor supervisor;
  ASSERT_TRUE(supervisor.Start(Shell("quick", "exit 5", dir.path())).ok());
  std::optional<std::string> exited;
  for (int i = 0; i < 200 && !exited; ++i) {
    exited = supervisor.Exited();
    if (!exited) std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_TRUE(exited.has_value());
  EXPECT_EQ(*exited, "quick exited with code 5");
}

}  // namespace
}  // namespace edgeloop::up
