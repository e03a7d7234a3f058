#include "protocol/url.hpp"

namespace pi::protocol {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Calls f(raw key, raw value) for each non-empty '&'-separated pair; stops when f returns true.
template <class F>
void for_each_pair(std::string_view query, F&& f) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    const std::string_view value = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    if (f(pair.substr(0, eq), value)) return;
  }
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%') {
      if (s.size() - i < 3) return std::nullopt;
      const int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

QueryParam find_query_param(std::string_view query, std::string_view key) {
  QueryParam out;
  for_each_pair(query, [&](std::string_view k, std::string_view v) {
    auto dk = percent_decode(k, true);
    if (!dk || *dk != key) return false;
    if (auto dv = percent_decode(v, true)) {
      out.state = QueryParam::State::Present;
      out.value = std::move(*dv);
    } else {
      out.state = QueryParam::State::Undecodable;
    }
    return true;
  });
  return out;
}

std::optional<std::string> query_param(std::string_view query, std::string_view key) {
  QueryParam p = find_query_param(query, key);
  if (!p.present()) return std::nullopt;
  return std::move(p.value);
}

std::optional<std::vector<std::pair<std::string, std::string>>> parse_query(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  bool ok = true;
  for_each_pair(query, [&](std::string_view k, std::string_view v) {
    auto dk = percent_decode(k, true);
    auto dv = percent_decode(v, true);
    if (!dk || !dv) {
      ok = false;
      return true;
    }
    out.emplace_back(std::move(*dk), std::move(*dv));
    return false;
  });
  if (!ok) return std::nullopt;
  return out;
}

}  // namespace pi::protocol
