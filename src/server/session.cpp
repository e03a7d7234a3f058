#include "server/session.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/write.hpp>
#include <boost/range/iterator_range.hpp>
#include <tuple>

#include "net/http_io.hpp"
#include "server/error.hpp"
#include "server/relay.hpp"
#include "server/routes.hpp"

namespace pi::server {

namespace net_io = pi::net;

namespace {

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// The answer to a request that could not be read (nullopt: the connection just ends), by the rule
// dev-tee's server shares (net/http_io.hpp); a spent buffer budget is ours.
std::optional<HttpError> read_failure(const beast::error_code& ec, std::size_t max_body, Metrics& m) {
  if (ec == boost::system::errc::no_buffer_space) {
    m.buffer_full_rejections++;
    return HttpError::unavailable("The server holds too much request data right now; retry shortly", "server_busy",
                                  false)
        .with_header(http::field::retry_after, "1");
  }
  switch (net_io::classify_request_error(ec)) {
    case net_io::RequestRead::TooLarge:
      return HttpError::payload_too_large(max_body);
    case net_io::RequestRead::Malformed:
      return HttpError::malformed_http(ec.message());
    default:
      return std::nullopt;
  }
}

// RFC 9112 §6.3: a request whose final transfer coding is not chunked cannot be framed, and any
// coding but chunked would reach the engine as bytes it cannot read. Only `chunked` alone is
// accepted; Beast itself refuses Transfer-Encoding together with Content-Length.
bool acceptable_transfer_encoding(const http::request_parser<http::string_body>::value_type& head) {
  std::size_t codings = 0;
  bool only_chunked = true;
  auto [first, last] = head.equal_range(http::field::transfer_encoding);
  for (const auto& f : boost::make_iterator_range(first, last)) {
    for (auto token : http::token_list(f.value())) {
      ++codings;
      only_chunked = only_chunked && iequals(token, "chunked");
    }
    if (f.value().find_first_not_of(" \t,") == std::string_view::npos) only_chunked = false;  // empty value
  }
  return codings == 0 ? head.count(http::field::transfer_encoding) == 0 : only_chunked && codings == 1;
}

// The caller's record namespace, or nullopt when the route needs a token and none valid was given.
std::optional<std::string> authorize(const Services& svc, const RouteSpec& r, std::string_view authorization) {
  const bool is_public = svc.cfg.public_endpoints.contains(r.group);
  if (is_public && !(r.token_scoped && !authorization.empty())) return std::string();
  return svc.auth.authenticate(authorization);
}

// Writes a response made before a Call existed (refusals at the head or body) and counts it. The
// answer to a HEAD request is its head alone (RFC 9110 §9.3.2), Content-Length included.
awaitable<bool> write_counted(Worker& w, ClientConn& c, Response res, std::size_t metric, Clock::time_point t0,
                              bool head_only = false) {
  auto& m = w.svc.metrics;
  m.count_response(metric, res.result_int());
  c.stream.expires_after(w.svc.cfg.client_timeout);
  beast::error_code ec;
  if (head_only) {
    http::response_serializer<http::string_body> sr{res};
    std::tie(ec, std::ignore) = co_await http::async_write_header(c.stream, sr, kTuple);
  } else {
    m.bytes_out += res.body().size();
    std::tie(ec, std::ignore) = co_await http::async_write(c.stream, res, kTuple);
  }
  c.stream.expires_never();
  m.observe_duration(metric, t0);
  co_return !ec && res.keep_alive();
}

// After an answer that ends the connection while the client may still be sending its body: stop
// sending, then read and drop what arrives for a short, bounded while, so that closing does not
// reset the connection before the client has read the answer (RFC 9112 §9.6).
awaitable<void> lingering_close(ClientConn& c) {
  beast::error_code ignored;
  c.stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  std::array<char, 4096> sink{};
  std::size_t drained = 0;
  c.stream.expires_after(std::chrono::seconds(2));
  while (drained < (1u << 20)) {
    auto [ec, n] = co_await c.stream.async_read_some(net::buffer(sink), kTuple);
    if (ec) break;
    drained += n;
  }
  c.stream.expires_never();
}

// Counts what lives in a scope: open connections, and requests from their head to the end of their
// answer (graceful shutdown waits for zero).
template <class T>
struct ScopedCount {
  explicit ScopedCount(std::atomic<T>& c) : n(c) { n++; }
  ScopedCount(const ScopedCount&) = delete;
  ScopedCount& operator=(const ScopedCount&) = delete;
  ~ScopedCount() { n--; }
  std::atomic<T>& n;
};

using RequestParser = http::request_parser<http::string_body>;

// Beast ends a line only at CRLF and, seeing a bare LF, waits for more bytes until the client times
// out. When the parser wants more input in the request head or a chunked body, the bytes it has left
// unconsumed are the start of a line it still needs (request line, header field, chunk size,
// trailer; chunk data is consumed as it arrives: eager), and no such line holds an LF but as the end of its
// CRLF. So an LF there without a CR before it is a bare-LF line ending: 400 at once (RFC 9112 §2.2
// lets a server refuse them; no client this proxy serves sends them). `from`: the bytes before it
// were looked at already, so each byte is looked at once.
bool bare_lf_pending(const beast::flat_buffer& buf, std::size_t from) {
  const auto data = buf.data();
  const std::string_view pending(static_cast<const char*>(data.data()), data.size());
  for (auto at = pending.find('\n', from); at != std::string_view::npos; at = pending.find('\n', at + 1))
    if (at == 0 || pending[at - 1] != '\r') return true;
  return false;
}

// Reads the request head (head_only) or the rest of the request, charging the bytes the connection
// holds (its read buffer and the body) to the server-wide budget as they grow. no_buffer_space: the
// budget is spent; bad_line_ending: a bare LF (above). The loop is Beast's async_read_some with
// the bare-LF look before each wait for more bytes (Beast's own waits inside).
awaitable<beast::error_code> read_charged(ClientConn& c, RequestParser& p, BudgetHold& held, bool head_only) {
  std::size_t checked = 0;        // leading bytes of c.buffer already looked at for bare LFs
  if (!head_only) p.eager(true);  // each put parses all it can, so only an unfinished line is left
  for (;;) {
    if (head_only ? p.is_header_done() : p.is_done()) co_return beast::error_code{};
    if (c.buffer.size() != 0) {
      beast::error_code ec;
      const std::size_t used = p.put(c.buffer.data(), ec);
      c.buffer.consume(used);
      checked -= std::min(checked, used);
      if (ec && ec != http::error::need_more) co_return ec;
      if (!ec && used != 0) continue;
      if (head_only || p.chunked()) {
        if (bare_lf_pending(c.buffer, checked)) co_return http::error::bad_line_ending;
        checked = c.buffer.size();
      }
    }
    const auto space = c.buffer.prepare(beast::read_size(c.buffer, 65536));
    auto [ec, n] = co_await c.stream.async_read_some(space, kTuple);
    c.buffer.commit(n);
    if (!held.hold(c.buffer.capacity() + p.get().body().capacity()))
      co_return make_error_code(boost::system::errc::no_buffer_space);
    if (ec == net::error::eof) {
      if (!p.got_some()) co_return http::error::end_of_stream;
      beast::error_code eec;
      p.put_eof(eec);  // a close may end a message only where its framing allows
      if (eec) co_return eec;
      continue;
    }
    if (ec) co_return ec;
  }
}

awaitable<bool> dispatch(Call& call) {
  if (call.route.handling != Handling::Local) co_return co_await relay(call);
  Response res = co_await call.route.handler(call);
  const bool reusable = co_await send_response(call, std::move(res));
  spdlog::info("GET {} done {:.1f}ms", call.route.label, ms_since(call.t0));
  co_return reusable;
}

}  // namespace

awaitable<bool> send_response(Call& call, Response res) {
  co_return co_await write_counted(call.worker, call.client, std::move(res), call.route.metric, call.t0);
}

awaitable<void> run_session(Worker& w, tcp::socket socket) {
  const auto& cfg = w.svc.cfg;
  ScopedCount counted(w.svc.connections);
  ClientConn c(std::move(socket));
  bool linger = false;  // close with a lingering drain: the client may still be sending
  for (;;) {
    if (w.svc.draining) break;
    if (c.buffer.size() == 0) c.buffer.shrink_to_fit();  // an idle connection keeps no large buffer
    RequestParser parser;
    parser.header_limit(64 * 1024);
    parser.body_limit(cfg.max_body_bytes);
    BudgetHold held(w.svc.buffered);
    c.stream.expires_after(cfg.client_timeout);
    w.idle.insert(&c.stream);
    const auto hec = co_await read_charged(c, parser, held, true);
    w.idle.erase(&c.stream);
    const auto t0 = Clock::now();
    ScopedCount in_flight(w.svc.requests_inflight);
    if (hec) {
      auto e = read_failure(hec, cfg.max_body_bytes, w.svc.metrics);
      if (e) {
        co_await write_counted(w, c, e->render(false), other_metric(), t0);
        linger = true;
      }
      break;
    }

    auto& head = parser.get();
    if (!acceptable_transfer_encoding(head)) {
      auto e = HttpError::bad_request("Unsupported Transfer-Encoding: only 'chunked' is accepted",
                                      "unsupported_transfer_encoding");
      co_await write_counted(w, c, e.render(false), other_metric(), t0);
      linger = true;
      break;
    }

    // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host field gets 400.
    if (const auto hosts = head.count(http::field::host); hosts > 1 || (hosts == 0 && head.version() >= 11)) {
      auto e = HttpError::bad_request(hosts > 1 ? "More than one Host header field" : "Missing Host header field",
                                      "invalid_host");
      co_await write_counted(w, c, e.render(false), other_metric(), t0);
      linger = true;
      break;
    }

    // Route and token from the head alone: a request that will be refused never has its body read.
    auto match = match_route(split_target(head.target()).path, head.method());
    std::optional<HttpError> refusal = std::move(match.error);
    std::string owner;
    if (!refusal) {
      if (auto o = authorize(w.svc, *match.route, head[http::field::authorization]))
        owner = std::move(*o);
      else
        refusal = HttpError::unauthorized();
    }
    if (refusal) {
      const bool body_pending = !parser.is_done();
      spdlog::info("{} {} -> {}", std::string_view(head.method_string()),
                   match.route ? match.route->label : std::string_view("(unknown route)"),
                   static_cast<unsigned>(refusal->status));
      const bool reusable = co_await write_counted(w, c, refusal->render(head.keep_alive() && !body_pending),
                                                   match.route ? match.route->metric : other_metric(), t0,
                                                   head.method() == http::verb::head);
      linger = body_pending;
      if (!reusable) break;
      continue;
    }

    // A declared body is charged before it is read (and before 100 Continue invites it): refused at
    // once when the budget cannot hold it.
    beast::error_code bec;
    if (auto cl = parser.content_length(); cl && !held.hold(c.buffer.capacity() + *cl)) {
      bec = make_error_code(boost::system::errc::no_buffer_space);
    } else {
      // An HTTP/1.0 client cannot take an interim answer: its expectation is ignored (RFC 9110 §10.1.1).
      if (head.version() >= 11 && iequals(head[http::field::expect], "100-continue")) {
        static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
        auto [cec, cn] = co_await net::async_write(c.stream, net::buffer(k100), kTuple);
        if (cec) break;
      }
      bec = co_await read_charged(c, parser, held, false);
    }
    c.stream.expires_never();
    if (bec) {
      auto e = read_failure(bec, cfg.max_body_bytes, w.svc.metrics);
      if (e) {
        co_await write_counted(w, c, e->render(false), match.route->metric, t0);
        linger = true;
      }
      break;
    }

    Request req = parser.release();
    const bool keep = req.keep_alive();
    Call call{w, c, req, *match.route, split_target(req.target()), std::move(owner), t0};
    bool reusable = false;
    std::optional<HttpError> failure;
    try {
      reusable = co_await dispatch(call);
    } catch (const HttpErrorException& e) {  // a handler refused the request from deep inside
      failure = e.error;
    } catch (const std::exception& e) {
      spdlog::error("internal error while handling a request: {}", e.what());
      failure = HttpError::internal();
      failure->retry_useless = false;
    }
    if (failure) {
      const bool internal = failure->status == http::status::internal_server_error;
      reusable = co_await send_response(call, failure->render(keep && !internal)) && !internal;
    }
    if (!reusable || !keep || w.svc.draining) break;
  }
  beast::error_code ignored;
  if (linger && c.stream.socket().is_open()) co_await lingering_close(c);
  c.stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  c.stream.socket().close(ignored);
}

}  // namespace pi::server
