// `edgeloop webapp users add|rm|ls`: the users file of the edge web app that `edgeloop serve
// --web-users FILE` serves (docs/webapp.md). Passwords are read from a file or from stdin, never
// from the command line, and stored as Argon2id hashes.
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "webapp/auth.h"

namespace edgeloop::cli {
namespace {

struct WebappCommandOptions {
  std::string users_file;
  std::string name;
  std::string role = "user";
  std::string password_file;
  bool replace = false;
};

int Fail(const Status& status) {
  std::cerr << "edgeloop webapp: " << status.message() << "\n";
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
      return 2;
    case StatusCode::kNotFound:
      return 4;
    case StatusCode::kAlreadyExists:
      return 3;
    default:
      return 1;
  }
}

// The first line of the file, or of stdin (without echo when it is a terminal).
StatusOr<std::string> ReadPassword(const std::string& file) {
  std::string password;
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in || !std::getline(in, password)) return InvalidArgumentError("cannot read " + file);
  } else {
    const bool tty = ::isatty(0);
    termios saved{};
    if (tty) {
      std::cerr << "Password: " << std::flush;
      ::tcgetattr(0, &saved);
      termios quiet = saved;
      quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      ::tcsetattr(0, TCSANOW, &quiet);
    }
    const bool read = static_cast<bool>(std::getline(std::cin, password));
    if (tty) {
      ::tcsetattr(0, TCSANOW, &saved);
      std::cerr << "\n";
    }
    if (!read) return InvalidArgumentError("no password on stdin");
  }
  if (!password.empty() && password.back() == '\r') password.pop_back();
  RETURN_IF_ERROR(webapp::ValidatePassword(password));
  return password;
}

int Add(const WebappCommandOptions& o) {
  auto role = webapp::RoleFromName(o.role);
  if (!role) return Fail(InvalidArgumentError("--role is user or operator"));
  if (Status status = webapp::ValidateUserName(o.name); !status.ok()) return Fail(status);
  auto file = webapp::UsersFile::Load(o.users_file);
  if (!file.ok()) return Fail(file.status());
  if (file->Find(o.name) != nullptr && !o.replace) {
    return Fail(AlreadyExistsError("the user '" + o.name + "' exists (use --replace)"));
  }
  auto password = ReadPassword(o.password_file);
  if (!password.ok()) return Fail(password.status());
  auto hash = webapp::HashPassword(*password, webapp::HashCost::kInteractive);
  if (!hash.ok()) return Fail(hash.status());
  if (Status status = file->Put({o.name, *role, *hash}, o.replace); !status.ok())
    return Fail(status);
  if (Status status = file->Save(); !status.ok()) return Fail(status);
  std::cout << "added " << o.name << " (" << o.role << ") to " << o.users_file << "\n";
  return 0;
}

int Remove(const WebappCommandOptions& o) {
  auto file = webapp::UsersFile::Load(o.users_file);
  if (!file.ok()) return Fail(file.status());
  if (Status status = file->Remove(o.name); !status.ok()) return Fail(status);
  if (Status status = file->Save(); !status.ok()) return Fail(status);
  std::cout << "removed " << o.name << "\n";
  return 0;
}

int List(const WebappCommandOptions& o) {
  auto file = webapp::UsersFile::Load(o.users_file);
  if (!file.ok()) return Fail(file.status());
  for (const webapp::User& user : file->users()) {
    std::cout << user.name << "\t" << webapp::RoleName(user.role) << "\n";
  }
  return 0;
}

}  // namespace

Command AddWebappCommand(CLI::App& root) {
  CLI::App* app = root.add_subcommand(
      "webapp", "The edge web app of `serve`: manage its users file (see docs/webapp.md)");
  app->require_subcommand(1);
  auto options = std::make_shared<WebappCommandOptions>();
  CLI::App* users = app->add_subcommand("users", "Users of the web app (name, role, password)");
  users->require_subcommand(1);
  auto run = std::make_shared<std::function<int()>>();

  CLI::App* add = users->add_subcommand(
      "add", "Add a user (password from --password-file, else the first line of stdin)");
  add->add_option("name", options->name, "User name: letters, digits and . _ @ -")->required();
  add->add_option("--users-file", options->users_file, "The users file (created if missing)")
      ->required();
  add->add_option("--role", options->role,
                  "user (score, feedback) or operator (also the operator "
                  "view)")
      ->capture_default_str()
      ->check(CLI::IsMember({"user", "operator"}));
  add->add_option("--password-file", options->password_file,
                  "File whose first line is the password (8 characters or more)")
      ->check(CLI::ExistingFile);
  add->add_flag("--replace", options->replace, "Replace an existing user's role and password");
  add->callback([=] { *run = [=] { return Add(*options); }; });

  CLI::App* rm = users->add_subcommand("rm", "Remove a user");
  rm->add_option("name", options->name, "User name")->required();
  rm->add_option("--users-file", options->users_file, "The users file")->required();
  rm->callback([=] { *run = [=] { return Remove(*options); }; });

  CLI::App* ls = users->add_subcommand("ls", "List users and roles (never hashes)");
  ls->add_option("--users-file", options->users_file, "The users file")->required();
  ls->callback([=] { *run = [=] { return List(*options); }; });

  return {app, [run] { return *run ? (*run)() : 2; }};
}

}  // namespace edgeloop::cli
