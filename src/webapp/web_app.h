// WebApp: the edge web application served by `edgeloop serve` (docs/webapp.md), as an
// http::Handler in front of the OIP handler. It answers `/` and `/ui/...` (the page, embedded
// in the binary, and its JSON API under /ui/api/) and hands every other request to the OIP
// handler, watching streaming-detector scores on the way for the "Recent anomalies" page.
//
// Access: with a users file, every /ui/api/ call but session and login needs a session (cookie
// `edgeloop_session`, HttpOnly, SameSite=Strict) or the serve API token as a bearer token; the
// operator API needs the operator role (403 for end users). Without a users file on a loopback
// server, the app runs in dev mode: every visitor gets an operator session, and the page says so.
// Every POST made with a session cookie must carry the session's CSRF token in X-CSRF-Token (403
// otherwise). Errors are JSON {"error": "..."} with a 4xx/5xx status.
//
// Thread-safe; Handle runs on the server's I/O threads (scoring a CSV file runs the model on the
// calling thread).
#ifndef EDGELOOP_WEBAPP_WEB_APP_H_
#define EDGELOOP_WEBAPP_WEB_APP_H_

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/clock.h"
#include "http/http.h"
#include "serving/serve.h"
#include "webapp/auth.h"
#include "webapp/csv_scoring.h"
#include "webapp/recent.h"
#include "webapp/site_monitor.h"

namespace edgeloop::webapp {

struct WebAppOptions {
  // The users file (auth.h); empty: no users (dev mode on loopback, token login only otherwise).
  std::filesystem::path users_file;
  // The worker's metrics URL, for the uplink state (site_monitor.h).
  std::string uplink_status_url;
  std::chrono::seconds session_idle_timeout{12 * 3600};
  size_t max_sessions = 10'000;
  CsvOptions csv;
  Clock* clock = Clock::Real();
  // How often the site monitor polls; 0: never in the background (tests call monitor()->Poll()).
  std::chrono::milliseconds monitor_interval{2'000};
  // For tests: replaces the site monitor's HTTP fetch.
  std::function<StatusOr<std::string>(const std::string& url)> fetch;
};

class WebApp : public http::Handler {
 public:
  // kInvalidArgument for a users file that does not parse or a bad uplink URL.
  static StatusOr<std::unique_ptr<WebApp>> Create(WebAppOptions options,
                                                  const serving::WebAppContext& context);
  ~WebApp() override;

  void Handle(http::Request request, http::Responder respond) override;

  SiteMonitor* monitor() { return monitor_.get(); }
  bool dev_mode() const { return dev_mode_; }

 private:
  struct Principal {
    std::string user;
    Role role = Role::kUser;
    std::string csrf;  // empty for bearer-token callers
    bool cookie = false;
  };

  WebApp(WebAppOptions options, const serving::WebAppContext& context);

  std::optional<Principal> Authenticate(const http::Request& request);
  http::Response Session(const http::Request& request);
  http::Response Login(const http::Request& request);
  http::Response Models();
  http::Response ScoreRecord(const http::Request& request, std::string_view model);
  http::Response ScoreCsv(const http::Request& request, std::string_view model);
  void Feedback(const http::Request& request, http::Responder respond);
  http::Response Operator();
  void ForwardToApi(http::Request request, http::Responder respond);
  // Loads the users file again when it changed on disk.
  Status RefreshUsers();

  const WebAppOptions options_;
  const serving::WebAppContext context_;
  bool dev_mode_ = false;
  SessionStore sessions_;
  RecentScores recent_;
  std::unique_ptr<SiteMonitor> monitor_;

  std::mutex users_mu_;
  std::optional<UsersFile> users_;               // GUARDED_BY(users_mu_)
  std::filesystem::file_time_type users_mtime_;  // GUARDED_BY(users_mu_)

  std::mutex rate_mu_;
  Clock::SteadyTime rate_at_;  // GUARDED_BY(rate_mu_)
  double rate_total_ = -1;     // GUARDED_BY(rate_mu_)
  double rate_ = 0;            // GUARDED_BY(rate_mu_)
};

// A WebAppFactory for serving::ServeOptions::web_app.
serving::WebAppFactory MakeWebAppFactory(WebAppOptions options);

}  // namespace edgeloop::webapp

#endif  // EDGELOOP_WEBAPP_WEB_APP_H_
