#include "server/engine_pool.hpp"

namespace pi::server {

namespace {
constexpr std::size_t kMaxIdle = 1024;
}

awaitable<std::optional<EngineConn>> EnginePool::acquire(bool allow_reuse, beast::error_code& ec) {
  if (allow_reuse) {
    while (!idle_.empty()) {
      tcp::socket s = std::move(idle_.back());
      idle_.pop_back();
      if (s.is_open()) co_return EngineConn{beast::tcp_stream(std::move(s)), true};
    }
  }
  EngineConn c{beast::tcp_stream(ioc_), false};
  c.stream.expires_after(cfg_.connect_timeout);
  auto [cec, ep] = co_await c.stream.async_connect(endpoints_, kTuple);
  c.stream.expires_never();
  if (cec) {
    ec = cec;
    co_return std::nullopt;
  }
  c.stream.socket().set_option(tcp::no_delay(true));
  co_return std::optional<EngineConn>(std::move(c));
}

void EnginePool::release(EngineConn& c) {
  if (idle_.size() < kMaxIdle && c.stream.socket().is_open()) idle_.push_back(c.stream.release_socket());
}

awaitable<std::optional<std::string>> EnginePool::get(std::string path) {
  beast::error_code ec;
  auto conn = co_await acquire(false, ec);
  if (!conn) co_return std::nullopt;
  http::request<http::empty_body> r{http::verb::get, cfg_.backend.prefix + path, 11};
  r.set(http::field::host, cfg_.backend.host_header());
  if (!cfg_.backend_api_key.empty()) r.set(http::field::authorization, "Bearer " + cfg_.backend_api_key);
  conn->stream.expires_after(std::chrono::seconds(10));
  auto [wec, wn] = co_await http::async_write(conn->stream, r, kTuple);
  if (wec) co_return std::nullopt;
  beast::flat_buffer b;
  http::response_parser<http::string_body> p;
  p.body_limit(64u << 20);
  auto [rec, rn] = co_await http::async_read(conn->stream, b, p, kTuple);
  if (rec || p.get().result() != http::status::ok) co_return std::nullopt;
  co_return std::move(p.get().body());
}

}  // namespace pi::server
