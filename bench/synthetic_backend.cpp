// pi-bench-backend: a synthetic OpenAI-compatible engine for measuring the proxy (issue 6).
//
// It spends almost no CPU: no model, only timers. Responses have vLLM's shapes and framing:
//   * non-streaming: one chat.completion / text_completion JSON body (Content-Length);
//   * streaming: `Transfer-Encoding: chunked`, `text/event-stream`, one HTTP chunk per event,
//     `data: {...}\n\n` events (first a role chunk, then content chunks, the last carrying
//     finish_reason), a usage chunk (`"choices":[]`), then `data: [DONE]\n\n`.
// Timing: time to first token (--ttft-ms), then one event every --itl-ms carrying
// --tokens-per-chunk tokens, --tokens tokens in all (a request's "max_tokens" overrides it).
// With --in-step, events are due on one shared clock (every --itl-ms since start-up), like the
// decode steps of an engine that batches all running sequences (vLLM's continuous batching): every
// stream gets its next token at the same instant, and a first token waits for the next step after
// --ttft-ms.
// Each content event also carries "pi_emit_ns" (when it was written, CLOCK_MONOTONIC) so that the
// load generator can measure each token's delivery lag.
// It is for benchmarks only; correctness tests use a real llama.cpp backend.
#include "bench_util.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using net::awaitable;

namespace {

constexpr auto kTuple = net::as_tuple(net::use_awaitable);

struct Options {
  std::string host = "127.0.0.1";
  unsigned short port = 8001;
  double ttft_ms = 0;
  double itl_ms = 0;
  long tokens = 16;
  long tokens_per_chunk = 1;
  bool in_step = false;
  unsigned threads = 1;
  std::string model = "synthetic";
};

// Finds an integer JSON member ("key": 123) by plain search: cheap, enough for our own load generator.
std::optional<long> find_int(std::string_view body, std::string_view key) {
  std::string pat(1, '"');  // built by appends: GCC 12 -O3 warns (-Wrestrict) on "\"" + std::string
  pat += key;
  pat += '"';
  auto p = body.find(pat);
  if (p == std::string_view::npos) return std::nullopt;
  p += pat.size();
  while (p < body.size() && (body[p] == ' ' || body[p] == ':')) ++p;
  long v = 0;
  auto [end, ec] = std::from_chars(body.data() + p, body.data() + body.size(), v);
  if (ec != std::errc()) return std::nullopt;
  return v;
}

bool find_true(std::string_view body, std::string_view key) {
  std::string pat(1, '"');  // built by appends: GCC 12 -O3 warns (-Wrestrict) on "\"" + std::string
  pat += key;
  pat += '"';
  auto p = body.find(pat);
  if (p == std::string_view::npos) return false;
  p += pat.size();
  while (p < body.size() && (body[p] == ' ' || body[p] == ':')) ++p;
  return body.substr(p, 4) == "true";
}

struct Backend {
  Options opt;
  const std::chrono::steady_clock::time_point epoch = std::chrono::steady_clock::now();  // --in-step clock
  std::atomic<std::uint64_t> seq{0};
  // Served at GET /bench/stats: how many connections and requests reached the engine (a proxy
  // that cannot keep its engine connections alive shows more connections than requests/stream).
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> requests{0};

  std::string next_id(bool chat) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s-%016llx", chat ? "chatcmpl" : "cmpl",
                  static_cast<unsigned long long>(seq.fetch_add(1) * 0x9E3779B97F4A7C15ull));
    return buf;
  }

  // Token i's text: short words, like a tokenizer's pieces.
  static void append_tokens(std::string& out, long first, long n) {
    static constexpr std::string_view kWords[] = {" the",  " quick", " brown", " fox", " jumps",
                                                  " over", " a",     " lazy",  " dog", "."};
    for (long i = first; i < first + n; ++i) out += kWords[static_cast<std::size_t>(i) % 10];
  }

  std::string chunk_prefix(const std::string& id, bool chat, long created) const {
    std::string s = "data: {\"id\":\"" + id + "\",\"object\":\"";
    s += chat ? "chat.completion.chunk" : "text_completion";
    s += "\",\"created\":" + std::to_string(created) + ",\"model\":\"" + opt.model + "\",\"choices\":";
    return s;
  }

  awaitable<bool> write_chunk(beast::tcp_stream& s, const std::string& event) {
    auto [ec, n] = co_await net::async_write(s, http::make_chunk(net::buffer(event)), kTuple);
    co_return !ec;
  }

  awaitable<bool> stream(beast::tcp_stream& s, const http::request<http::string_body>& req, bool chat, long tokens,
                         bool keep_alive) {
    net::steady_timer timer(co_await net::this_coro::executor);
    const auto start = std::chrono::steady_clock::now();
    http::response<http::empty_body> res{http::status::ok, 11};
    res.set(http::field::content_type, "text/event-stream; charset=utf-8");
    res.set(http::field::server, "pi-bench-backend");
    res.keep_alive(keep_alive && req.keep_alive());
    res.chunked(true);
    http::response_serializer<http::empty_body> sr{res};
    auto [hec, hn] = co_await http::async_write_header(s, sr, kTuple);
    if (hec) co_return false;
    const std::string id = next_id(chat);
    const long created = static_cast<long>(std::time(nullptr));
    const std::string prefix = chunk_prefix(id, chat, created);
    std::string ev;
    if (chat) {  // vLLM sends the role first, with empty content
      ev = prefix +
           "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
           "\"finish_reason\":null}]}\n\n";
      if (!co_await write_chunk(s, ev)) co_return false;
    }
    auto due = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                           std::chrono::duration<double, std::milli>(opt.ttft_ms));
    const auto itl = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double, std::milli>(opt.itl_ms));
    if (opt.in_step && itl.count() > 0) {  // round up to the next step of the shared clock
      const auto steps = (due - epoch + itl - std::chrono::steady_clock::duration(1)) / itl;
      due = epoch + steps * itl;
    }
    for (long sent = 0; sent < tokens;) {
      timer.expires_at(due);
      auto [tec] = co_await timer.async_wait(kTuple);
      if (tec) co_return false;
      const long n = std::min(opt.tokens_per_chunk, tokens - sent);
      ev = prefix;
      ev += chat ? "[{\"index\":0,\"delta\":{\"content\":\"" : "[{\"index\":0,\"text\":\"";
      append_tokens(ev, sent, n);
      sent += n;
      ev += sent == tokens ? "\"},\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null}]}\n\n"
                           : "\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
      if (!chat) {  // completions: text is not nested in a delta
        auto p = ev.rfind("\"},\"logprobs\"");
        ev.replace(p, 3, "\",");
      }
      // When the event was written, on the machine-wide monotonic clock (CLOCK_MONOTONIC): the load
      // generator on the same machine subtracts it from the arrival time (token delivery lag). An extra
      // member: clients ignore it, the proxy relays it untouched.
      ev.insert(ev.size() - 3,
                ",\"pi_emit_ns\":" + std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                        std::chrono::steady_clock::now().time_since_epoch())
                                                        .count()));
      if (!co_await write_chunk(s, ev)) co_return false;
      due += itl;
    }
    ev = prefix + "[],\"usage\":{\"prompt_tokens\":8,\"total_tokens\":" + std::to_string(8 + tokens) +
         ",\"completion_tokens\":" + std::to_string(tokens) + "}}\n\n";
    if (!co_await write_chunk(s, ev)) co_return false;
    static const std::string kDone = "data: [DONE]\n\n";
    if (!co_await write_chunk(s, kDone)) co_return false;
    auto [lec, ln] = co_await net::async_write(s, http::make_chunk_last(), kTuple);
    co_return !lec && res.keep_alive();
  }

  awaitable<bool> whole(beast::tcp_stream& s, const http::request<http::string_body>& req, bool chat, long tokens) {
    net::steady_timer timer(co_await net::this_coro::executor);
    timer.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double, std::milli>(opt.ttft_ms + opt.itl_ms * static_cast<double>(tokens - 1))));
    if (opt.ttft_ms > 0 || opt.itl_ms > 0) {
      auto [tec] = co_await timer.async_wait(kTuple);
      if (tec) co_return false;
    }
    const std::string id = next_id(chat);
    std::string text;
    append_tokens(text, 0, tokens);
    std::string body = "{\"id\":\"" + id + "\",\"object\":\"";
    body += chat ? "chat.completion" : "text_completion";
    body += "\",\"created\":" + std::to_string(std::time(nullptr)) + ",\"model\":\"" + opt.model + "\",\"choices\":[";
    if (chat)
      body += "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"" + text +
              "\",\"tool_calls\":[]},\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null}";
    else
      body +=
          "{\"index\":0,\"text\":\"" + text + "\",\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null}";
    body += "],\"usage\":{\"prompt_tokens\":8,\"total_tokens\":" + std::to_string(8 + tokens) +
            ",\"completion_tokens\":" + std::to_string(tokens) + "}}";
    co_return co_await simple(s, req, http::status::ok, std::move(body));
  }

  awaitable<bool> simple(beast::tcp_stream& s, const http::request<http::string_body>& req, http::status st,
                         std::string body) {
    http::response<http::string_body> res{st, 11};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::server, "pi-bench-backend");
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    auto [ec, n] = co_await http::async_write(s, res, kTuple);
    co_return !ec && res.keep_alive();
  }

  awaitable<void> session(tcp::socket sock) {
    beast::tcp_stream s(std::move(sock));
    beast::flat_buffer buf;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(16u << 20);
      auto [ec, n] = co_await http::async_read(s, buf, parser, kTuple);
      if (ec) break;
      const auto& req = parser.get();
      requests.fetch_add(1, std::memory_order_relaxed);
      const std::string_view target = req.target();
      const std::string_view path = target.substr(0, target.find('?'));
      bool keep = false;
      if (req.method() == http::verb::post && (path == "/v1/chat/completions" || path == "/v1/completions")) {
        const bool chat = path == "/v1/chat/completions";
        const long tokens = std::max(1L, find_int(req.body(), "max_tokens").value_or(opt.tokens));
        if (find_true(req.body(), "stream"))
          keep = co_await stream(s, req, chat, tokens, true);
        else
          keep = co_await whole(s, req, chat, tokens);
      } else if (path == "/v1/models") {
        std::string body = "{\"object\":\"list\",\"data\":[{\"id\":\"" + opt.model +
                           "\",\"object\":\"model\",\"created\":0,\"owned_by\":\"pi-bench-backend\"}]}";
        keep = co_await simple(s, req, http::status::ok, std::move(body));
      } else if (path == "/bench/stats") {
        std::string body = "{\"connections\":" + std::to_string(connections.load()) +
                           ",\"requests\":" + std::to_string(requests.load()) + "}";
        keep = co_await simple(s, req, http::status::ok, std::move(body));
      } else if (path == "/health") {
        keep = co_await simple(s, req, http::status::ok, "{}");
      } else if (path == "/metrics") {
        keep = co_await simple(s, req, http::status::ok, "# pi-bench-backend\n");
      } else {
        std::string body =
            "{\"error\":{\"message\":\"not found\",\"type\":\"NotFoundError\",\"param\":null,\"code\":404}}";
        keep = co_await simple(s, req, http::status::not_found, std::move(body));
      }
      if (!keep) break;
    }
    beast::error_code ignored;
    s.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  awaitable<void> accept_loop(tcp::acceptor& acc, net::io_context& ioc) {
    for (;;) {
      auto [ec, sock] = co_await acc.async_accept(kTuple);
      if (ec) {
        if (ec == net::error::operation_aborted) co_return;
        continue;  // e.g. EMFILE: keep serving the connections we have
      }
      beast::error_code ignored;
      sock.set_option(tcp::no_delay(true), ignored);
      connections.fetch_add(1, std::memory_order_relaxed);
      net::co_spawn(ioc, session(std::move(sock)), net::detached);
    }
  }
};

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--listen HOST:PORT] [--ttft-ms MS] [--itl-ms MS] [--tokens N] [--tokens-per-chunk N]\n"
               "          [--in-step] [--threads N] [--model NAME]\n"
               "Synthetic OpenAI-compatible backend for benchmarks (vLLM framing, timers only).\n",
               argv0);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Backend b;
  auto& o = b.opt;
  pi::bench::Args args(argc, argv, usage);
  try {
    while (args.next()) {
      if (args.is("--listen")) {
        std::string port;
        if (!pi::bench::split_host_port(args.value(), o.host, port)) args.fail();
        o.port = static_cast<unsigned short>(std::stoul(port));
      } else if (args.is("--ttft-ms")) {
        o.ttft_ms = std::stod(args.value());
      } else if (args.is("--in-step")) {
        o.in_step = true;
      } else if (args.is("--itl-ms")) {
        o.itl_ms = std::stod(args.value());
      } else if (args.is("--tokens")) {
        o.tokens = std::stol(args.value());
      } else if (args.is("--tokens-per-chunk")) {
        o.tokens_per_chunk = std::stol(args.value());
      } else if (args.is("--threads")) {
        o.threads = static_cast<unsigned>(std::stoul(args.value()));
      } else if (args.is("--model")) {
        o.model = args.value();
      } else {
        args.fail();
      }
    }
  } catch (const std::exception&) {
    args.fail();
  }
  if (o.tokens < 1 || o.tokens_per_chunk < 1 || o.ttft_ms < 0 || o.itl_ms < 0 || o.threads < 1) args.fail();
  pi::bench::raise_nofile_limit();
  try {
    std::vector<std::unique_ptr<net::io_context>> ctxs;
    std::vector<std::unique_ptr<tcp::acceptor>> accs;
    tcp::endpoint ep(net::ip::make_address(o.host), o.port);
    for (unsigned i = 0; i < o.threads; ++i) {
      ctxs.push_back(std::make_unique<net::io_context>(1));
      auto acc = std::make_unique<tcp::acceptor>(*ctxs.back());
      acc->open(ep.protocol());
      acc->set_option(net::socket_base::reuse_address(true));
      int one = 1;
      ::setsockopt(acc->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
      acc->bind(ep);
      acc->listen(net::socket_base::max_listen_connections);
      ep.port(acc->local_endpoint().port());
      net::co_spawn(*ctxs.back(), b.accept_loop(*acc, *ctxs.back()), net::detached);
      accs.push_back(std::move(acc));
    }
    net::signal_set signals(*ctxs[0], SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code&, int) {
      for (auto& c : ctxs) c->stop();
    });
    std::printf("pi-bench-backend listening on %s:%u (ttft %.1f ms, itl %.1f ms%s, %ld tokens, %ld per chunk)\n",
                o.host.c_str(), ep.port(), o.ttft_ms, o.itl_ms, o.in_step ? " in step" : "", o.tokens,
                o.tokens_per_chunk);
    std::fflush(stdout);
    std::vector<std::thread> threads;
    for (unsigned i = 1; i < o.threads; ++i) threads.emplace_back([&c = *ctxs[i]] { c.run(); });
    ctxs[0]->run();
    for (auto& t : threads) t.join();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pi-bench-backend: %s\n", e.what());
    return 1;
  }
  return 0;
}
