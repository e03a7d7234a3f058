#include "server/config.hpp"

#include <charconv>
#include <stdexcept>

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

StoreSpec parse_store_spec(const std::string& s) {
  if (s == "memory") return {};
  const std::string scheme = "sqlite:";
  if (s.rfind(scheme, 0) == 0 && s.size() > scheme.size()) return {StoreSpec::Kind::Sqlite, s.substr(scheme.size())};
  throw std::invalid_argument("store '" + s + "' must be 'memory' or 'sqlite:PATH'");
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
