// HTTPS client for NRAS (POST evidence) and NVIDIA's JWKS (GET): Boost.Beast over OpenSSL TLS.
// The system trust store is used and the server's host name is verified. There is no network in the test
// environment; callers treat a transport failure as "NRAS skipped: network unavailable".
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>

#include "verify/nras.hpp"

namespace pi::verify::nras {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;

struct Url {
  std::string host, port, target;
};

std::optional<Url> parse_https_url(std::string_view url) {
  constexpr std::string_view kScheme = "https://";
  if (url.substr(0, kScheme.size()) != kScheme) return std::nullopt;
  url.remove_prefix(kScheme.size());
  auto slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  Url u;
  u.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  auto colon = authority.find(':');
  u.host = std::string(authority.substr(0, colon));
  u.port = colon == std::string_view::npos ? "443" : std::string(authority.substr(colon + 1));
  if (u.host.empty() || u.port.empty()) return std::nullopt;
  return u;
}

asio::awaitable<void> exchange(Url u, http::verb verb, std::string body, int timeout_s, std::string extra_ca,
                               HttpResult& out) {
  auto ex = co_await asio::this_coro::executor;
  ssl::context ctx(ssl::context::tls_client);
  ctx.set_default_verify_paths();
  if (!extra_ca.empty()) ctx.add_certificate_authority(asio::buffer(extra_ca));
  ctx.set_verify_mode(ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(ex, ctx);
  if (!SSL_set_tlsext_host_name(stream.native_handle(), u.host.c_str())) {
    out.error = "cannot set TLS SNI host name";
    co_return;
  }
  stream.set_verify_callback(ssl::host_name_verification(u.host));
  asio::ip::tcp::resolver resolver(ex);
  auto endpoints = co_await resolver.async_resolve(u.host, u.port, asio::use_awaitable);
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(timeout_s));
  co_await beast::get_lowest_layer(stream).async_connect(endpoints, asio::use_awaitable);
  co_await stream.async_handshake(ssl::stream_base::client, asio::use_awaitable);

  http::request<http::string_body> req{verb, u.target, 11};
  req.set(http::field::host, u.host);
  req.set(http::field::user_agent, "private-inference-verifier");
  req.set(http::field::accept, "application/json");
  if (verb == http::verb::post) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();
  }
  co_await http::async_write(stream, req, asio::use_awaitable);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(std::uint64_t{8} << 20);
  co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
  out.status = static_cast<int>(parser.get().result_int());
  out.body = std::move(parser.get().body());
  out.ok = true;
  beast::error_code ignored;
  beast::get_lowest_layer(stream).socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
}

}  // namespace

HttpResult https_request(std::string_view method, std::string_view url, std::string_view body, int timeout_s,
                         std::string_view extra_ca_pem) {
  HttpResult out;
  auto u = parse_https_url(url);
  if (!u) {
    out.error = "not an https:// URL: " + std::string(url);
    return out;
  }
  http::verb verb = method == "POST" ? http::verb::post : http::verb::get;
  try {
    asio::io_context ioc;
    asio::co_spawn(ioc, exchange(*u, verb, std::string(body), timeout_s, std::string(extra_ca_pem), out),
                   [&](const std::exception_ptr& e) {
                     if (!e) return;
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& ex) {
                       out.ok = false;
                       out.error = ex.what();
                     }
                   });
    ioc.run_for(std::chrono::seconds(timeout_s + 5));
    if (!ioc.stopped() && !out.ok && out.error.empty()) out.error = "timed out";
  } catch (const std::exception& e) {
    out.ok = false;
    out.error = e.what();
  }
  return out;
}

}  // namespace pi::verify::nras
