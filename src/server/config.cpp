#include "server/config.hpp"

#include "protocol/url.hpp"

#include <charconv>
#include <stdexcept>
#include <string_view>

namespace pi::server {

BackendUrl parse_backend_url(const std::string& url) {
  const std::string scheme = "http://";
  if (url.rfind("https://", 0) == 0)
    throw std::invalid_argument("backend URL '" + url +
                                "': https backends are not supported; use http:// on the VM's private network");
  if (url.rfind(scheme, 0) != 0) throw std::invalid_argument("backend URL '" + url + "' must start with http://");
  std::string rest = url.substr(scheme.size());
  BackendUrl b;
  auto slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  if (slash != std::string::npos) {
    b.prefix = rest.substr(slash);
    while (!b.prefix.empty() && b.prefix.back() == '/') b.prefix.pop_back();
  }
  if (hostport.empty()) throw std::invalid_argument("backend URL '" + url + "' has no host");
  if (hostport.front() == '[') {
    auto close = hostport.find(']');
    if (close == std::string::npos) throw std::invalid_argument("backend URL '" + url + "': bad IPv6 literal");
    b.host = hostport.substr(1, close - 1);
    b.port = close + 1 < hostport.size() && hostport[close + 1] == ':' ? hostport.substr(close + 2) : "80";
  } else {
    auto colon = hostport.rfind(':');
    b.host = hostport.substr(0, colon);
    b.port = colon == std::string::npos ? "80" : hostport.substr(colon + 1);
  }
  unsigned port = 0;
  auto [p, ec] = std::from_chars(b.port.data(), b.port.data() + b.port.size(), port);
  if (ec != std::errc() || p != b.port.data() + b.port.size() || port == 0 || port > 65535)
    throw std::invalid_argument("backend URL '" + url + "': bad port");
  return b;
}

namespace {

// RFC 3986 percent-decoding of a userinfo part, by the project's one strict rule (a bad %xx is an error).
std::string percent_decode(std::string_view s, const std::string& what) {
  auto d = protocol::percent_decode(s, /*plus_is_space=*/false);
  if (!d) throw std::invalid_argument(what + ": bad percent-encoding");
  return std::move(*d);
}

template <class T>
bool parse_number(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::string RedisEndpoint::describe() const {
  // Appends only: GCC 12 at -O3 warns (-Wrestrict, a known false positive) on `"[" + host + "]"`.
  std::string d = "redis://";
  if (!user.empty() || !password.empty()) d.append(user).append(":***@");
  const bool v6 = host.find(':') != std::string::npos;
  if (v6) d.push_back('[');
  d.append(host);
  if (v6) d.push_back(']');
  d.push_back(':');
  d.append(std::to_string(port));
  if (db != 0) d.append("/").append(std::to_string(db));
  return d;
}

RedisEndpoint parse_redis_url(const std::string& url) {
  const std::string scheme = "redis://";
  const std::string what = "Redis URL (redis://[[user]:password@]host[:port][/db])";
  if (url.rfind("rediss://", 0) == 0)
    throw std::invalid_argument(what + ": TLS to Redis (rediss://) is not supported by this build's hiredis");
  if (url.rfind(scheme, 0) != 0) throw std::invalid_argument(what + ": must start with redis://");
  std::string_view rest(url);
  rest.remove_prefix(scheme.size());
  RedisEndpoint e;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    const auto db = rest.substr(slash + 1);
    if (!db.empty() && (!parse_number(db, e.db) || e.db < 0))
      throw std::invalid_argument(what + ": bad database number");
    rest = rest.substr(0, slash);
  }
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    const auto userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      e.password = percent_decode(userinfo, what);  // redis://password@host, as redis-py reads it
    } else {
      e.user = percent_decode(userinfo.substr(0, colon), what);
      e.password = percent_decode(userinfo.substr(colon + 1), what);
    }
  }
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) throw std::invalid_argument(what + ": bad IPv6 literal");
    e.host = std::string(rest.substr(1, close - 1));
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') throw std::invalid_argument(what + ": bad IPv6 literal");
      port = rest.substr(close + 2);
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    e.host = std::string(rest.substr(0, colon));
    port = rest.substr(colon + 1);
  } else {
    e.host = std::string(rest);
  }
  if (e.host.empty()) throw std::invalid_argument(what + ": no host");
  if (!port.empty()) {
    unsigned p = 0;
    if (!parse_number(port, p) || p == 0 || p > 65535) throw std::invalid_argument(what + ": bad port");
    e.port = static_cast<unsigned short>(p);
  }
  return e;
}

std::string StoreSpec::describe() const {
  switch (kind) {
    case Kind::Memory:
      return "memory";
    case Kind::Sqlite:
      return "sqlite:" + path;
    case Kind::Redis:
      return redis.describe();
  }
  return "memory";
}

StoreSpec parse_store_spec(const std::string& s) {
  if (s == "memory") return {};
  const std::string scheme = "sqlite:";
  if (s.rfind(scheme, 0) == 0 && s.size() > scheme.size())
    return {StoreSpec::Kind::Sqlite, s.substr(scheme.size()), {}};
  if (s.rfind("redis://", 0) == 0 || s.rfind("rediss://", 0) == 0)
    return {StoreSpec::Kind::Redis, {}, parse_redis_url(s)};
  throw std::invalid_argument("store '" + s + "' must be 'memory', 'sqlite:PATH' or 'redis://…'");
}

ListenAddress parse_listen(const std::string& s) {
  ListenAddress l;
  std::string port;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':')
      throw std::invalid_argument("listen address '" + s + "' must be [v6]:port");
    l.host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string::npos) throw std::invalid_argument("listen address '" + s + "' must be host:port");
    l.host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  if (l.host.empty()) l.host = "0.0.0.0";
  unsigned p = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || ptr != port.data() + port.size() || p > 65535)
    throw std::invalid_argument("listen address '" + s + "': bad port");
  l.port = static_cast<unsigned short>(p);
  return l;
}

}  // namespace pi::server
