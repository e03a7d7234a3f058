#pragma once
// An in-process fake OpenAI-compatible engine for the proxy's unit tests (Boost.Beast on its own thread and
// io_context, 127.0.0.1, an ephemeral port). Each test scripts what it answers: a JSON (or any) body with any
// status, an SSE stream of pieces with delays that ends cleanly, is cut off, or is held open, or no answer at
// all. It records every request it received (method, target, headers, exact body bytes) and whether the peer
// (the proxy) closed the connection while the engine was still streaming or holding the request.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace pi::testsupport {

struct EngineRequest {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;  // as received, in order
  std::string body;                                          // the exact body bytes

  // First value of a header (case-insensitive name), "" if absent.
  std::string header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (boost::beast::iequals(k, name)) return v;
    return {};
  }
  bool has_header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (boost::beast::iequals(k, name)) return true;
    return false;
  }
};

// One piece of a streamed answer: wait `delay`, then send `bytes` as one HTTP chunk.
struct Piece {
  std::chrono::milliseconds delay{0};
  std::string bytes;
};

struct Answer {
  enum class Kind { Reply, Stream, Silent, Close };
  // How a stream ends: the terminating chunk (clean), the socket closed without it (cut), or neither —
  // the engine keeps the request open until the peer goes away (hold).
  enum class End { Clean, Cut, Hold };

  Kind kind = Kind::Reply;
  unsigned status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;           // Kind::Reply
  std::vector<Piece> pieces;  // Kind::Stream
  End end = End::Clean;
  // Kind::Stream: no chunking and no length — the body ends when the engine closes (HTTP/1.0 style).
  bool close_delimited = false;

  static Answer json(std::string body, unsigned status = 200) {
    Answer a;
    a.body = std::move(body);
    a.status = status;
    return a;
  }
  static Answer sse(std::vector<Piece> pieces, End end = End::Clean) {
    Answer a;
    a.kind = Kind::Stream;
    a.content_type = "text/event-stream";
    a.pieces = std::move(pieces);
    a.end = end;
    return a;
  }
  // Reads the request and never answers (until the peer closes or the hold limit passes).
  static Answer silent() {
    Answer a;
    a.kind = Kind::Silent;
    return a;
  }
  // Reads the request and closes the connection without answering.
  static Answer close() {
    Answer a;
    a.kind = Kind::Close;
    return a;
  }
};

class FakeEngine {
 public:
  using Script = std::function<Answer(const EngineRequest&)>;
  // How long a silent/held request waits for the peer to go away before the engine gives up.
  static constexpr std::chrono::seconds kHoldLimit{8};

  FakeEngine() : acceptor_(ioc_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    boost::asio::co_spawn(ioc_, accept_loop(), boost::asio::detached);
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~FakeEngine() {
    boost::asio::post(ioc_, [this] {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      ioc_.stop();
    });
    thread_.join();
  }
  FakeEngine(const FakeEngine&) = delete;
  FakeEngine& operator=(const FakeEngine&) = delete;

  unsigned short port() const { return port_; }

  // Every request gets the answer the script returns (called on the engine's thread).
  void script(Script s) {
    std::lock_guard lk(mu_);
    script_ = std::move(s);
  }
  // Every request gets `a`.
  void answer(Answer a) {
    script([a = std::move(a)](const EngineRequest&) { return a; });
  }

  std::vector<EngineRequest> requests() const {
    std::lock_guard lk(mu_);
    return requests_;
  }
  std::size_t request_count() const {
    std::lock_guard lk(mu_);
    return requests_.size();
  }
  // Forgets the requests seen so far (a long-running fuzzer would otherwise keep every one).
  void clear_requests() {
    std::lock_guard lk(mu_);
    requests_.clear();
  }
  // Times the peer closed its connection while a stream or a silent request was in progress.
  int peer_disconnects() const {
    std::lock_guard lk(mu_);
    return peer_disconnects_;
  }
  // Streams (and silent requests) that ran to their scripted end without the peer going away.
  int completed_streams() const {
    std::lock_guard lk(mu_);
    return completed_streams_;
  }

  bool wait_for_requests(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(5)) const {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return requests_.size() >= n; });
  }
  bool wait_for_peer_disconnect(std::chrono::milliseconds timeout = std::chrono::seconds(5)) const {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return peer_disconnects_ > 0; });
  }

 private:
  using tcp = boost::asio::ip::tcp;
  static constexpr auto kTuple = boost::asio::as_tuple(boost::asio::use_awaitable);

  boost::asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, sock] = co_await acceptor_.async_accept(kTuple);
      if (ec) co_return;
      boost::asio::co_spawn(ioc_, session(std::move(sock)), boost::asio::detached);
    }
  }

  void note(const std::function<void()>& f) {
    {
      std::lock_guard lk(mu_);
      f();
    }
    cv_.notify_all();
  }

  // Waits until the peer closes the connection (true) or the hold limit passes (false).
  static boost::asio::awaitable<bool> wait_for_close(boost::beast::tcp_stream& s) {
    std::array<char, 256> tmp{};
    s.expires_after(kHoldLimit);
    for (;;) {
      auto [ec, n] = co_await s.async_read_some(boost::asio::buffer(tmp), kTuple);
      if (ec) co_return ec != boost::beast::error::timeout;
    }
  }

  boost::asio::awaitable<void> session(tcp::socket sock) {
    namespace http = boost::beast::http;
    boost::beast::tcp_stream s(std::move(sock));
    boost::beast::flat_buffer buf;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(64u << 20);
      s.expires_after(std::chrono::seconds(30));
      auto [rec, rn] = co_await http::async_read(s, buf, parser, kTuple);
      if (rec) co_return;
      s.expires_never();
      const auto& req = parser.get();
      EngineRequest er{std::string(req.method_string()), std::string(req.target()), {}, req.body()};
      for (const auto& f : req) er.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      Script script;
      {
        std::lock_guard lk(mu_);
        script = script_;
      }
      Answer a = script ? script(er) : Answer::json(R"({"id":"default","object":"chat.completion"})");
      note([&] { requests_.push_back(er); });

      if (a.kind == Answer::Kind::Close) co_return;
      if (a.kind == Answer::Kind::Silent) {
        const bool closed = co_await wait_for_close(s);
        note([&] { closed ? ++peer_disconnects_ : ++completed_streams_; });
        co_return;
      }
      if (a.kind == Answer::Kind::Reply) {
        http::response<http::string_body> res{static_cast<http::status>(a.status), 11};
        res.set(http::field::content_type, a.content_type);
        for (const auto& [k, v] : a.headers) res.insert(k, v);
        res.body() = a.body;
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        auto [wec, wn] = co_await http::async_write(s, res, kTuple);
        if (wec || !res.keep_alive()) co_return;
        continue;
      }
      // A chunked stream.
      http::response<http::empty_body> res{static_cast<http::status>(a.status), 11};
      res.set(http::field::content_type, a.content_type);
      res.set(http::field::cache_control, "no-cache");
      for (const auto& [k, v] : a.headers) res.insert(k, v);
      if (a.close_delimited) {
        // Status line and headers by hand: Beast would add a length or chunking.
        std::string head = "HTTP/1.1 " + std::to_string(a.status) + " OK\r\nContent-Type: " + a.content_type +
                           "\r\nConnection: close\r\n\r\n";
        auto [hec, hn] = co_await boost::asio::async_write(s, boost::asio::buffer(head), kTuple);
        boost::asio::steady_timer timer(s.get_executor());
        for (const auto& p : a.pieces) {
          if (hec) break;
          timer.expires_after(p.delay);
          co_await timer.async_wait(kTuple);
          auto [wec, wn] = co_await boost::asio::async_write(s, boost::asio::buffer(p.bytes), kTuple);
          hec = wec;
        }
        boost::system::error_code ignored;
        s.socket().shutdown(tcp::socket::shutdown_both, ignored);
        s.socket().close(ignored);
        note([&] { ++completed_streams_; });
        co_return;
      }
      res.chunked(true);
      res.keep_alive(req.keep_alive());
      http::response_serializer<http::empty_body> sr{res};
      auto [hec, hn] = co_await http::async_write_header(s, sr, kTuple);
      bool gone = static_cast<bool>(hec);
      boost::asio::steady_timer timer(s.get_executor());
      for (const auto& p : a.pieces) {
        if (gone) break;
        if (p.delay.count() > 0) {
          timer.expires_after(p.delay);
          co_await timer.async_wait(kTuple);
        }
        auto [wec, wn] = co_await boost::asio::async_write(s, http::make_chunk(boost::asio::buffer(p.bytes)), kTuple);
        gone = static_cast<bool>(wec);
      }
      if (!gone) {
        if (a.end == Answer::End::Clean) {
          auto [lec, ln] = co_await boost::asio::async_write(s, http::make_chunk_last(), kTuple);
          gone = static_cast<bool>(lec);
        } else if (a.end == Answer::End::Cut) {
          boost::system::error_code ignored;
          s.socket().shutdown(tcp::socket::shutdown_both, ignored);
          s.socket().close(ignored);
          note([&] { ++completed_streams_; });
          co_return;
        } else {
          gone = co_await wait_for_close(s);
          if (!gone) {
            note([&] { ++completed_streams_; });
            co_return;
          }
        }
      }
      if (gone) {
        note([&] { ++peer_disconnects_; });
        co_return;
      }
      note([&] { ++completed_streams_; });
      if (!res.keep_alive()) co_return;
    }
  }

  boost::asio::io_context ioc_;
  tcp::acceptor acceptor_;
  unsigned short port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  Script script_;
  std::vector<EngineRequest> requests_;
  int peer_disconnects_ = 0;
  int completed_streams_ = 0;
};

}  // namespace pi::testsupport
