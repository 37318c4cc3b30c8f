// The web app's files (src/webapp/web, plus Chart.js from src/hub/web/vendor), compiled into the
// binary by cmake/embed_assets.cmake. Private to the webapp component.
#ifndef EDGELOOP_WEBAPP_ASSETS_H_
#define EDGELOOP_WEBAPP_ASSETS_H_

#include <string_view>

namespace edgeloop::webapp {

struct Asset {
  std::string_view path;          // "/ui/app.js"
  std::string_view content_type;  // static storage
  std::string_view body;
};

// The asset served at `path`, or null.
const Asset* FindAsset(std::string_view path);

}  // namespace edgeloop::webapp

#endif  // EDGELOOP_WEBAPP_ASSETS_H_
