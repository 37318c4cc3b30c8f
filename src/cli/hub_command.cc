// `edgeloop hub ...`: the cloud hub (ingest, global store, query API, dashboard) and its
// administration: sites, tokens and schema migrations. docs/hub.md is the reference.
#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/clock.h"
#include "common/logging.h"
#include "hub/auth.h"
#include "hub/hub.h"
#include "hub/store.h"

namespace edgeloop::cli {
namespace {

using Json = nlohmann::json;

struct HubCliOptions {
  std::string store;
  bool json = false;
  std::string name;
  std::string role = "read";
  std::string site;
  int64_t expires_days = 0;
};

int Fail(const Status& status) {
  std::cerr << "edgeloop hub: " << status.message() << "\n";
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kAlreadyExists:
      return 2;
    case StatusCode::kNotFound:
      return 4;
    case StatusCode::kUnavailable:
      return 5;
    default:
      return 1;
  }
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

StatusOr<std::unique_ptr<hub::Store>> OpenStore(const HubCliOptions& o, bool migrate) {
  if (o.store.empty()) {
    return InvalidArgumentError("--store is required (sqlite://FILE or postgresql://...)");
  }
  return hub::Store::Open(o.store, {.pool_size = 1, .migrate = migrate});
}

// Creates a token and prints it once; only its hash is stored.
Status IssueToken(hub::Store& store, const HubCliOptions& o, hub::Role role,
                  const std::string& name, const std::string& site) {
  ASSIGN_OR_RETURN(std::string token, hub::NewToken());
  hub::TokenRecord record{name, role, site, NowMs(), std::nullopt, std::nullopt};
  if (o.expires_days > 0) record.expires_at = record.created_at + o.expires_days * 86'400'000;
  RETURN_IF_ERROR(store.AddToken(hub::HashToken(token), record));
  if (o.json) {
    Json out = {{"name", name}, {"role", std::string(hub::RoleName(role))}, {"token", token}};
    if (!site.empty()) out["site"] = site;
    if (record.expires_at) out["expires_at"] = *record.expires_at;
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << token << "\n";
    std::cerr << "token '" << name << "' (" << hub::RoleName(role)
              << (site.empty() ? "" : ", site " + site) << "): shown once, store it now\n";
  }
  return Status::Ok();
}

std::string FormatMs(std::optional<int64_t> ms) {
  if (!ms) return "-";
  return FormatRfc3339(Clock::WallTime(std::chrono::milliseconds(*ms)));
}

}  // namespace

Command AddHubCommand(CLI::App& root) {
  CLI::App* app = root.add_subcommand(
      "hub", "The cloud hub: ingest from sites, global store, query API, dashboard");
  app->require_subcommand(1);
  auto o = std::make_shared<HubCliOptions>();
  auto add_store = [o](CLI::App* sub) {
    sub->add_option("--store", o->store, "sqlite://FILE or postgresql://USER@HOST:PORT/DB")
        ->envname("EDGELOOP_HUB_STORE");
  };

  auto options = std::make_shared<hub::HubOptions>();
  auto drain_ms = std::make_shared<int64_t>(30'000);
  CLI::App* serve =
      app->add_subcommand("serve", "Serve the ingest and query API and the dashboard");
  add_store(serve);
  options->http.port = 8300;
  serve->add_option("--http-address", options->http.address, "Address to listen on")
      ->capture_default_str();
  serve->add_option("--http-port", options->http.port, "Port; 0 picks a free one")
      ->capture_default_str();
  serve->add_option("--http-threads", options->http.threads, "I/O threads (0: one per CPU)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  serve
      ->add_option("--workers", options->handler.workers,
                   "Threads writing to and reading the store")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  serve
      ->add_option("--store-connections", options->store_connections,
                   "Database connections (at least --workers)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  serve
      ->add_option("--max-queue", options->handler.max_queue,
                   "Requests waiting for a worker before uploads get 429 and queries 503")
      ->capture_default_str();
  serve
      ->add_option("--max-body-bytes", options->http.max_body_bytes,
                   "Largest request body as sent (413)")
      ->capture_default_str();
  serve
      ->add_option("--max-batch-bytes", options->handler.max_batch_bytes,
                   "Largest decoded upload (413)")
      ->capture_default_str();
  serve->add_option("--max-events", options->handler.max_events, "Most events in one upload (413)")
      ->capture_default_str();
  serve->add_option("--max-connections", options->http.max_connections, "Open connections allowed")
      ->capture_default_str();
  CLI::Option* tls_cert =
      serve
          ->add_option("--tls-cert", options->http.tls.cert_file,
                       "Serve HTTPS with this PEM certificate (then its chain); reloaded when the "
                       "file changes or on SIGHUP")
          ->check(CLI::ExistingFile);
  CLI::Option* tls_key =
      serve
          ->add_option("--tls-key", options->http.tls.key_file, "The certificate's PEM private key")
          ->check(CLI::ExistingFile);
  serve
      ->add_option("--tls-client-ca", options->http.tls.client_ca_file,
                   "Require client certificates signed by these PEM CAs (mutual TLS)")
      ->check(CLI::ExistingFile)
      ->needs(tls_cert);
  tls_cert->needs(tls_key);
  tls_key->needs(tls_cert);
  serve
      ->add_option("--drain-timeout-ms", *drain_ms,
                   "On SIGTERM, how long requests may take to finish")
      ->capture_default_str();
  serve
      ->add_option("--schedule", options->schedule_file,
                   "Retraining schedule (YAML, docs/hub.md): cron times and triggers per model")
      ->check(CLI::ExistingFile);
  serve
      ->add_option("--time-scale", options->time_scale,
                   "Run the scheduler's clock this many times faster (demos)")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 1e6));
  auto no_migrate = std::make_shared<bool>(false);
  serve->add_flag("--no-migrate", *no_migrate,
                  "Refuse to start on an old schema instead of migrating it");

  CLI::App* migrate =
      app->add_subcommand("migrate", "Bring the store's schema to this build's version");
  add_store(migrate);
  migrate->add_flag("--json", o->json, "Print JSON");

  CLI::App* site = app->add_subcommand("site", "Sites");
  site->require_subcommand(1);
  CLI::App* site_add = site->add_subcommand("add", "Add a site and print its upload token");
  add_store(site_add);
  site_add->add_option("name", o->name, "Site name: letters, digits, '.', '_', '-'")->required();
  site_add->add_option("--expires-days", o->expires_days, "Token lifetime (0: no expiry)");
  site_add->add_flag("--json", o->json, "Print JSON");
  CLI::App* site_ls = site->add_subcommand("ls", "List sites with their last upload");
  add_store(site_ls);
  site_ls->add_flag("--json", o->json, "Print JSON");

  CLI::App* token = app->add_subcommand("token", "Tokens for people, dashboards and sites");
  token->require_subcommand(1);
  CLI::App* token_add = token->add_subcommand("add", "Create a token and print it (once)");
  add_store(token_add);
  token_add->add_option("name", o->name, "A name for the token (who or what uses it)")->required();
  token_add->add_option("--role", o->role, "read, admin or site")
      ->capture_default_str()
      ->check(CLI::IsMember({"read", "admin", "site"}));
  token_add->add_option("--site", o->site, "The site of a site token");
  token_add->add_option("--expires-days", o->expires_days, "Lifetime (0: no expiry)");
  token_add->add_flag("--json", o->json, "Print JSON");
  CLI::App* token_ls = token->add_subcommand("ls", "List tokens (never their values)");
  add_store(token_ls);
  token_ls->add_flag("--json", o->json, "Print JSON");
  CLI::App* token_revoke = token->add_subcommand("revoke", "Revoke every token with this name");
  add_store(token_revoke);
  token_revoke->add_option("name", o->name, "Token name")->required();

  return {app, [=]() -> int {
            if (serve->parsed()) {
              if (o->store.empty()) return Fail(InvalidArgumentError("--store is required"));
              options->store_url = o->store;
              options->migrate = !*no_migrate;
              options->drain_timeout = std::chrono::milliseconds(*drain_ms);
              const Status status = hub::RunHub(*options);
              if (!status.ok()) {
                log::Error("hub failed", {{"error", status}});
                return Fail(status);
              }
              return 0;
            }
            if (migrate->parsed()) {
              auto migrating = OpenStore(*o, true);
              if (!migrating.ok()) return Fail(migrating.status());
              auto version = (*migrating)->SchemaVersion();
              if (!version.ok()) return Fail(version.status());
              if (o->json) {
                std::cout << Json{{"schema_version", *version}}.dump() << "\n";
              } else {
                std::cout << "schema version " << *version << "\n";
              }
              return 0;
            }
            auto store = OpenStore(*o, true);
            if (!store.ok()) return Fail(store.status());
            if (site_add->parsed()) {
              if (Status s = (*store)->AddSite(o->name, NowMs()); !s.ok()) return Fail(s);
              if (Status s = IssueToken(**store, *o, hub::Role::kSite, "site:" + o->name, o->name);
                  !s.ok()) {
                return Fail(s);
              }
              return 0;
            }
            if (site_ls->parsed()) {
              auto sites = (*store)->ListSites();
              if (!sites.ok()) return Fail(sites.status());
              Json list = Json::array();
              for (const hub::SiteInfo& s : *sites) {
                if (o->json) {
                  list.push_back({{"site", s.name},
                                  {"created_at", s.created_at},
                                  {"last_seen_at", s.last_seen_at ? Json(*s.last_seen_at) : Json()},
                                  {"events_total", s.events_total},
                                  {"uploads_total", s.uploads_total}});
                } else {
                  std::cout << s.name << "\tlast seen " << FormatMs(s.last_seen_at) << "\tevents "
                            << s.events_total << "\tuploads " << s.uploads_total << "\n";
                }
              }
              if (o->json) std::cout << list.dump(2) << "\n";
              return 0;
            }
            if (token_add->parsed()) {
              auto role = hub::ParseRole(o->role);
              if (!role.ok()) return Fail(role.status());
              if (*role == hub::Role::kSite && o->site.empty()) {
                return Fail(InvalidArgumentError("a site token needs --site"));
              }
              if (*role != hub::Role::kSite && !o->site.empty()) {
                return Fail(InvalidArgumentError("--site goes with --role site only"));
              }
              if (*role == hub::Role::kSite) {
                auto exists = (*store)->SiteExists(o->site);
                if (!exists.ok()) return Fail(exists.status());
                if (!*exists) return Fail(NotFoundError("no site '" + o->site + "'; add it first"));
              }
              if (Status s = IssueToken(**store, *o, *role, o->name, o->site); !s.ok())
                return Fail(s);
              return 0;
            }
            if (token_ls->parsed()) {
              auto tokens = (*store)->ListTokens();
              if (!tokens.ok()) return Fail(tokens.status());
              Json list = Json::array();
              for (const hub::TokenRecord& t : *tokens) {
                const std::string state = t.revoked_at                               ? "revoked"
                                          : t.expires_at && *t.expires_at <= NowMs() ? "expired"
                                                                                     : "active";
                if (o->json) {
                  list.push_back({{"name", t.name},
                                  {"role", std::string(hub::RoleName(t.role))},
                                  {"site", t.site},
                                  {"created_at", t.created_at},
                                  {"expires_at", t.expires_at ? Json(*t.expires_at) : Json()},
                                  {"state", state}});
                } else {
                  std::cout << t.name << "\t" << hub::RoleName(t.role) << "\t"
                            << (t.site.empty() ? "-" : t.site) << "\texpires "
                            << FormatMs(t.expires_at) << "\t" << state << "\n";
                }
              }
              if (o->json) std::cout << list.dump(2) << "\n";
              return 0;
            }
            if (token_revoke->parsed()) {
              auto revoked = (*store)->RevokeTokens(o->name, NowMs());
              if (!revoked.ok()) return Fail(revoked.status());
              if (*revoked == 0)
                return Fail(NotFoundError("no active token named '" + o->name + "'"));
              std::cout << "revoked " << *revoked << " token(s) named '" << o->name << "'\n";
              return 0;
            }
            return 2;
          }};
}

}  // namespace edgeloop::cli
