#include "server/http.hpp"

#include <cctype>

namespace pi::server {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

Target split_target(std::string_view t) {
  auto q = t.find('?');
  if (q == std::string_view::npos) return {t, {}};
  return {t.substr(0, q), t.substr(q + 1)};
}

Response json_response(http::status status, std::string body, bool keep_alive) {
  Response res{status, 11};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::server, kServerName);
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

}  // namespace pi::server
