#include "hub/test_postgres.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

namespace edgeloop::hub::testing {
namespace {

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

// Forks and execs `argv`, as the postgres user when we are root. Output goes to `log`.
StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log) {
  uid_t uid = 0;
  gid_t gid = 0;
  const bool drop = ::geteuid() == 0;
  if (drop) {
    const passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr)
      return FailedPreconditionError("running as root and there is no postgres user");
    uid = pw->pw_uid;
    gid = pw->pw_gid;
  }
  const pid_t pid = ::fork();
  if (pid < 0) return InternalError("fork failed");
  if (pid == 0) {
    if (drop && (::setgid(gid) != 0 || ::setuid(uid) != 0)) ::_exit(126);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

Status Chown(const std::filesystem::path& path) {
  if (::geteuid() != 0) return Status::Ok();
  const passwd* pw = ::getpwnam("postgres");
  if (pw == nullptr) return FailedPreconditionError("no postgres user");
  if (::chown(path.c_str(), pw->pw_uid, pw->pw_gid) != 0) return InternalError("chown failed");
  return Status::Ok();
}

}  // namespace

std::string FindPostgresBinDir() {
  std::error_code ec;
  std::vector<std::filesystem::path> found;
  for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    if (std::filesystem::exists(entry.path() / "bin/postgres") &&
        std::filesystem::exists(entry.path() / "bin/initdb")) {
      found.push_back(entry.path() / "bin");
    }
  }
  if (found.empty()) return "";
  std::sort(found.begin(), found.end());
  return found.back().string();
}

StatusOr<std::unique_ptr<TestPostgres>> TestPostgres::Start(bool durable) {
  std::unique_ptr<TestPostgres> pg(new TestPostgres());
  pg->bin_dir_ = FindPostgresBinDir();
  if (pg->bin_dir_.empty())
    return NotFoundError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin)");
  RETURN_IF_ERROR(Chown(pg->dir_.path()));
  const std::string data = (pg->dir_.path() / "data").string();
  const std::string log = (pg->dir_.path() / "postgres.log").string();
  ASSIGN_OR_RETURN(pid_t initdb,
                   Spawn({pg->bin_dir_ + "/initdb", "-D", data, "-U", "postgres", "-A", "trust",
                          "-E", "UTF8", "--no-sync", "--no-instructions"},
                         log));
  int status = 0;
  ::waitpid(initdb, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return InternalError("initdb failed; see " + log);
  }
  for (int attempt = 0; attempt < 5; ++attempt) {
    pg->port_ = FreePort();
    std::vector<std::string> argv = {pg->bin_dir_ + "/postgres",
                                     "-D",
                                     data,
                                     "-p",
                                     std::to_string(pg->port_),
                                     "-k",
                                     pg->dir_.path().string(),
                                     "-c",
                                     "listen_addresses=127.0.0.1",
                                     "-c",
                                     "max_connections=200"};
    if (!durable) {
      for (const char* setting : {"fsync=off", "synchronous_commit=off", "full_page_writes=off"}) {
        argv.push_back("-c");
        argv.push_back(setting);
      }
    }
    ASSIGN_OR_RETURN(pg->pid_, Spawn(argv, log));
    const std::string conninfo =
        "host=127.0.0.1 port=" + std::to_string(pg->port_) + " user=postgres dbname=postgres";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    bool exited = false;
    while (std::chrono::steady_clock::now() < deadline) {
      if (PQping(conninfo.c_str()) == PQPING_OK) return pg;
      if (::waitpid(pg->pid_, nullptr, WNOHANG) == pg->pid_) {
        exited = true;  // probably the port was taken in between: try another
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!exited) return UnavailableError("PostgreSQL did not start within 30 s; see " + log);
    pg->pid_ = -1;
  }
  return UnavailableError("PostgreSQL would not start; see " + log);
}

TestPostgres::~TestPostgres() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGINT);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

std::string TestPostgres::Url(const std::string& database) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

StatusOr<std::string> TestPostgres::CreateDatabase(const std::string& name) {
  PGconn* conn = PQconnectdb(Url("postgres").c_str());
  std::unique_ptr<PGconn, void (*)(PGconn*)> guard(conn, PQfinish);
  if (PQstatus(conn) != CONNECTION_OK) return UnavailableError(PQerrorMessage(conn));
  const std::string sql = "CREATE DATABASE \"" + name + "\"";
  std::unique_ptr<PGresult, void (*)(PGresult*)> result(PQexec(conn, sql.c_str()), PQclear);
  if (PQresultStatus(result.get()) != PGRES_COMMAND_OK) {
    return InternalError(PQresultErrorMessage(result.get()));
  }
  return Url(name);
}

}  // namespace edgeloop::hub::testing
