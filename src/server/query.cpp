#include "server/query.hpp"

#include "crypto/bytes.hpp"
#include "server/error.hpp"

namespace pi::server {

namespace {
std::optional<std::string> decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+' && plus_is_space) {
      out += ' ';
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      auto b = from_hex(s.substr(i + 1, 2));
      if (!b || b->size() != 1) return std::nullopt;
      out += static_cast<char>((*b)[0]);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}
}  // namespace

std::optional<std::string> query_param(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    auto eq = kv.find('=');
    if (kv.substr(0, eq) == key) {
      auto v = decode(eq == std::string_view::npos ? std::string_view() : kv.substr(eq + 1), true);
      if (!v)
        throw HttpErrorException(
            HttpError::bad_request("Query parameter '" + std::string(key) + "' has an invalid percent-encoding",
                                   "invalid_query", std::string(key)));
      return v;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::string decode_path_segment(std::string_view s) {
  auto v = decode(s, false);
  if (!v) throw HttpErrorException(HttpError::bad_request("The path has an invalid percent-encoding", "invalid_path"));
  return *v;
}

}  // namespace pi::server
