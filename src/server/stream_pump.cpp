#include "server/stream_pump.hpp"

#include <array>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>

namespace pi::server {

using namespace net::experimental::awaitable_operators;

namespace {

// State of one streamed exchange, shared by the pump and its watchdog.
struct StreamState {
  explicit StreamState(const net::any_io_executor& ex) : watchdog(ex) {}
  std::array<char, 4096> chunk{};  // per stream: SSE events are small; 4 KiB keeps 4096 streams lean
  Clock::time_point deadline;      // when the current wait (engine read or client write) times out
  bool writing = false;            // the current wait is a write to the client
  net::steady_timer watchdog;      // the watchdog's one timer
  bool done = false;               // the pump has finished: the watchdog must stop
  PumpResult result;
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

awaitable<void> pump(tcp::socket& client, tcp::socket& engine, beast::flat_buffer& buf,
                     http::response_parser<http::buffer_body>& parser, ResponseSigner* signer, const ServerConfig& cfg,
                     StreamState& st) {
  co_await net::this_coro::throw_if_cancelled(false);
  StopWatchdog stop(st);
  auto& r = st.result;
  while (!parser.is_done()) {
    parser.get().body().data = st.chunk.data();
    parser.get().body().size = st.chunk.size();
    st.deadline = Clock::now() + cfg.backend_timeout;
    auto [ec, n] = co_await http::async_read_some(engine, buf, parser, kTuple);
    const std::size_t got = st.chunk.size() - parser.get().body().size;
    if (got > 0) {
      std::string_view piece(st.chunk.data(), got);
      r.bytes += got;
      if (signer != nullptr) signer->feed(piece);
      if ((signer != nullptr && signer->stream_completed()) || !r.held.empty()) {
        r.held.append(piece);
      } else {
        st.writing = true;
        st.deadline = Clock::now() + cfg.client_timeout;
        auto [wec, wn] = co_await net::async_write(client, http::make_chunk(net::buffer(piece)), kTuple);
        st.writing = false;
        if (wec) {
          r.client_gone = true;
          break;
        }
      }
    }
    if (ec == http::error::need_buffer) continue;
    if (ec) {
      r.engine_failed = true;
      break;
    }
  }
}

// Enforces StreamState::deadline with one timer that wakes at most every quarter of the shorter
// timeout (so a deadline moved earlier is noticed late by at most that much). On expiry it closes
// the socket being waited on; the pump then sees the error. Returns when the pump has finished
// (StopWatchdog) or the exchange is cancelled.
awaitable<void> watchdog(StreamState& st, tcp::socket& engine, tcp::socket& client, const ServerConfig& cfg) {
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
        st.result.engine_timed_out = true;
        engine.close(ignored);
      }
    }
    st.watchdog.expires_at(fired ? Clock::time_point::max() : std::min(st.deadline, now + tick));
    auto [ec] = co_await st.watchdog.async_wait(kTuple);
    if (ec) co_return;  // cancelled: the pump is done (or the exchange is being torn down)
  }
}

}  // namespace

awaitable<PumpResult> pump_stream(tcp::socket& client, tcp::socket& engine, beast::flat_buffer& buf,
                                  http::response_parser<http::buffer_body>& parser, ResponseSigner* signer,
                                  const ServerConfig& cfg) {
  StreamState st(co_await net::this_coro::executor);
  st.deadline = Clock::now() + cfg.backend_timeout;
  co_await (pump(client, engine, buf, parser, signer, cfg, st) || watchdog(st, engine, client, cfg));
  co_return std::move(st.result);
}

}  // namespace pi::server
