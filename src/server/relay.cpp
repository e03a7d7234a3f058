#include "server/relay.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>

#include "protocol/json_check.hpp"
#include "server/error.hpp"
#include "server/response_signer.hpp"
#include "server/routes.hpp"
#include "server/session.hpp"
#include "server/stream_pump.hpp"
#include "version.hpp"

namespace pi::server {

using namespace net::experimental::awaitable_operators;

namespace {

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

// What the client did while the engine worked. The watcher sets it; the exchange reads it.
struct ClientWatch {
  bool gone = false;              // EOF / error / misbehaviour: cancel the engine's work
  std::string pipelined;          // bytes the client sent meanwhile (its next request)
  tcp::socket* engine = nullptr;  // the engine connection in use, cut when the client goes
  void cut_engine() {
    if (engine == nullptr) return;
    beast::error_code ignored;
    engine->shutdown(tcp::socket::shutdown_both, ignored);
    engine->close(ignored);
  }
};

// How far the answer to the client got.
enum class Progress {
  Nothing,  // nothing written yet
  Started,  // status line (and maybe part of the body) written
  Judged,   // the stream ended and was judged (signed or not); only its last bytes may be missing
  Finished  // the whole answer was written
};

struct Exchange {
  explicit Exchange(Call& c) : call(c) {}
  Call& call;
  std::optional<ResponseSigner> signer;  // signed routes: holds the store reservation
  http::request<http::string_body> engine_req;
  ClientWatch watch;
  Progress progress = Progress::Nothing;
  bool reusable = false;  // the client connection may carry another request
  unsigned status = 0;
  std::size_t bytes_out = 0;
  std::string signed_id;

  Services& svc() { return call.svc(); }
  const ServerConfig& cfg() { return call.svc().cfg; }
};

void note_signature(Exchange& x, const SignResult& r) {
  auto& m = x.svc().metrics;
  switch (r.outcome) {
    case SignOutcome::Signed:
      m.signatures_created++;
      x.signed_id = r.id;
      break;
    case SignOutcome::Collision:
      m.signature_id_collisions++;
      spdlog::warn("signature id {} already has a record; the existing record was kept", r.id);
      break;
    case SignOutcome::NoId:
      m.unsigned_no_id++;
      break;
    case SignOutcome::Incomplete:
      m.unsigned_incomplete++;
      break;
    case SignOutcome::NotSignable:
      break;
    case SignOutcome::StoreFailed:  // the store has logged why
      spdlog::error("the signature record for id {} could not be stored: the answer is not signed", r.id);
      break;
  }
}

awaitable<void> respond_error(Exchange& x, const HttpError& e) {
  x.signer.reset();
  x.status = static_cast<unsigned>(e.status);
  x.progress = Progress::Finished;
  x.reusable = co_await send_response(x.call, e.render(x.call.keep_alive()));
}

awaitable<void> engine_failure(Exchange& x, beast::error_code ec) {
  if (ec == beast::error::timeout) {
    x.svc().metrics.backend_timeouts++;
    co_await respond_error(
        x, HttpError::gateway_timeout("The inference backend did not answer in time", "backend_timeout"));
  } else {
    x.svc().metrics.backend_connect_errors++;
    co_await respond_error(x, HttpError::bad_gateway("The inference backend failed: " + ec.message(), "backend_error"));
  }
}

// A non-streamed answer: read whole (bounded), signed before it is sent so the record exists (is
// durable, for a durable store) by the time the client has the answer. A record the store could not
// write makes the answer a 503: the client was promised a signature for every answer it gets.
awaitable<void> relay_whole(Exchange& x, EngineConn& conn, beast::flat_buffer& buf,
                            http::response_parser<http::buffer_body>& head) {
  const bool ok_status = head.get().result_int() >= 200 && head.get().result_int() < 300;
  http::response_parser<http::string_body> sp{std::move(head)};
  sp.body_limit(x.cfg().max_backend_body_bytes);
  conn.stream.expires_after(x.cfg().backend_timeout);
  auto [ec, n] = co_await http::async_read(conn.stream, buf, sp, kTuple);
  x.watch.engine = nullptr;
  if (ec) {
    if (!x.watch.gone) co_await engine_failure(x, ec);
    co_return;
  }
  auto eres = sp.release();
  const bool engine_keep = eres.keep_alive();
  Response res{eres.result(), 11};
  copy_end_to_end_headers(eres, res);
  res.set(http::field::server, kServerName);
  res.body() = std::move(eres.body());
  res.keep_alive(x.call.keep_alive());
  if (engine_keep) x.call.worker.pool.release(conn);
  if (x.signer && ok_status) {
    const auto r = co_await x.signer->sign_body(res.body());
    note_signature(x, r);
    if (r.outcome == SignOutcome::StoreFailed) {
      co_await respond_error(x, HttpError::unavailable("The signature store could not record this answer's signature",
                                                       "signature_store_error", false));
      co_return;
    }
    if (r.outcome == SignOutcome::Signed) res.set("X-Signature-Id", r.id);
  }
  x.signer.reset();
  res.prepare_payload();
  x.progress = Progress::Finished;
  x.bytes_out = res.body().size();
  x.reusable = co_await send_response(x.call, std::move(res));
}

// A Server-Sent-Events answer: passed through chunk by chunk; judged when the engine's stream ends.
awaitable<void> relay_stream(Exchange& x, EngineConn& conn, beast::flat_buffer& buf,
                             http::response_parser<http::buffer_body>& head) {
  auto& client = x.call.client.stream;
  http::response<http::empty_body> cres{head.get().result(), 11};
  copy_end_to_end_headers(head.get(), cres);
  cres.set(http::field::server, kServerName);
  cres.keep_alive(x.call.keep_alive());
  cres.chunked(true);
  http::response_serializer<http::empty_body> sr{cres};
  client.expires_after(x.cfg().client_timeout);
  auto [hec, hn] = co_await http::async_write_header(client, sr, kTuple);
  client.expires_never();
  x.progress = Progress::Started;
  if (hec) {
    x.watch.gone = true;
    co_return;
  }
  conn.stream.expires_never();  // the pump's watchdog keeps the time from here
  ResponseSigner* signer = x.signer ? &*x.signer : nullptr;
  auto r = co_await pump_stream(client.socket(), conn.stream.socket(), buf, head, signer, x.cfg());
  x.watch.engine = nullptr;
  x.bytes_out = r.bytes;
  if (r.client_gone) x.watch.gone = true;
  // A close-delimited stream (no chunking, no length) ends with the engine closing: a cut and a
  // clean end look the same, so only the stream's own completion event makes it complete.
  const bool close_delimited = !head.chunked() && !head.content_length();
  if (close_delimited && signer != nullptr && !signer->stream_completed()) r.engine_failed = true;
  if (x.watch.gone || r.engine_failed) {
    // No signature: the stream is incomplete. Abort the client connection so the client sees a
    // broken stream rather than a clean end.
    if (r.engine_failed && r.engine_timed_out) x.svc().metrics.backend_timeouts++;
    note_signature(x, {SignOutcome::Incomplete, {}});
    x.signer.reset();
    if (x.watch.gone) x.svc().metrics.client_disconnects++;
    beast::error_code ignored;
    client.socket().shutdown(tcp::socket::shutdown_both, ignored);
    client.socket().close(ignored);
    conn.stream.socket().close(ignored);
    x.reusable = false;
    co_return;
  }
  if (head.keep_alive()) x.call.worker.pool.release(conn);
  // The record is committed (durable) before the held bytes and the last chunk leave.
  if (x.signer) {
    const auto sr = co_await x.signer->finish_stream();
    note_signature(x, sr);
    if (sr.outcome == SignOutcome::StoreFailed) {  // not signed: the client sees a broken stream
      x.signer.reset();
      beast::error_code ignored;
      client.socket().shutdown(tcp::socket::shutdown_both, ignored);
      client.socket().close(ignored);
      x.reusable = false;
      co_return;
    }
  }
  x.signer.reset();
  x.progress = Progress::Judged;
  client.expires_after(x.cfg().client_timeout);
  if (!r.held.empty()) {
    auto [wec, wn] = co_await net::async_write(client, http::make_chunk(net::buffer(r.held)), kTuple);
    if (wec) x.watch.gone = true;
  }
  if (!x.watch.gone) {
    auto [lec, ln] = co_await net::async_write(client, http::make_chunk_last(), kTuple);
    if (lec) x.watch.gone = true;
  }
  client.expires_never();
  auto& m = x.svc().metrics;
  m.count_response(x.call.route.metric, x.status);
  m.bytes_out += x.bytes_out;
  m.observe_duration(x.call.route.metric, x.call.t0);
  if (!x.watch.gone) x.progress = Progress::Finished;
  x.reusable = !x.watch.gone && x.call.keep_alive();
}

// Sends the request on a pooled (or new) engine connection and relays the answer. A kept-alive
// connection the engine had already closed is retried once on a fresh one.
awaitable<void> exchange(Exchange& x) {
  co_await net::this_coro::throw_if_cancelled(false);  // the watcher winning must not throw here
  for (int attempt = 0; attempt < 2; ++attempt) {
    beast::error_code ec;
    auto conn = co_await x.call.worker.pool.acquire(attempt == 0, ec);
    if (!conn) {
      x.svc().metrics.backend_connect_errors++;
      spdlog::warn("backend connect failed: {}", ec.message());
      co_await respond_error(
          x, HttpError::bad_gateway("The inference backend is unavailable: " + ec.message(), "backend_unavailable"));
      break;
    }
    x.watch.engine = &conn->stream.socket();
    conn->stream.expires_after(x.cfg().backend_timeout);
    auto [wec, wn] = co_await http::async_write(conn->stream, x.engine_req, kTuple);
    beast::flat_buffer buf;
    http::response_parser<http::buffer_body> head;
    head.body_limit(boost::none);
    beast::error_code hec = wec;
    if (!hec) {
      auto [e2, n2] = co_await http::async_read_header(conn->stream, buf, head, kTuple);
      hec = e2;
    }
    if (hec) {
      x.watch.engine = nullptr;
      if (x.watch.gone) break;
      if (conn->reused && attempt == 0 && buf.size() == 0 &&
          (hec == http::error::end_of_stream || hec == net::error::connection_reset || hec == net::error::broken_pipe ||
           hec == net::error::eof))
        continue;
      co_await engine_failure(x, hec);
      break;
    }
    x.status = head.get().result_int();
    const bool sse = head.get().result() == http::status::ok &&
                     head.get()[http::field::content_type].substr(0, 17) == "text/event-stream";
    if (sse)
      co_await relay_stream(x, *conn, buf, head);
    else
      co_await relay_whole(x, *conn, buf, head);
    x.watch.engine = nullptr;
    break;
  }
  // Stop the watcher (in case per-operation cancellation did not reach it).
  beast::error_code ignored;
  x.call.client.stream.socket().cancel(ignored);
}

// Watches the client socket while the engine works: EOF/error means the client is gone, so the
// engine request is cancelled by closing its connection (llama.cpp and vLLM abort generation when
// their client disconnects). Bytes that arrive are kept for the next request.
awaitable<void> watch_client(Exchange& x) {
  co_await net::this_coro::throw_if_cancelled(false);
  std::array<char, 512> tmp{};  // only pipelined bytes or EOF are expected here
  for (;;) {
    auto [ec, n] = co_await x.call.client.stream.socket().async_read_some(net::buffer(tmp), kTuple);
    if (ec) {
      if (ec != net::error::operation_aborted) {
        x.watch.gone = true;
        x.watch.cut_engine();
      }
      co_return;
    }
    if (x.watch.pipelined.size() + n > x.cfg().max_body_bytes + 65536) {  // not a well-behaved HTTP/1.1 client
      x.watch.gone = true;
      x.watch.cut_engine();
      co_return;
    }
    x.watch.pipelined.append(tmp.data(), n);
  }
}

std::optional<HttpError> refuse_before_forwarding(const Call& call) {
  const auto& req = call.req;
  if (!req["X-Client-Pub-Key"].empty() || !req["X-Encryption-Version"].empty())
    // vllm-proxy's end-to-end encryption is not implemented yet. Refuse rather than forward:
    // a client that believes its prompt is encrypted must not get a plaintext answer.
    return HttpError::bad_request(
        "End-to-end encryption headers (X-Client-Pub-Key / X-Encryption-Version) are not supported by this server "
        "yet; send the request without them",
        "e2ee_unsupported");
  if (call.route.handling == Handling::ForwardSigned) {
    // Malformed JSON is answered here, in the OpenAI envelope, rather than by the engine. Validated
    // without building a document and without a depth limit (structured-output schemas nest deep);
    // the bytes forwarded are the bytes received.
    if (auto e = protocol::check_json_object(req.body()))
      return HttpError::bad_request(
          "The request body is not valid JSON: " + e->message + " at byte " + std::to_string(e->offset),
          "invalid_json");
  }
  return std::nullopt;
}

// The request as the engine gets it: the client's body bytes (moved), the engine's Host, our
// User-Agent and the engine's own key. Client X-Request-Id / X-Request-Hash are deliberately not
// forwarded: engines derive response ids from X-Request-Id, and ids key the signature records.
void build_engine_request(Exchange& x) {
  auto& req = x.call.req;
  const auto& cfg = x.cfg();
  auto& b = x.engine_req;
  b.method(req.method());
  b.target(cfg.backend.prefix + std::string(req.target()));
  b.version(11);
  b.set(http::field::host, cfg.backend.host_header());
  b.set(http::field::user_agent, "private-inference/" + std::string(kVersion));
  if (auto ct = req[http::field::content_type]; !ct.empty()) b.set(http::field::content_type, ct);
  if (auto ac = req[http::field::accept]; !ac.empty()) b.set(http::field::accept, ac);
  if (!cfg.backend_api_key.empty()) b.set(http::field::authorization, "Bearer " + cfg.backend_api_key);
  b.body() = std::move(req.body());  // the exact bytes, moved, never re-serialized
  b.keep_alive(true);
  b.prepare_payload();
}

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

}  // namespace

awaitable<bool> relay(Call& call) {
  auto& svc = call.svc();
  if (auto refusal = refuse_before_forwarding(call))
    co_return co_await send_response(call, refusal->render(call.keep_alive()));
  Exchange x(call);
  if (call.route.handling == Handling::ForwardSigned) {
    x.signer = ResponseSigner::begin(*svc.store, svc.tee.instance_id, call.owner, call.req.body());
    if (!x.signer) {
      svc.metrics.store_full_rejections++;
      auto e = HttpError::unavailable("The signature store is full (every record is still inside its TTL); retry later",
                                      "signature_store_full", false);
      e.with_header(http::field::retry_after, std::to_string(svc.store->retry_after().count()));
      co_return co_await send_response(call, e.render(call.keep_alive()));
    }
  }
  svc.metrics.bytes_in += call.req.body().size();
  build_engine_request(x);
  svc.metrics.inflight++;
  co_await (exchange(x) || watch_client(x));
  svc.metrics.inflight--;
  x.signer.reset();
  const std::string_view method = x.engine_req.method_string();
  const std::string_view route = call.route.label;
  if (x.watch.gone && x.progress == Progress::Judged) {
    // Clients such as the openai SDK stop reading at [DONE] and close before the final
    // zero-length chunk: the exchange completed (and was judged) all the same.
    spdlog::info("{} {} -> {} out={}B {:.1f}ms{}{} (client closed after the last event)", method, route, x.status,
                 x.bytes_out, ms_since(call.t0), x.signed_id.empty() ? "" : " signed id=", x.signed_id);
    co_return false;
  }
  if (x.watch.gone) {
    if (x.progress == Progress::Nothing) {
      svc.metrics.client_disconnects++;
      svc.metrics.count_response(call.route.metric, 0);
    }
    spdlog::info("{} {} client disconnected; backend request cancelled ({} bytes relayed)", method, route, x.bytes_out);
    co_return false;
  }
  if (!x.watch.pipelined.empty()) {
    auto& cbuf = call.client.buffer;
    auto mb = cbuf.prepare(x.watch.pipelined.size());
    net::buffer_copy(mb, net::buffer(x.watch.pipelined));
    cbuf.commit(x.watch.pipelined.size());
  }
  spdlog::info("{} {} -> {} in={}B out={}B {:.1f}ms{}{}", method, route, x.status, x.engine_req.body().size(),
               x.bytes_out, ms_since(call.t0), x.signed_id.empty() ? "" : " signed id=", x.signed_id);
  co_return x.reusable;
}

}  // namespace pi::server
