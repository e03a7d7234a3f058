#include "verify/http_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <optional>

#include <fmt/format.h>

#include "net/http_io.hpp"
#include "protocol/url.hpp"

namespace pi::verify {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;

struct Url {
  bool tls = false;
  std::string host, port, target;
};

Url parse_url(std::string_view url) {
  Url u;
  if (url.substr(0, 7) == "http://") {
    url.remove_prefix(7);
    u.port = "80";
  } else if (url.substr(0, 8) == "https://") {
    url.remove_prefix(8);
    u.tls = true;
    u.port = "443";
  } else {
    throw HttpError(fmt::format("URL '{}' is not http:// or https://", url));
  }
  auto slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  u.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  if (authority.empty()) throw HttpError("URL has no host");
  if (authority.front() == '[') {  // [v6]:port
    auto close = authority.find(']');
    if (close == std::string_view::npos) throw HttpError("bad IPv6 host in URL");
    u.host = std::string(authority.substr(1, close - 1));
    if (close + 1 < authority.size() && authority[close + 1] == ':') u.port = std::string(authority.substr(close + 2));
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    u.host = std::string(authority.substr(0, colon));
    u.port = std::string(authority.substr(colon + 1));
  } else {
    u.host = std::string(authority);
  }
  if (u.host.empty() || u.port.empty()) throw HttpError("URL has no host or port");
  return u;
}

template <class Stream>
asio::awaitable<void> exchange(Stream& s, const Url& u, const HttpRequest& r, HttpResponse& out) {
  const http::verb verb = r.method == "POST" ? http::verb::post : http::verb::get;
  http::request<http::string_body> req{verb, u.target, 11};
  req.set(http::field::host, u.host);
  req.set(http::field::user_agent, "private-inference-verify");
  for (const auto& [k, v] : r.headers) req.set(k, v);
  if (verb == http::verb::post) {
    req.set(http::field::content_type, "application/json");
    req.body() = r.body;
    req.prepare_payload();
  }
  auto res = co_await net::async_exchange(s, req, r.body_limit);
  out.status = static_cast<int>(res.result_int());
  out.body = std::move(res.body());
  for (const auto& f : res) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(f.value());
  }
}

asio::awaitable<void> run(Url u, const HttpRequest& r, HttpResponse& out) {
  auto ex = co_await asio::this_coro::executor;
  asio::ip::tcp::resolver resolver(ex);
  auto endpoints = co_await resolver.async_resolve(u.host, u.port, asio::use_awaitable);
  if (!u.tls) {
    beast::tcp_stream s(ex);
    s.expires_after(std::chrono::seconds(r.timeout_s));
    co_await s.async_connect(endpoints, asio::use_awaitable);
    co_await exchange(s, u, r, out);
    beast::error_code ec;
    s.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    co_return;
  }
  ssl::context ctx(ssl::context::tls_client);
  ctx.set_default_verify_paths();
  if (!r.extra_ca_pem.empty()) ctx.add_certificate_authority(asio::buffer(r.extra_ca_pem));
  ctx.set_verify_mode(ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> s(ex, ctx);
  if (!SSL_set_tlsext_host_name(s.native_handle(), u.host.c_str())) throw HttpError("cannot set TLS SNI");
  s.set_verify_callback(ssl::host_name_verification(u.host));
  beast::get_lowest_layer(s).expires_after(std::chrono::seconds(r.timeout_s));
  co_await beast::get_lowest_layer(s).async_connect(endpoints, asio::use_awaitable);
  co_await s.async_handshake(ssl::stream_base::client, asio::use_awaitable);
  co_await exchange(s, u, r, out);
  beast::error_code ec;
  beast::get_lowest_layer(s).socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
}

}  // namespace

std::string url_decode(std::string_view s) { return protocol::percent_decode(s, false).value_or(std::string(s)); }

HttpResponse http_request(std::string_view url, const HttpRequest& r) {
  Url u = parse_url(url);
  asio::io_context ioc;
  HttpResponse out;
  std::exception_ptr err;
  asio::co_spawn(ioc, run(u, r, out), [&](const std::exception_ptr& e) { err = e; });
  ioc.run_for(std::chrono::seconds(r.timeout_s + 5));
  if (!ioc.stopped()) throw HttpError(fmt::format("{} {}: timed out after {} s", r.method, url, r.timeout_s));
  if (err) {
    try {
      std::rethrow_exception(err);
    } catch (const HttpError&) {
      throw;
    } catch (const std::exception& e) {
      throw HttpError(
          fmt::format("{} {}://{}:{}{}: {}", r.method, u.tls ? "https" : "http", u.host, u.port, u.target, e.what()));
    }
  }
  return out;
}

HttpResponse http_get(std::string_view url, const std::vector<std::pair<std::string, std::string>>& headers,
                      int timeout_s) {
  HttpRequest r;
  r.headers = headers;
  r.timeout_s = timeout_s;
  return http_request(url, r);
}

}  // namespace pi::verify
