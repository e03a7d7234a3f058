#include "server/proxy.hpp"

#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <deque>
#include <thread>
#include <vector>

#include "crypto/random.hpp"
#include "protocol/sse.hpp"
#include "protocol/wire.hpp"
#include "server/auth.hpp"
#include "server/metrics.hpp"
#include "server/signature_store.hpp"
#include "version.hpp"

namespace pi::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = net::ip::tcp;
using net::awaitable;
using namespace net::experimental::awaitable_operators;

namespace {

constexpr auto kTuple = net::as_tuple(net::use_awaitable);
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Small pure helpers

struct Target {
  std::string_view path;
  std::string_view query;
};
Target split_target(std::string_view t) {
  auto q = t.find('?');
  if (q == std::string_view::npos) return {t, {}};
  return {t.substr(0, q), t.substr(q + 1)};
}

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size()) {
      auto b = from_hex(s.substr(i + 1, 2));
      if (b && b->size() == 1) {
        out += static_cast<char>((*b)[0]);
        i += 2;
      } else {
        out += s[i];
      }
    } else {
      out += s[i];
    }
  }
  return out;
}

// Value of `key` in a query string (first occurrence), decoded.
std::optional<std::string> query_param(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    auto eq = kv.find('=');
    std::string_view k = kv.substr(0, eq);
    if (k == key) return percent_decode(eq == std::string_view::npos ? std::string_view() : kv.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

// Hop-by-hop and framing headers are the proxy's own business on each leg.
bool is_hop_header(http::field f) {
  switch (f) {
    case http::field::connection:
    case http::field::keep_alive:
    case http::field::proxy_authenticate:
    case http::field::proxy_authorization:
    case http::field::te:
    case http::field::trailer:
    case http::field::transfer_encoding:
    case http::field::upgrade:
    case http::field::content_length:
    case http::field::server:
    case http::field::date:
      return true;
    default:
      return false;
  }
}

template <class From, class To>
void copy_end_to_end_headers(const From& from, To& to) {
  for (const auto& f : from) {
    if (f.name() != http::field::unknown && is_hop_header(f.name())) continue;
    if (f.name() == http::field::unknown && iequals(f.name_string(), "x-signature-id")) continue;
    to.insert(f.name_string(), f.value());
  }
}

struct RouteInfo {
  Route route = Route::Other;
  std::string category;  // auth category: inference, signature, attestation, models, health, version, metrics
  bool signed_exchange = false;
  bool forward = false;
  http::verb method = http::verb::get;
};

RouteInfo classify(std::string_view path) {
  if (path == "/v1/chat/completions") return {Route::Chat, "inference", true, true, http::verb::post};
  if (path == "/v1/completions") return {Route::Completions, "inference", true, true, http::verb::post};
  if (path == "/v1/embeddings") return {Route::Embeddings, "inference", true, true, http::verb::post};
  if (path == "/v1/responses") return {Route::Responses, "inference", true, true, http::verb::post};
  if (path == "/tokenize") return {Route::Tokenize, "inference", false, true, http::verb::post};
  if (path == "/detokenize") return {Route::Detokenize, "inference", false, true, http::verb::post};
  if (path == "/v1/models") return {Route::Models, "models", false, true, http::verb::get};
  if (path == "/health") return {Route::Health, "health", false, true, http::verb::get};
  if (path == "/version") return {Route::Version, "version", false, false, http::verb::get};
  if (path == "/metrics") return {Route::Metrics, "metrics", false, false, http::verb::get};
  if (path.starts_with("/v1/signature/")) return {Route::Signature, "signature", false, false, http::verb::get};
  if (path == "/v1/attestation/report" || path == "/v1/attestation")
    return {Route::Attestation, "attestation", false, false, http::verb::get};
  return {};
}

std::string random_id(std::string_view prefix) { return std::string(prefix) + to_hex(crypto::random_bytes(12)); }

}  // namespace

// ---------------------------------------------------------------------------------------------

struct ProxyServer::Impl {
  ServerConfig cfg;
  protocol::SigningIdentity identity;
  TeeContext tee;
  TokenAuth auth;
  SignatureStore store;
  Metrics metrics;
  std::atomic<std::size_t> attest_inflight{0};
  std::mutex info_mu;
  std::optional<json::object> info_cache;

  struct Worker {
    net::io_context ioc{1};
    std::optional<tcp::acceptor> acceptor;
    std::vector<tcp::socket> idle_backend;  // keep-alive connections to the backend (this worker only)
  };
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<tcp::endpoint> backend_endpoints;
  unsigned short port = 0;

  Impl(ServerConfig c, protocol::SigningIdentity id, TeeContext t)
      : cfg(std::move(c)),
        identity(std::move(id)),
        tee(std::move(t)),
        auth(cfg.tokens),
        store(cfg.signature_capacity, cfg.signature_ttl) {}

  // ----- responses ---------------------------------------------------------------------------

  Response make_json(http::status st, std::string body, bool keep_alive) {
    Response res{st, 11};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::server, "private-inference");
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
  }

  Response make_error(http::status st, std::string_view message, std::string_view type, std::string_view code,
                      bool keep_alive, bool retry_useless, std::optional<std::string_view> param = std::nullopt) {
    Response res = make_json(st, protocol::error_envelope(message, type, param, code), keep_alive);
    if (retry_useless) res.set("x-should-retry", "false");
    return res;
  }

  awaitable<bool> send(beast::tcp_stream& client, Response res, Route route, Clock::time_point t0) {
    metrics.count_response(route, res.result_int());
    metrics.bytes_out += res.body().size();
    client.expires_after(cfg.client_timeout);
    auto [ec, n] = co_await http::async_write(client, res, kTuple);
    client.expires_never();
    metrics.duration[static_cast<std::size_t>(route)].observe(std::chrono::duration<double>(Clock::now() - t0).count());
    co_return !ec && res.keep_alive();
  }

  // ----- backend connections -----------------------------------------------------------------

  struct BackendConn {
    beast::tcp_stream stream;
    bool reused = false;
  };

  awaitable<std::optional<BackendConn>> acquire(Worker& w, bool allow_reuse, beast::error_code& ec) {
    auto ex = co_await net::this_coro::executor;
    if (allow_reuse) {
      while (!w.idle_backend.empty()) {
        tcp::socket s = std::move(w.idle_backend.back());
        w.idle_backend.pop_back();
        if (s.is_open()) co_return BackendConn{beast::tcp_stream(std::move(s)), true};
      }
    }
    BackendConn c{beast::tcp_stream(ex), false};
    c.stream.expires_after(cfg.connect_timeout);
    auto [cec, ep] = co_await c.stream.async_connect(backend_endpoints, kTuple);
    c.stream.expires_never();
    if (cec) {
      ec = cec;
      co_return std::nullopt;
    }
    c.stream.socket().set_option(tcp::no_delay(true));
    co_return std::optional<BackendConn>(std::move(c));
  }

  void release_backend(Worker& w, BackendConn& c) {
    if (w.idle_backend.size() < 1024 && c.stream.socket().is_open())
      w.idle_backend.push_back(c.stream.release_socket());
  }

  // ----- the exchange (forwarding) ----------------------------------------------------------

  struct Exchange {
    Worker* worker = nullptr;
    http::request<http::string_body> breq;
    crypto::Digest32 request_hash{};
    RouteInfo ri;
    std::string owner;
    bool reserved = false;     // a signature-store slot is held
    bool client_gone = false;  // set by the watcher
    bool client_reusable = false;
    bool responded = false;        // something was written to the client
    bool stream_finished = false;  // the engine's stream ended and was judged (signed or not)
    std::string signed_id;
    tcp::socket* backend_socket = nullptr;
    std::string pipelined;  // bytes the client sent while we were busy (next request)
    unsigned status = 0;
    std::size_t bytes_out = 0;
  };

  void finish_signature(Exchange& x, const crypto::Digest32& response_hash, const std::string& id) {
    auto rec = identity.sign(x.request_hash, response_hash);
    x.reserved = false;
    if (store.commit(x.owner + '\x1f' + id, rec)) {
      metrics.signatures_created++;
      x.signed_id = id;
    } else {
      metrics.signature_id_collisions++;
      spdlog::warn("signature id {} already has a record; the existing record was kept", id);
    }
  }

  void drop_reservation(Exchange& x) {
    if (x.reserved) {
      store.release();
      x.reserved = false;
    }
  }

  // Watches the client socket while the backend works: EOF/error means the client is gone,
  // so the backend request is cancelled by closing its connection (llama.cpp and vLLM abort
  // generation when their client disconnects). Bytes that arrive are kept for the next request.
  awaitable<void> watch_client(beast::tcp_stream& client, Exchange& x) {
    co_await net::this_coro::throw_if_cancelled(false);
    std::array<char, 512> tmp{};  // only pipelined bytes or EOF are expected here
    for (;;) {
      auto [ec, n] = co_await client.socket().async_read_some(net::buffer(tmp), kTuple);
      if (ec) {
        if (ec != net::error::operation_aborted) {
          x.client_gone = true;
          if (x.backend_socket != nullptr) {
            beast::error_code ignored;
            x.backend_socket->shutdown(tcp::socket::shutdown_both, ignored);
            x.backend_socket->close(ignored);
          }
        }
        co_return;
      }
      if (x.pipelined.size() + n > cfg.max_body_bytes + 65536) {  // not a well-behaved HTTP/1.1 client
        x.client_gone = true;
        if (x.backend_socket != nullptr) {
          beast::error_code ignored;
          x.backend_socket->close(ignored);
        }
        co_return;
      }
      x.pipelined.append(tmp.data(), n);
    }
  }

  awaitable<void> exchange(beast::tcp_stream& client, Exchange& x, Clock::time_point t0) {
    // When the watcher wins (client gone) we still want our own clean-up path, not exceptions.
    co_await net::this_coro::throw_if_cancelled(false);
    co_await exchange_inner(client, x, t0);
    // Stop the watcher (in case per-operation cancellation did not reach it).
    beast::error_code ignored;
    client.socket().cancel(ignored);
  }

  awaitable<void> exchange_inner(beast::tcp_stream& client, Exchange& x, Clock::time_point t0) {
    Worker& w = *x.worker;
    for (int attempt = 0; attempt < 2; ++attempt) {
      beast::error_code ec;
      auto conn = co_await acquire(w, attempt == 0, ec);
      if (!conn) {
        metrics.backend_connect_errors++;
        spdlog::warn("backend connect failed: {}", ec.message());
        co_await respond_error(client, x, t0, http::status::bad_gateway,
                               "The inference backend is unavailable: " + ec.message(), "server_error",
                               "backend_unavailable", false);
        co_return;
      }
      x.backend_socket = &conn->stream.socket();
      conn->stream.expires_after(cfg.backend_timeout);
      auto [wec, wn] = co_await http::async_write(conn->stream, x.breq, kTuple);
      beast::flat_buffer bbuf;
      http::response_parser<http::buffer_body> parser;
      parser.body_limit(boost::none);
      beast::error_code hec = wec;
      if (!hec) {
        auto [e2, n2] = co_await http::async_read_header(conn->stream, bbuf, parser, kTuple);
        hec = e2;
      }
      if (hec) {
        x.backend_socket = nullptr;
        if (x.client_gone) co_return;
        // A kept-alive connection the backend had already closed: retry once on a fresh one.
        if (conn->reused && attempt == 0 && bbuf.size() == 0 &&
            (hec == http::error::end_of_stream || hec == net::error::connection_reset ||
             hec == net::error::broken_pipe || hec == net::error::eof))
          continue;
        co_await backend_failure(client, x, t0, hec);
        co_return;
      }
      co_await relay(client, x, t0, *conn, bbuf, parser);
      x.backend_socket = nullptr;
      co_return;
    }
  }

  awaitable<void> backend_failure(beast::tcp_stream& client, Exchange& x, Clock::time_point t0, beast::error_code ec) {
    if (ec == beast::error::timeout) {
      metrics.backend_timeouts++;
      co_await respond_error(client, x, t0, http::status::gateway_timeout,
                             "The inference backend did not answer in time", "server_error", "backend_timeout", false);
    } else {
      metrics.backend_connect_errors++;
      co_await respond_error(client, x, t0, http::status::bad_gateway, "The inference backend failed: " + ec.message(),
                             "server_error", "backend_error", false);
    }
  }

  awaitable<void> respond_error(beast::tcp_stream& client, Exchange& x, Clock::time_point t0, http::status st,
                                std::string message, std::string_view type, std::string_view code, bool retry_useless) {
    drop_reservation(x);
    x.status = static_cast<unsigned>(st);
    x.responded = true;
    auto pending = make_error(st, message, type, code, x.breq.keep_alive(), retry_useless);
    x.client_reusable = co_await send(client, std::move(pending), x.ri.route, t0);
  }

  // State of one streamed exchange, shared by the pump and its watchdog.
  struct StreamState {
    explicit StreamState(const net::any_io_executor& ex) : watchdog(ex) {}
    crypto::Sha256 hasher;
    protocol::SseScanner scanner;
    std::array<char, 4096> cb{};  // per stream: SSE events are small; 4 KiB keeps 4096 streams lean
    std::string held;             // bytes from the chunk that completed the stream, written after signing
    Clock::time_point deadline;   // when the current wait (engine read or client write) times out
    bool writing = false;         // the current wait is a write to the client
    bool backend_failed = false;
    bool backend_timed_out = false;
    net::steady_timer watchdog;  // the watchdog's one timer
    bool done = false;           // the pump has finished: the watchdog must stop
  };

  // Stops the watchdog when the pump leaves, however it leaves. The `||` operator's cancellation
  // alone is not enough: if the watchdog's timer has already fired when the pump finishes, that
  // cancellation finds no pending operation, and the watchdog would go on until its deadline.
  struct StopWatchdog {
    explicit StopWatchdog(StreamState& s) : st(s) {}
    StopWatchdog(const StopWatchdog&) = delete;
    StopWatchdog& operator=(const StopWatchdog&) = delete;
    ~StopWatchdog() {
      st.done = true;
      st.watchdog.cancel();
    }
    StreamState& st;
  };

  // Relays the engine's SSE body to the client chunk by chunk, hashing the exact bytes.
  awaitable<void> pump_stream(beast::tcp_stream& client, Exchange& x, BackendConn& conn, beast::flat_buffer& bbuf,
                              http::response_parser<http::buffer_body>& parser, StreamState& st) {
    co_await net::this_coro::throw_if_cancelled(false);
    StopWatchdog stop(st);
    auto& backend = conn.stream.socket();
    auto& csock = client.socket();
    while (!parser.is_done()) {
      parser.get().body().data = st.cb.data();
      parser.get().body().size = st.cb.size();
      st.deadline = Clock::now() + cfg.backend_timeout;
      auto [ec, n] = co_await http::async_read_some(backend, bbuf, parser, kTuple);
      const std::size_t got = st.cb.size() - parser.get().body().size;
      if (got > 0) {
        std::string_view piece(st.cb.data(), got);
        st.hasher.update(piece);
        st.scanner.feed(piece);
        x.bytes_out += got;
        if (st.scanner.completed() || !st.held.empty()) {
          st.held.append(piece);
        } else {
          st.writing = true;
          st.deadline = Clock::now() + cfg.client_timeout;
          auto [wec, wn] = co_await net::async_write(csock, http::make_chunk(net::buffer(piece)), kTuple);
          st.writing = false;
          if (wec) {
            x.client_gone = true;
            break;
          }
        }
      }
      if (ec == http::error::need_buffer) continue;
      if (ec) {
        if (st.backend_timed_out) metrics.backend_timeouts++;  // the watchdog closed the engine socket
        st.backend_failed = true;
        break;
      }
    }
  }

  // Enforces StreamState::deadline with one timer that wakes at most every quarter of the shorter
  // timeout (so a deadline moved earlier is noticed late by at most that much). On expiry it closes
  // the socket being waited on; the pump then sees the error. Returns when the pump has finished
  // (StopWatchdog) or the exchange is cancelled.
  awaitable<void> stream_watchdog(StreamState& st, tcp::socket& backend, tcp::socket& client) {
    co_await net::this_coro::throw_if_cancelled(false);
    const auto shorter =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::min(cfg.backend_timeout, cfg.client_timeout));
    const Clock::duration tick = std::max<Clock::duration>(shorter / 4, std::chrono::milliseconds(100));
    bool fired = false;
    while (!st.done) {
      const auto now = Clock::now();
      if (!fired && now >= st.deadline) {
        fired = true;
        beast::error_code ignored;
        if (st.writing) {
          client.close(ignored);
        } else {
          st.backend_timed_out = true;
          backend.close(ignored);
        }
      }
      st.watchdog.expires_at(fired ? Clock::time_point::max() : std::min(st.deadline, now + tick));
      auto [ec] = co_await st.watchdog.async_wait(kTuple);
      if (ec) co_return;  // cancelled: the pump is done (or the exchange is being torn down)
    }
  }

  awaitable<void> relay(beast::tcp_stream& client, Exchange& x, Clock::time_point t0, BackendConn& conn,
                        beast::flat_buffer& bbuf, http::response_parser<http::buffer_body>& parser) {
    const auto& hdr = parser.get();
    const bool ok_status = hdr.result_int() >= 200 && hdr.result_int() < 300;
    const bool sse =
        hdr.result() == http::status::ok && hdr[http::field::content_type].substr(0, 17) == "text/event-stream";
    x.status = hdr.result_int();
    if (!sse) {
      http::response_parser<http::string_body> sp{std::move(parser)};
      sp.body_limit(cfg.max_backend_body_bytes);
      conn.stream.expires_after(cfg.backend_timeout);
      auto [ec, n] = co_await http::async_read(conn.stream, bbuf, sp, kTuple);
      if (ec) {
        x.backend_socket = nullptr;
        if (x.client_gone) co_return;
        co_await backend_failure(client, x, t0, ec);
        co_return;
      }
      auto bres = sp.release();
      const bool backend_keep = bres.keep_alive();
      Response res{bres.result(), 11};
      copy_end_to_end_headers(bres, res);
      res.set(http::field::server, "private-inference");
      res.body() = std::move(bres.body());
      res.keep_alive(x.breq.keep_alive());
      if (x.reserved && ok_status) {
        // Hash the exact bytes we are about to send; sign before sending so the record exists
        // by the time the client has the answer.
        auto response_hash = crypto::sha256(std::string_view(res.body()));
        auto id = protocol::response_id(res.body()).value_or(random_id("pi-"));
        finish_signature(x, response_hash, id);
        if (!x.signed_id.empty()) res.set("X-Signature-Id", x.signed_id);
      } else {
        drop_reservation(x);
      }
      res.prepare_payload();
      x.backend_socket = nullptr;
      if (backend_keep) release_backend(*x.worker, conn);
      x.responded = true;
      x.bytes_out = res.body().size();
      x.client_reusable = co_await send(client, std::move(res), x.ri.route, t0);
      co_return;
    }

    // ---- Server-Sent Events: pass through chunk by chunk, hashing as the bytes go.
    http::response<http::empty_body> cres{hdr.result(), 11};
    copy_end_to_end_headers(hdr, cres);
    cres.set(http::field::server, "private-inference");
    cres.keep_alive(x.breq.keep_alive());
    cres.chunked(true);
    http::response_serializer<http::empty_body> sr{cres};
    client.expires_after(cfg.client_timeout);
    auto [hec, hn] = co_await http::async_write_header(client, sr, kTuple);
    client.expires_never();
    x.responded = true;
    if (hec) {
      x.client_gone = true;
      co_return;
    }
    // Timeouts while streaming: one deadline per exchange, moved forward with a clock read per chunk,
    // and one watchdog timer that wakes rarely, instead of re-arming socket timers for every SSE
    // chunk (three timer operations per token; see docs/performance.md).
    conn.stream.expires_never();
    auto ex = co_await net::this_coro::executor;
    StreamState st(ex);
    st.deadline = Clock::now() + cfg.backend_timeout;
    co_await (pump_stream(client, x, conn, bbuf, parser, st) ||
              stream_watchdog(st, conn.stream.socket(), client.socket()));
    const bool backend_failed = st.backend_failed;
    x.backend_socket = nullptr;
    if (x.client_gone || backend_failed) {
      // No signature: the stream is incomplete. Abort the client connection so the client sees
      // a broken stream rather than a clean end.
      drop_reservation(x);
      metrics.unsigned_incomplete++;
      if (x.client_gone) metrics.client_disconnects++;
      beast::error_code ignored;
      client.socket().shutdown(tcp::socket::shutdown_both, ignored);
      client.socket().close(ignored);
      conn.stream.socket().close(ignored);
      x.client_reusable = false;
      co_return;
    }
    if (parser.keep_alive()) release_backend(*x.worker, conn);
    const auto response_hash = st.hasher.finish();
    if (x.reserved && st.scanner.signable()) {
      finish_signature(x, response_hash, st.scanner.id());
    } else {
      if (x.reserved) {
        if (st.scanner.id().empty() && st.scanner.completed())
          metrics.unsigned_no_id++;
        else
          metrics.unsigned_incomplete++;
      }
      drop_reservation(x);
    }
    x.stream_finished = true;
    client.expires_after(cfg.client_timeout);
    if (!st.held.empty()) {
      auto [wec, wn] = co_await net::async_write(client, http::make_chunk(net::buffer(st.held)), kTuple);
      if (wec) x.client_gone = true;
    }
    if (!x.client_gone) {
      auto [lec, ln] = co_await net::async_write(client, http::make_chunk_last(), kTuple);
      if (lec) x.client_gone = true;
    }
    client.expires_never();
    metrics.count_response(x.ri.route, x.status);
    metrics.bytes_out += x.bytes_out;
    metrics.duration[static_cast<std::size_t>(x.ri.route)].observe(
        std::chrono::duration<double>(Clock::now() - t0).count());
    x.client_reusable = !x.client_gone && x.breq.keep_alive();
  }

  awaitable<bool> forward(Worker& w, beast::tcp_stream& client, beast::flat_buffer& cbuf, Request& req,
                          const RouteInfo& ri, std::string owner, Clock::time_point t0) {
    const bool keep = req.keep_alive();
    if (!req["X-Client-Pub-Key"].empty() || !req["X-Encryption-Version"].empty()) {
      // vllm-proxy's end-to-end encryption is not implemented yet. Refuse rather than forward:
      // a client that believes its prompt is encrypted must not get a plaintext answer.
      auto pending = make_error(http::status::bad_request,
                                "End-to-end encryption headers (X-Client-Pub-Key / X-Encryption-Version) are not "
                                "supported by this server yet; send the request without them",
                                "invalid_request_error", "e2ee_unsupported", keep, true);
      co_return co_await send(client, std::move(pending), ri.route, t0);
    }
    if (ri.signed_exchange) {
      // Malformed JSON is answered here, in the OpenAI envelope, rather than by the engine.
      // (Parsed only to validate; the bytes forwarded are the bytes received.)
      boost::system::error_code jec;
      auto v = json::parse(req.body(), jec);
      if (jec || !v.is_object()) {
        auto pending = make_error(http::status::bad_request,
                                  jec ? "The request body is not valid JSON: " + jec.message()
                                      : std::string("The request body must be a JSON object"),
                                  "invalid_request_error", "invalid_json", keep, true);
        co_return co_await send(client, std::move(pending), ri.route, t0);
      }
      if (!store.try_reserve()) {
        metrics.store_full_rejections++;
        auto res = make_error(http::status::service_unavailable,
                              "The signature store is full (every record is still inside its TTL); retry later",
                              "server_error", "signature_store_full", keep, false);
        res.set(http::field::retry_after, std::to_string(store.retry_after().count()));
        co_return co_await send(client, std::move(res), ri.route, t0);
      }
    }
    Exchange x;
    x.worker = &w;
    x.ri = ri;
    x.owner = std::move(owner);
    x.reserved = ri.signed_exchange;
    x.request_hash = crypto::sha256(std::string_view(req.body()));
    metrics.bytes_in += req.body().size();

    auto& b = x.breq;
    b.method(req.method());
    b.target(cfg.backend.prefix + std::string(req.target()));
    b.version(11);
    b.set(http::field::host, cfg.backend.host_header());
    b.set(http::field::user_agent, "private-inference/" + std::string(kVersion));
    if (auto ct = req[http::field::content_type]; !ct.empty()) b.set(http::field::content_type, ct);
    if (auto ac = req[http::field::accept]; !ac.empty()) b.set(http::field::accept, ac);
    if (!cfg.backend_api_key.empty()) b.set(http::field::authorization, "Bearer " + cfg.backend_api_key);
    // Client X-Request-Id / X-Request-Hash are deliberately not forwarded: engines derive
    // response ids from X-Request-Id, and ids key the signature records.
    b.body() = std::move(req.body());  // the exact bytes, moved, never re-serialized
    b.keep_alive(true);
    b.prepare_payload();
    metrics.inflight++;
    co_await (exchange(client, x, t0) || watch_client(client, x));
    metrics.inflight--;
    drop_reservation(x);
    if (x.client_gone && x.stream_finished) {
      // Clients such as the openai SDK stop reading at [DONE] and close before the final
      // zero-length chunk: the exchange completed (and was judged) all the same.
      spdlog::info("{} {} -> {} out={}B {:.1f}ms{}{} (client closed after the last event)",
                   std::string_view(b.method_string()), route_name(ri.route), x.status, x.bytes_out,
                   std::chrono::duration<double, std::milli>(Clock::now() - t0).count(),
                   x.signed_id.empty() ? "" : " signed id=", x.signed_id);
      co_return false;
    }
    if (x.client_gone) {
      metrics.client_disconnects += x.responded ? 0 : 1;
      if (!x.responded) metrics.count_response(ri.route, 0);
      spdlog::info("{} {} client disconnected; backend request cancelled ({} bytes relayed)", req.method_string(),
                   route_name(ri.route), x.bytes_out);
      co_return false;
    }
    if (!x.pipelined.empty()) {
      auto mb = cbuf.prepare(x.pipelined.size());
      net::buffer_copy(mb, net::buffer(x.pipelined));
      cbuf.commit(x.pipelined.size());
    }
    spdlog::info("{} {} -> {} in={}B out={}B {:.1f}ms{}{}", std::string_view(b.method_string()), route_name(ri.route),
                 x.status, b.body().size(), x.bytes_out,
                 std::chrono::duration<double, std::milli>(Clock::now() - t0).count(),
                 x.signed_id.empty() ? "" : " signed id=", x.signed_id);
    co_return x.client_reusable;
  }

  // ----- local endpoints ---------------------------------------------------------------------

  json::object version_json() {
    json::object o;
    o["name"] = "private-inference";
    o["version"] = std::string(kVersion);
    json::object t;
    t["mode"] = tee.dstack ? "dstack" : "none";
    t["endpoint"] = tee.dstack ? tee.dstack->describe() : "";
    t["simulated"] = tee.simulated;
    t["agent_version"] = tee.agent_version;
    o["tee"] = std::move(t);
    o["signing_keys"] = tee.keys_from_tee ? "dstack-derived (GetKey: stable across restarts)"
                                          : "random (no TEE agent: the identity changes on every restart)";
    json::object addrs;
    addrs["ecdsa"] = identity.signing_address(protocol::SigningAlgo::Ecdsa);
    addrs["ed25519"] = identity.signing_address(protocol::SigningAlgo::Ed25519);
    o["signing_addresses"] = std::move(addrs);
    json::object g;
    g["mode"] = !tee.gpu ? "off" : (tee.gpu_required ? "required" : "auto");
    g["available"] = tee.gpu && tee.gpu->available();
    g["simulated"] = tee.gpu && tee.gpu->simulated();
    if (tee.gpu && !tee.gpu->available()) g["error"] = tee.gpu->load_error();
    o["gpu_evidence"] = std::move(g);
    o["simulated"] = tee.simulated || (tee.gpu && tee.gpu->simulated());
    return o;
  }

  awaitable<bool> signature(beast::tcp_stream& client, const Request& req, Target t, const std::string& owner,
                            Clock::time_point t0) {
    const bool keep = req.keep_alive();
    std::string id = percent_decode(t.path.substr(std::string_view("/v1/signature/").size()));
    auto algo_s = query_param(t.query, "signing_algo").value_or("ecdsa");
    auto algo = protocol::parse_signing_algo(algo_s);
    if (!algo) {
      auto pending = make_error(http::status::bad_request, "signing_algo must be 'ecdsa' or 'ed25519'",
                                "invalid_request_error", "invalid_signing_algo", keep, true, "signing_algo");
      co_return co_await send(client, std::move(pending), Route::Signature, t0);
    }
    auto rec = id.empty() ? std::nullopt : store.get(owner + '\x1f' + id);
    if (!rec) {
      auto pending = make_error(http::status::not_found, "Chat id not found or expired", "invalid_request_error",
                                "signature_not_found", keep, true);
      co_return co_await send(client, std::move(pending), Route::Signature, t0);
    }
    co_return co_await send(
        client, make_json(http::status::ok, json::serialize(protocol::signature_response(*rec, identity, *algo)), keep),
        Route::Signature, t0);
  }

  awaitable<bool> attestation(beast::tcp_stream& client, const Request& req, Target t, Clock::time_point t0) {
    const bool keep = req.keep_alive();
    auto fail = [&](http::status st, const std::string& msg, std::string_view type, std::string_view code,
                    std::optional<std::string_view> param = std::nullopt) {
      return make_error(st, msg, type, code, keep, true, param);
    };
    // Nonce: exactly 64 hex digits, else 400; absent → fresh random.
    protocol::Nonce nonce{};
    bool nonce_given = false;
    if (auto n = query_param(t.query, "nonce"); n && !n->empty()) {
      nonce_given = true;
      auto parsed = protocol::parse_nonce(*n);
      if (!parsed) {
        auto pending = fail(http::status::bad_request, "nonce must be exactly 64 hexadecimal characters (32 bytes)",
                            "invalid_request_error", "invalid_nonce", "nonce");
        co_return co_await send(client, std::move(pending), Route::Attestation, t0);
      }
      nonce = *parsed;
    } else {
      crypto::random_fill(nonce);
    }
    std::optional<protocol::SigningAlgo> algo;
    if (auto a = query_param(t.query, "signing_algo"); a && !a->empty()) {
      algo = protocol::parse_signing_algo(*a);
      if (!algo) {
        auto pending = fail(http::status::bad_request, "signing_algo must be 'ecdsa' or 'ed25519'",
                            "invalid_request_error", "invalid_signing_algo", "signing_algo");
        co_return co_await send(client, std::move(pending), Route::Attestation, t0);
      }
    }
    if (auto addr = query_param(t.query, "signing_address"); addr && !addr->empty()) {
      std::optional<protocol::SigningAlgo> match;
      for (auto cand : {protocol::SigningAlgo::Ecdsa, protocol::SigningAlgo::Ed25519})
        if (iequals(*addr, identity.signing_address(cand)) && (!algo || *algo == cand)) match = cand;
      if (!match) {
        auto pending = fail(http::status::not_found, "This server does not hold the requested signing_address",
                            "invalid_request_error", "signing_address_not_found", "signing_address");
        co_return co_await send(client, std::move(pending), Route::Attestation, t0);
      }
      algo = match;
    }
    const auto a = algo.value_or(protocol::SigningAlgo::Ecdsa);
    if (!tee.dstack)
      co_return co_await send(
          client,
          make_error(http::status::service_unavailable,
                     "Attestation is unavailable: this proxy is not running in a TEE (no dstack guest agent socket was "
                     "found). Inference and response signatures still work, but nothing proves where they were made.",
                     "server_error", "tee_unavailable", keep, true),
          Route::Attestation, t0);
    if (attest_inflight.fetch_add(1) >= cfg.max_concurrent_attestations) {
      attest_inflight--;
      metrics.attestation_rejected_busy++;
      auto res = make_error(http::status::too_many_requests, "Too many attestation requests in flight; retry shortly",
                            "rate_limit_error", "attestation_busy", keep, false);
      res.set(http::field::retry_after, "1");
      co_return co_await send(client, std::move(res), Route::Attestation, t0);
    }
    struct Guard {
      std::atomic<std::size_t>& c;
      ~Guard() { c--; }
    } guard{attest_inflight};

    // GPU evidence first: without a client nonce the cached evidence decides the nonce, so the
    // TDX quote and the GPU reports are bound to the same value.
    std::optional<tee::GpuEvidenceResult> gpu_result;
    if (tee.gpu) {
      if (nonce_given) {
        gpu_result = co_await tee.gpu->collect(nonce);
      } else {
        gpu_result = co_await tee.gpu->collect_cached();
        if (gpu_result->ok())
          if (auto n = protocol::parse_nonce(gpu_result->nonce_hex)) nonce = *n;
      }
      if (gpu_result->status == tee::GpuEvidenceStatus::Busy) {
        metrics.attestation_rejected_busy++;
        auto res =
            make_error(http::status::too_many_requests, "Too many GPU evidence collections in flight; retry shortly",
                       "rate_limit_error", "gpu_evidence_busy", keep, false);
        res.set(http::field::retry_after, std::to_string(std::max(1u, gpu_result->retry_after_s)));
        co_return co_await send(client, std::move(res), Route::Attestation, t0);
      }
      if (tee.gpu_required && !gpu_result->ok()) {
        auto pending =
            make_error(http::status::service_unavailable,
                       "GPU evidence is required by this server but could not be collected: " + gpu_result->error,
                       "server_error", "gpu_evidence_unavailable", keep, false);
        co_return co_await send(client, std::move(pending), Route::Attestation, t0);
      }
    }

    const auto report_data = protocol::make_report_data(identity.address_bytes(a), nonce);
    tee::DstackClient dc(co_await net::this_coro::executor, *tee.dstack, std::chrono::seconds(30));
    json::object report;
    std::string agent_error;
    try {
      auto q = co_await dc.get_quote(report_data);
      json::object info;
      {
        std::lock_guard lk(info_mu);
        if (info_cache) info = *info_cache;
      }
      if (info.empty()) {
        info = co_await dc.info();
        std::lock_guard lk(info_mu);
        info_cache = info;
      }
      const bool simulated = tee.simulated || q.simulated || (gpu_result && gpu_result->simulated);
      report["signing_address"] = identity.signing_address(a);
      report["signing_algo"] = protocol::to_string(a);
      report["signing_public_key"] = identity.signing_public_key(a);
      report["request_nonce"] = to_hex(nonce);
      report["intel_quote"] = q.quote_hex;
      report["quote"] = q.quote_hex;
      boost::system::error_code jec;
      auto ev = json::parse(q.event_log, jec);
      report["event_log"] = jec ? json::value(q.event_log) : std::move(ev);
      report["vm_config"] = q.vm_config;
      report["info"] = std::move(info);
      if (gpu_result) {
        gpu_result->apply_to(report);
      } else {
        report["nvidia_payload"] = nullptr;
        report["gpu_evidence"] = nullptr;
        report["gpu_evidence_error"] = "GPU evidence collection is disabled on this server (--gpu-evidence off)";
      }
      report["simulated"] = simulated;
      if (simulated)
        report["simulated_notice"] =
            "SIMULATED evidence (dev-tee and/or the simulated NVML): it is not produced by TEE hardware and "
            "proves nothing";
    } catch (const std::exception& e) {
      agent_error = e.what();
    }
    if (!agent_error.empty()) {
      metrics.attestation_errors++;
      spdlog::error("attestation failed at the TEE agent: {}", agent_error);
      {
        auto pending = make_error(http::status::bad_gateway, "The TEE agent failed: " + agent_error, "server_error",
                                  "tee_agent_error", keep, false);
        co_return co_await send(client, std::move(pending), Route::Attestation, t0);
      }
    }
    json::object self = report;
    report["all_attestations"] = json::array{std::move(self)};
    {
      auto pending = make_json(http::status::ok, json::serialize(report), keep);
      co_return co_await send(client, std::move(pending), Route::Attestation, t0);
    }
  }

  awaitable<std::optional<std::string>> backend_get(Worker& w, std::string path) {
    beast::error_code ec;
    auto conn = co_await acquire(w, false, ec);
    if (!conn) co_return std::nullopt;
    http::request<http::empty_body> r{http::verb::get, cfg.backend.prefix + path, 11};
    r.set(http::field::host, cfg.backend.host_header());
    if (!cfg.backend_api_key.empty()) r.set(http::field::authorization, "Bearer " + cfg.backend_api_key);
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

  awaitable<bool> metrics_endpoint(Worker& w, beast::tcp_stream& client, const Request& req, Clock::time_point t0) {
    std::string body = metrics.render(store.size(), store.capacity());
    if (tee.gpu) tee.gpu->render_metrics(body);
    auto backend = co_await backend_get(w, "/metrics");
    body += "\n# ---- backend /metrics ----\n";
    body += backend ? *backend : std::string("# backend /metrics unavailable\n");
    Response res{http::status::ok, 11};
    res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    co_return co_await send(client, std::move(res), Route::Metrics, t0);
  }

  // ----- request dispatch --------------------------------------------------------------------

  awaitable<bool> handle(Worker& w, beast::tcp_stream& client, beast::flat_buffer& cbuf, Request& req,
                         Clock::time_point t0) {
    const bool keep = req.keep_alive();
    const Target t = split_target(req.target());
    const RouteInfo ri = classify(t.path);
    if (ri.route == Route::Other) {
      spdlog::info("{} (unknown route) -> 404", std::string_view(req.method_string()));
      {
        auto pending =
            make_error(http::status::not_found, "Unknown endpoint", "invalid_request_error", "unknown_url", keep, true);
        co_return co_await send(client, std::move(pending), Route::Other, t0);
      }
    }
    if (req.method() != ri.method) {
      auto res = make_error(http::status::method_not_allowed,
                            std::string("Method not allowed; use ") + std::string(http::to_string(ri.method)),
                            "invalid_request_error", "method_not_allowed", keep, true);
      res.set(http::field::allow, http::to_string(ri.method));
      co_return co_await send(client, std::move(res), ri.route, t0);
    }
    std::string owner;
    const auto authz = req[http::field::authorization];
    if (!cfg.public_endpoints.contains(ri.category) || (ri.route == Route::Signature && !authz.empty())) {
      auto o = auth.authenticate(authz);
      if (!o) {
        auto res = make_error(http::status::unauthorized, "Missing or invalid bearer token", "authentication_error",
                              "invalid_api_key", keep, true);
        res.set(http::field::www_authenticate, "Bearer");
        spdlog::info("{} {} -> 401", std::string_view(req.method_string()), route_name(ri.route));
        co_return co_await send(client, std::move(res), ri.route, t0);
      }
      owner = std::move(*o);
    }
    if (ri.forward) co_return co_await forward(w, client, cbuf, req, ri, std::move(owner), t0);
    bool reusable = false;
    switch (ri.route) {
      case Route::Version: {
        auto pending = make_json(http::status::ok, json::serialize(version_json()), keep);
        reusable = co_await send(client, std::move(pending), ri.route, t0);
      } break;
      case Route::Metrics:
        reusable = co_await metrics_endpoint(w, client, req, t0);
        break;
      case Route::Signature:
        reusable = co_await signature(client, req, t, owner, t0);
        break;
      case Route::Attestation:
        reusable = co_await attestation(client, req, t, t0);
        break;
      default:
        break;
    }
    spdlog::info("GET {} done {:.1f}ms", route_name(ri.route),
                 std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    co_return reusable;
  }

  awaitable<void> session(Worker& w, tcp::socket sock) {
    beast::tcp_stream client(std::move(sock));
    beast::flat_buffer cbuf;
    auto too_large = [this] {
      return make_error(http::status::payload_too_large,
                        "Request body too large. Maximum: " + std::to_string(cfg.max_body_bytes) + " bytes",
                        "invalid_request_error", "request_too_large", false, true);
    };
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(64 * 1024);
      parser.body_limit(cfg.max_body_bytes);
      client.expires_after(cfg.client_timeout);
      auto [hec, hn] = co_await http::async_read_header(client, cbuf, parser, kTuple);
      const auto t0 = Clock::now();
      if (hec == http::error::body_limit) {  // Beast checks a declared Content-Length while reading the header
        auto pending = too_large();
        co_await send(client, std::move(pending), Route::Other, t0);
        break;
      }
      if (hec) {
        if (hec != http::error::end_of_stream && hec != beast::error::timeout && hec != net::error::connection_reset &&
            hec != net::error::eof && hec != http::error::partial_message &&
            hec.category() == http::make_error_code(http::error::bad_target).category()) {
          auto pending = make_error(http::status::bad_request, "Malformed HTTP request: " + hec.message(),
                                    "invalid_request_error", "bad_request", false, true);
          co_await send(client, std::move(pending), Route::Other, t0);
        }
        break;
      }
      const bool keep = parser.get().keep_alive();
      if (iequals(parser.get()[http::field::expect], "100-continue")) {
        static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
        auto [cec, cn] = co_await net::async_write(client, net::buffer(k100), kTuple);
        if (cec) break;
      }
      auto [bec, bn] = co_await http::async_read(client, cbuf, parser, kTuple);
      client.expires_never();
      if (bec) {
        if (bec == http::error::body_limit) {
          auto pending = too_large();
          co_await send(client, std::move(pending), Route::Other, t0);
        } else if (bec.category() == http::make_error_code(http::error::bad_target).category() &&
                   bec != http::error::partial_message) {
          auto pending = make_error(http::status::bad_request, "Malformed HTTP request: " + bec.message(),
                                    "invalid_request_error", "bad_request", false, true);
          co_await send(client, std::move(pending), Route::Other, t0);
        }
        break;
      }
      Request req = parser.release();
      bool reusable = false;
      bool internal_error = false;
      try {
        reusable = co_await handle(w, client, cbuf, req, t0);
      } catch (const std::exception& e) {
        spdlog::error("internal error while handling a request: {}", e.what());
        internal_error = true;
      }
      if (internal_error) {
        {
          auto pending = make_error(http::status::internal_server_error, "Internal error", "server_error",
                                    "internal_error", false, false);
          co_await send(client, std::move(pending), Route::Other, t0);
        }
      }
      if (!reusable || !keep) break;
    }
    beast::error_code ignored;
    client.socket().shutdown(tcp::socket::shutdown_send, ignored);
    client.socket().close(ignored);
  }

  awaitable<void> accept_loop(Worker& w) {
    for (;;) {
      auto [ec, sock] = co_await w.acceptor->async_accept(kTuple);
      if (ec) {
        if (ec == net::error::operation_aborted || !w.acceptor->is_open()) co_return;
        spdlog::warn("accept failed: {}", ec.message());
        continue;
      }
      beast::error_code ignored;
      sock.set_option(tcp::no_delay(true), ignored);
      net::co_spawn(w.ioc, session(w, std::move(sock)), [](const std::exception_ptr& e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            spdlog::error("session ended with an error: {}", ex.what());
          }
        }
      });
    }
  }
};  // struct ProxyServer::Impl

ProxyServer::ProxyServer(ServerConfig cfg, protocol::SigningIdentity identity, TeeContext tee)
    : impl_(std::make_unique<Impl>(std::move(cfg), std::move(identity), std::move(tee))) {}
ProxyServer::~ProxyServer() = default;

unsigned short ProxyServer::bind() {
  auto& im = *impl_;
  unsigned n = im.cfg.threads ? im.cfg.threads : std::max(1u, std::thread::hardware_concurrency());
  {
    net::io_context tmp;
    tcp::resolver r(tmp);
    for (const auto& e : r.resolve(im.cfg.backend.host, im.cfg.backend.port))
      im.backend_endpoints.push_back(e.endpoint());
    if (im.backend_endpoints.empty()) throw std::runtime_error("backend host did not resolve: " + im.cfg.backend.host);
  }
  auto addr = net::ip::make_address(im.cfg.listen.host);
  unsigned short port = im.cfg.listen.port;
  for (unsigned i = 0; i < n; ++i) {
    auto w = std::make_unique<Impl::Worker>();
    tcp::endpoint ep(addr, port);
    w->acceptor.emplace(w->ioc);
    w->acceptor->open(ep.protocol());
    w->acceptor->set_option(net::socket_base::reuse_address(true));
    int one = 1;
    ::setsockopt(w->acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    w->acceptor->bind(ep);
    w->acceptor->listen(net::socket_base::max_listen_connections);
    port = w->acceptor->local_endpoint().port();  // an ephemeral port is shared by the next workers
    im.workers.push_back(std::move(w));
  }
  im.port = port;
  return port;
}

void ProxyServer::run(bool handle_signals) {
  auto& im = *impl_;
  if (im.workers.empty()) bind();
  std::optional<net::signal_set> signals;
  if (handle_signals) {
    signals.emplace(im.workers[0]->ioc, SIGINT, SIGTERM);
    signals->async_wait([this](const boost::system::error_code& ec, int sig) {
      if (!ec) {
        spdlog::info("signal {} received: shutting down", sig);
        stop();
      }
    });
  }
  for (auto& w : im.workers) net::co_spawn(w->ioc, im.accept_loop(*w), net::detached);
  spdlog::info("listening on {}:{} ({} worker thread{})", im.cfg.listen.host, im.port, im.workers.size(),
               im.workers.size() == 1 ? "" : "s");
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < im.workers.size(); ++i) threads.emplace_back([&w = *im.workers[i]] { w.ioc.run(); });
  im.workers[0]->ioc.run();
  for (auto& t : threads) t.join();
  // The event loops have stopped: complete GPU-evidence requests still waiting before the loops
  // (and the coroutines parked on them) are destroyed.
  if (im.tee.gpu) im.tee.gpu->shutdown();
}

void ProxyServer::stop() {
  for (auto& w : impl_->workers) w->ioc.stop();
}

}  // namespace pi::server
