#include "server/query.hpp"

#include "protocol/url.hpp"
#include "server/error.hpp"

namespace pi::server {

std::optional<std::string> query_param(std::string_view query, std::string_view key) {
  auto p = protocol::find_query_param(query, key);
  if (p.undecodable())
    throw HttpErrorException(
        HttpError::bad_request("Query parameter '" + std::string(key) + "' has an invalid percent-encoding",
                               "invalid_query", std::string(key)));
  if (!p.present()) return std::nullopt;
  return std::move(p.value);
}

std::string decode_path_segment(std::string_view s) {
  auto v = protocol::percent_decode(s, false);
  if (!v) throw HttpErrorException(HttpError::bad_request("The path has an invalid percent-encoding", "invalid_path"));
  return std::move(*v);
}

}  // namespace pi::server
