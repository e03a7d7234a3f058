// pi-loadgen: drives an OpenAI-compatible target (the proxy or the backend directly) at a fixed
// concurrency for a fixed duration, and reports JSON (issue 6):
//   requests/s, tokens/s, p50/p90/p99 of time to first byte, time to first token, inter-token
//   gap and total latency, errors by kind, and — for each --watch NAME=PID — that process's CPU
//   seconds and peak RSS over the measured window (sampled from /proc every 20 ms).
//
// Each of the N workers keeps one HTTP/1.1 keep-alive connection and sends requests back to back.
// Requests that start during --warmup are not measured; at the end of --duration everything in
// flight is cut off (not an error). A "token" is one SSE event with non-empty content (one token
// per event from pi-bench-backend with --tokens-per-chunk 1, as vLLM streams by default); for a
// non-streaming answer, usage.completion_tokens.
#include <unistd.h>

#include "bench_util.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = net::ip::tcp;
using net::awaitable;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kTuple = net::as_tuple(net::use_awaitable);

enum class Mode { Chat, ChatStream, Attestation, Signature, Get };

struct Options {
  std::string host = "127.0.0.1";
  std::string port = "8000";
  Mode mode = Mode::ChatStream;
  std::string path;  // for Get
  unsigned concurrency = 1;
  double duration_s = 5;
  double warmup_s = 1;
  double ramp_s = -1;  // default: half the warmup
  long max_tokens = 16;
  // Each worker's first answer asks for a different, shorter length (deterministic per worker index),
  // so that streams are spread over their lifetime from the start instead of all emitting tokens in
  // step, as in a server that has been running for a while. Used where an answer outlasts the run.
  bool stagger = false;
  std::string token;
  std::vector<std::pair<std::string, int>> watch;
};

double ms_since(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

struct Stats {
  std::vector<double> ttfb, ttft, itl, total;
  std::vector<double> lag, first_lag;  // token delivery lag: arrival - the engine's "pi_emit_ns"
  // Streams: last content token's arrival -> the stream's end (through the proxy: the signature's commit,
  // which the final events wait for).
  std::vector<double> tail;
  std::uint64_t requests = 0;  // answers completed in the window
  std::uint64_t tokens = 0;    // received in the window
  std::uint64_t bytes = 0;
  std::map<std::string, std::uint64_t> errors;
};

// ---- /proc sampling of the processes under test -------------------------------------------

struct Watched {
  std::string name;
  int pid;
  double cpu_start = -1, cpu_end = -1;
  double wait_start = -1, wait_end = -1;  // seconds runnable but not running (waiting for a CPU)
  long peak_rss_kb = 0;
  long start_rss_kb = 0;
};

double proc_cpu_seconds(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto rp = s.rfind(')');
  if (rp == std::string::npos) return -1;
  std::istringstream in(s.substr(rp + 2));
  std::string field;
  unsigned long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {  // field 3 is the state; 14 utime, 15 stime
    if (i == 14) utime = std::stoul(field);
    if (i == 15) stime = std::stoul(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Second field of /proc/PID/schedstat: nanoseconds spent runnable on a run queue, not running.
// On a machine shared with other work this says how much of a run the process was starved.
double proc_runqueue_wait_seconds(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/schedstat");
  unsigned long long run = 0, wait = 0;
  if (!(f >> run >> wait)) return -1;
  return static_cast<double>(wait) / 1e9;
}

long proc_rss_kb(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// ---- the generator ----------------------------------------------------------------------------

struct Generator {
  Options opt;
  net::io_context ioc{1};
  tcp::resolver::results_type endpoints;
  Clock::time_point t_begin, t_measure, t_end;
  Stats st;
  std::vector<Watched> watched;
  std::mt19937_64 rng{std::random_device{}()};

  bool in_window(Clock::time_point t) const { return t >= t_measure && t <= t_end; }
  void error(const std::string& kind, Clock::time_point started) {
    if (in_window(started)) st.errors[kind]++;
  }

  std::string random_hex(std::size_t bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < bytes; ++i) {
      auto b = static_cast<unsigned>(rng() & 0xff);
      s += kHex[b >> 4];
      s += kHex[b & 15];
    }
    return s;
  }

  // The staggered first answer's length for worker `index`: spread evenly over 1..max_tokens
  // (golden-ratio sequence), the same in every run so that direct and proxied get the same load.
  long first_answer_tokens(unsigned index) const {
    const double frac = std::fmod(0.6180339887498949 * (index + 1), 1.0);
    return std::clamp<long>(1 + static_cast<long>(frac * static_cast<double>(opt.max_tokens)), 1, opt.max_tokens);
  }

  http::request<http::string_body> make_request(const std::string& sig_id, bool ed, long max_tokens) {
    http::request<http::string_body> req;
    req.version(11);
    req.set(http::field::host, opt.host + ":" + opt.port);
    req.set(http::field::user_agent, "pi-loadgen");
    req.keep_alive(true);
    if (!opt.token.empty()) req.set(http::field::authorization, "Bearer " + opt.token);
    switch (opt.mode) {
      case Mode::Chat:
      case Mode::ChatStream: {
        const bool stream = opt.mode == Mode::ChatStream;
        req.method(http::verb::post);
        req.target("/v1/chat/completions");
        req.set(http::field::content_type, "application/json");
        std::string body =
            "{\"model\":\"synthetic\",\"messages\":[{\"role\":\"user\",\"content\":\"Benchmark request " +
            random_hex(4) + "\"}],\"max_tokens\":" + std::to_string(max_tokens);
        if (stream) body += ",\"stream\":true,\"stream_options\":{\"include_usage\":true}";
        body += "}";
        req.body() = std::move(body);
      } break;
      case Mode::Attestation:
        req.method(http::verb::get);
        req.target("/v1/attestation/report?nonce=" + random_hex(32) + "&signing_algo=" + (ed ? "ed25519" : "ecdsa"));
        break;
      case Mode::Signature:
        req.method(http::verb::get);
        req.target("/v1/signature/" + sig_id + "?signing_algo=" + (ed ? "ed25519" : "ecdsa"));
        break;
      case Mode::Get:
        req.method(http::verb::get);
        req.target(opt.path);
        break;
    }
    req.prepare_payload();
    return req;
  }

  // Counts content-bearing SSE events in complete events of `pending`; returns how many, and
  // whether [DONE] was seen. Consumes the complete events. For each content event, `emitted` gets
  // its "pi_emit_ns" (the synthetic engine's write time, CLOCK_MONOTONIC ns) or -1.
  static std::pair<int, bool> scan_events(std::string& pending, std::vector<long long>& emitted) {
    emitted.clear();
    int content = 0;
    bool done = false;
    std::size_t pos = 0;
    for (;;) {
      auto e = pending.find("\n\n", pos);
      if (e == std::string::npos) break;
      std::string_view ev(pending.data() + pos, e - pos);
      if (ev.starts_with("data: [DONE]")) {
        done = true;
      } else {
        for (std::string_view key : {std::string_view("\"content\":\""), std::string_view("\"text\":\"")}) {
          auto k = ev.find(key);
          if (k != std::string_view::npos && k + key.size() < ev.size() && ev[k + key.size()] != '"') {
            ++content;
            long long ns = -1;
            constexpr std::string_view kEmit = "\"pi_emit_ns\":";
            if (auto t = ev.rfind(kEmit); t != std::string_view::npos)
              std::from_chars(ev.data() + t + kEmit.size(), ev.data() + ev.size(), ns);
            emitted.push_back(ns);
            break;
          }
        }
      }
      pos = e + 2;
    }
    pending.erase(0, pos);
    return {content, done};
  }

  // Gets one signature id to fetch (signature mode): a non-streaming chat through the proxy.
  awaitable<std::string> obtain_signature_id(beast::tcp_stream& s, beast::flat_buffer& buf) {
    http::request<http::string_body> req;
    req.version(11);
    req.method(http::verb::post);
    req.target("/v1/chat/completions");
    req.set(http::field::host, opt.host + ":" + opt.port);
    req.set(http::field::content_type, "application/json");
    if (!opt.token.empty()) req.set(http::field::authorization, "Bearer " + opt.token);
    req.keep_alive(true);
    req.body() = "{\"model\":\"synthetic\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":4}";
    req.prepare_payload();
    auto [wec, wn] = co_await http::async_write(s, req, kTuple);
    if (wec) co_return std::string();
    http::response<http::string_body> res;
    auto [rec, rn] = co_await http::async_read(s, buf, res, kTuple);
    if (rec || res.result() != http::status::ok) co_return std::string();
    co_return std::string(res["X-Signature-Id"]);
  }

  awaitable<void> worker(unsigned index) {
    net::steady_timer timer(ioc);
    const double ramp = opt.ramp_s >= 0 ? opt.ramp_s : opt.warmup_s / 2;
    timer.expires_at(t_begin + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(ramp * index / std::max(1u, opt.concurrency))));
    co_await timer.async_wait(kTuple);
    std::optional<beast::tcp_stream> s;
    beast::flat_buffer buf;
    std::string sig_id;
    std::array<char, 16384> tmp{};
    std::uint64_t n = 0;
    while (Clock::now() < t_end) {
      const auto t0 = Clock::now();
      if (!s) {
        s.emplace(ioc);
        buf.clear();
        s->expires_at(t_end);
        auto [cec, ep] = co_await s->async_connect(endpoints, kTuple);
        if (cec) {
          if (Clock::now() < t_end) error("connect: " + cec.message(), t0);
          s.reset();
          timer.expires_after(std::chrono::milliseconds(50));
          co_await timer.async_wait(kTuple);
          continue;
        }
        s->socket().set_option(tcp::no_delay(true));
        if (opt.mode == Mode::Signature && sig_id.empty()) {
          sig_id = co_await obtain_signature_id(*s, buf);
          if (sig_id.empty()) {
            error("setup: no signature id", t0);
            s.reset();
            continue;
          }
        }
      }
      const bool measured = in_window(t0);
      // With --stagger, the first answer of each worker is shorter (see Options::stagger). It starts
      // during the warm-up (workers ramp up over half of it), so it counts for tokens and answers
      // completed inside the window, and never for total latency.
      const bool partial = opt.stagger && n == 0 && first_answer_tokens(index) < opt.max_tokens;
      auto req = make_request(sig_id, (n & 1) != 0, partial ? first_answer_tokens(index) : opt.max_tokens);
      ++n;
      auto [wec, wn] = co_await http::async_write(*s, req, kTuple);
      if (wec) {
        if (Clock::now() < t_end) error("write: " + wec.message(), t0);
        s.reset();
        continue;
      }
      http::response_parser<http::buffer_body> p;
      p.body_limit(boost::none);
      auto [hec, hn] = co_await http::async_read_header(*s, buf, p, kTuple);
      const auto t_hdr = Clock::now();
      if (hec) {
        if (t_hdr < t_end) error("read header: " + hec.message(), t0);
        s.reset();
        continue;
      }
      if (measured) st.ttfb.push_back(ms_since(t0, t_hdr));
      const unsigned status = p.get().result_int();
      const bool sse = p.get()[http::field::content_type].starts_with("text/event-stream");
      std::string pending;  // SSE: bytes of an incomplete event; else: the body (bounded)
      std::vector<long long> emitted;
      bool done_marker = false;
      bool first_token = true;
      Clock::time_point last_token{};
      beast::error_code rec;
      std::uint64_t body_bytes = 0;
      while (!p.is_done()) {
        p.get().body().data = tmp.data();
        p.get().body().size = tmp.size();
        auto [ec, rn] = co_await http::async_read_some(*s, buf, p, kTuple);
        const auto now = Clock::now();
        const std::size_t got = tmp.size() - p.get().body().size;
        if (got > 0) {
          body_bytes += got;
          if (sse) {
            pending.append(tmp.data(), got);
            auto [content, done] = scan_events(pending, emitted);
            done_marker = done_marker || done;
            const long long now_ns =
                std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
            for (int i = 0; i < content; ++i) {
              if (measured && emitted[static_cast<std::size_t>(i)] >= 0) {
                const double lag = static_cast<double>(now_ns - emitted[static_cast<std::size_t>(i)]) / 1e6;
                st.lag.push_back(lag);
                if (first_token) st.first_lag.push_back(lag);
              }
              if (first_token) {
                if (measured) st.ttft.push_back(ms_since(t0, now));
                first_token = false;
              } else if (measured && i == 0) {
                st.itl.push_back(ms_since(last_token, now));
              } else if (measured) {
                st.itl.push_back(0.0);  // several events in one read: they arrived together
              }
              if (in_window(now)) st.tokens++;
            }
            if (content > 0) last_token = now;
          } else if (pending.size() < (1u << 20)) {
            pending.append(tmp.data(), got);
          }
        }
        if (ec == http::error::need_buffer) continue;
        if (ec) {
          rec = ec;
          break;
        }
      }
      const auto t_done = Clock::now();
      if (rec) {
        if (t_done < t_end) error(sse ? "stream broken: " + rec.message() : "read body: " + rec.message(), t0);
        s.reset();
        continue;
      }
      if (in_window(t_done)) st.bytes += body_bytes;
      bool ok = status == 200;
      std::string kind = "http " + std::to_string(status);
      if (ok && sse && !done_marker) {
        ok = false;
        kind = "stream without [DONE]";
      }
      if (ok && opt.mode == Mode::Attestation &&
          pending.find(req.target().substr(req.target().find('=') + 1, 64)) == std::string::npos) {
        ok = false;
        kind = "attestation report without our nonce";
      }
      if (ok && opt.mode == Mode::Chat) {
        auto k = pending.find("\"completion_tokens\":");
        long toks = 0;
        if (k != std::string::npos) {
          const char* b = pending.data() + k + 20;
          std::from_chars(b, pending.data() + pending.size(), toks);
        }
        if (in_window(t_done)) st.tokens += static_cast<std::uint64_t>(toks);
      }
      if (!ok) {
        error(kind, t0);
      } else if (in_window(t_done)) {
        st.requests++;  // answers completed inside the window
        if (measured && !partial) st.total.push_back(ms_since(t0, t_done));
        if (measured && sse && !first_token) st.tail.push_back(ms_since(last_token, t_done));
      }
      if (!p.keep_alive()) s.reset();
    }
    if (s) {
      beast::error_code ignored;
      s->socket().close(ignored);
    }
  }

  awaitable<void> sampler() {
    net::steady_timer timer(ioc);
    bool started = false;
    for (;;) {
      const auto now = Clock::now();
      if (!started && now >= t_measure) {
        for (auto& w : watched) {
          w.cpu_start = proc_cpu_seconds(w.pid);
          w.wait_start = proc_runqueue_wait_seconds(w.pid);
          w.start_rss_kb = proc_rss_kb(w.pid);
        }
        started = true;
      }
      if (started)
        for (auto& w : watched) w.peak_rss_kb = std::max(w.peak_rss_kb, proc_rss_kb(w.pid));
      if (now >= t_end) {
        for (auto& w : watched) {
          w.cpu_end = proc_cpu_seconds(w.pid);
          w.wait_end = proc_runqueue_wait_seconds(w.pid);
        }
        co_return;
      }
      timer.expires_after(std::chrono::milliseconds(20));
      co_await timer.async_wait(kTuple);
    }
  }

  static json::object pct(std::vector<double>& v) {
    json::object o;
    o["n"] = v.size();
    if (v.empty()) {
      o["p50"] = nullptr;
      o["p90"] = nullptr;
      o["p99"] = nullptr;
      return o;
    }
    std::sort(v.begin(), v.end());
    auto at = [&](double q) {
      auto i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
      return v[std::min(i, v.size() - 1)];
    };
    o["p50"] = at(0.50);
    o["p90"] = at(0.90);
    o["p99"] = at(0.99);
    o["max"] = v.back();
    return o;
  }

  json::object run() {
    endpoints = tcp::resolver(ioc).resolve(opt.host, opt.port);
    t_begin = Clock::now();
    t_measure = t_begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.warmup_s));
    t_end = t_measure + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.duration_s));
    const double self0 = self_cpu_seconds();
    for (unsigned i = 0; i < opt.concurrency; ++i) net::co_spawn(ioc, worker(i), net::detached);
    net::co_spawn(ioc, sampler(), net::detached);
    ioc.run();
    const double self1 = self_cpu_seconds();
    json::object r;
    r["concurrency"] = opt.concurrency;
    r["duration_s"] = opt.duration_s;
    r["warmup_s"] = opt.warmup_s;
    r["stagger"] = opt.stagger;
    r["requests"] = st.requests;
    r["tokens"] = st.tokens;
    r["body_bytes"] = st.bytes;
    r["requests_per_s"] = static_cast<double>(st.requests) / opt.duration_s;
    r["tokens_per_s"] = static_cast<double>(st.tokens) / opt.duration_s;
    r["ttfb_ms"] = pct(st.ttfb);
    r["ttft_ms"] = pct(st.ttft);
    r["itl_ms"] = pct(st.itl);
    r["total_ms"] = pct(st.total);
    r["lag_ms"] = pct(st.lag);
    r["first_lag_ms"] = pct(st.first_lag);
    r["tail_ms"] = pct(st.tail);
    std::uint64_t nerr = 0;
    json::object errs;
    for (auto& [k, v] : st.errors) {
      errs[k] = v;
      nerr += v;
    }
    r["errors"] = nerr;
    r["error_kinds"] = std::move(errs);
    json::object procs;
    for (auto& w : watched) {
      json::object o;
      o["pid"] = w.pid;
      const double cpu = w.cpu_end - w.cpu_start;
      o["cpu_s"] = cpu;
      o["cpu_util"] = cpu / opt.duration_s;
      o["peak_rss_mb"] = static_cast<double>(w.peak_rss_kb) / 1024.0;
      if (w.wait_start >= 0 && w.wait_end >= 0) o["runqueue_wait_s"] = w.wait_end - w.wait_start;
      o["rss_at_start_mb"] = static_cast<double>(w.start_rss_kb) / 1024.0;
      if (st.tokens > 0) o["cpu_ms_per_1000_tokens"] = cpu * 1e6 / static_cast<double>(st.tokens);
      if (st.requests > 0) o["cpu_us_per_request"] = cpu * 1e6 / static_cast<double>(st.requests);
      procs[w.name] = std::move(o);
    }
    r["processes"] = std::move(procs);
    r["loadgen_cpu_s"] = self1 - self0;
    return r;
  }
};

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --url http://HOST:PORT --mode chat|chat-stream|attestation|signature|get [--path P]\n"
               "          [--concurrency N] [--duration S] [--warmup S] [--ramp S] [--max-tokens N] [--stagger]\n"
               "          [--token T] [--watch NAME=PID]... [--out FILE]\n"
               "Fixed-concurrency load generator; prints JSON results (see docs/performance.md).\n",
               argv0);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Generator g;
  auto& o = g.opt;
  std::string out;
  pi::bench::Args args(argc, argv, usage);
  try {
    while (args.next()) {
      if (args.is("--url")) {
        std::string u = args.value();
        if (!u.starts_with("http://")) args.fail();
        u = u.substr(7);
        if (auto sl = u.find('/'); sl != std::string::npos) u = u.substr(0, sl);
        if (!pi::bench::split_host_port(u, o.host, o.port)) args.fail();
      } else if (args.is("--mode")) {
        const std::string m = args.value();
        if (m == "chat")
          o.mode = Mode::Chat;
        else if (m == "chat-stream")
          o.mode = Mode::ChatStream;
        else if (m == "attestation")
          o.mode = Mode::Attestation;
        else if (m == "signature")
          o.mode = Mode::Signature;
        else if (m == "get")
          o.mode = Mode::Get;
        else
          args.fail();
      } else if (args.is("--path")) {
        o.path = args.value();
      } else if (args.is("--concurrency")) {
        o.concurrency = static_cast<unsigned>(std::stoul(args.value()));
      } else if (args.is("--duration")) {
        o.duration_s = std::stod(args.value());
      } else if (args.is("--warmup")) {
        o.warmup_s = std::stod(args.value());
      } else if (args.is("--ramp")) {
        o.ramp_s = std::stod(args.value());
      } else if (args.is("--max-tokens")) {
        o.max_tokens = std::stol(args.value());
      } else if (args.is("--stagger")) {
        o.stagger = true;
      } else if (args.is("--token")) {
        o.token = args.value();
      } else if (args.is("--watch")) {
        const std::string w = args.value();
        auto eq = w.find('=');
        if (eq == std::string::npos) args.fail();
        o.watch.emplace_back(w.substr(0, eq), std::stoi(w.substr(eq + 1)));
      } else if (args.is("--out")) {
        out = args.value();
      } else {
        args.fail();
      }
    }
  } catch (const std::exception&) {
    args.fail();
  }
  if (o.concurrency < 1 || o.duration_s <= 0 || o.warmup_s < 0 || o.max_tokens < 1 ||
      (o.mode == Mode::Get && o.path.empty()))
    args.fail();
  pi::bench::raise_nofile_limit();
  for (auto& [name, pid] : o.watch) g.watched.push_back(Watched{name, pid});
  g.watched.push_back(Watched{"loadgen", static_cast<int>(getpid())});
  try {
    auto r = g.run();
    std::string s = json::serialize(r);
    if (!out.empty()) {
      std::ofstream f(out);
      f << s << "\n";
    }
    std::printf("%s\n", s.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pi-loadgen: %s\n", e.what());
    return 1;
  }
  return 0;
}
