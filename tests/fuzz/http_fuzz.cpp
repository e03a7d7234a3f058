// HTTP requests through the signing proxy's session (src/server: session, routes, handlers, relay, response
// signer), end to end over a real TCP connection. One in-process ProxyServer (one worker, a token, the in-process
// dev-tee as its TEE agent) in front of the in-process fake engine (tests/unit/fake_engine.hpp) serves every
// input. Per input: connect, write the bytes, half-close, read until the proxy closes.
//
// Findings besides crashes and sanitizer reports: the proxy does not close a half-closed connection within
// kDeadline, the answer does not start with a parsable HTTP status line and header, or the server stops
// answering (a refused connection, or a failed health probe every kProbeEvery inputs).
//
// Input: byte 0 chooses how the engine answers (low 2 bits: JSON 200, SSE stream ending in [DONE], SSE stream
// cut off, JSON 500), the rest is what the client sends.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "crypto/ed25519.hpp"
#include "crypto/eth.hpp"
#include "devtee/devtee.hpp"
#include "fake_engine.hpp"
#include "fuzz_support.hpp"
#include "protocol/signing.hpp"
#include "server/config.hpp"
#include "server/proxy.hpp"
#include "tee/agent.hpp"
#include "tee/dstack_client.hpp"

namespace {

namespace net = boost::asio;
namespace http = boost::beast::http;
using namespace std::chrono_literals;
using pi::testsupport::Answer;
using pi::testsupport::Piece;

constexpr auto kDeadline = 4s;
constexpr unsigned kProbeEvery = 256;
constexpr std::size_t kKeepBytes = 64 * 1024;  // of the answer, enough for the status line and header

std::atomic<unsigned> g_mode{0};

Answer engine_answer() {
  static const std::string chunk =
      R"(data: {"id":"chatcmpl-fuzz","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]})"
      "\n\n";
  switch (g_mode.load() & 3u) {
    case 0:
      return Answer::json(R"({"id":"chatcmpl-fuzz","object":"chat.completion","choices":[]})");
    case 1:
      return Answer::sse({Piece{0ms, chunk}, Piece{0ms, "data: [DONE]\n\n"}});
    case 2:
      return Answer::sse({Piece{0ms, chunk}}, Answer::End::Cut);
    default:
      return Answer::json(R"({"error":{"message":"engine failed","type":"server_error"}})", 500);
  }
}

pi::protocol::SigningIdentity identity() {
  auto ecdsa = pi::crypto::EthSigner::from_secret(pi::Bytes(32, 0x42));
  auto ed = pi::crypto::Ed25519Signer::from_seed(pi::Bytes(32, 0x24));
  if (!ecdsa || !ed) throw std::runtime_error("fuzz keys");
  return {*ecdsa, std::move(*ed)};
}

// Everything lives until exit; stop() runs from atexit, before static destructors tear down what the threads use.
struct Env {
  pi::testsupport::FakeEngine engine;
  std::string dir;
  net::io_context tee_ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::unique_ptr<pi::devtee::Server> devtee;
  std::thread tee_thread;
  std::unique_ptr<pi::server::ProxyServer> proxy;
  std::thread proxy_thread;
  unsigned short port = 0;
  std::atomic<bool> stopping{false};

  Env() {
    spdlog::set_level(spdlog::level::off);  // the proxy logs every exchange
    engine.script([](const pi::testsupport::EngineRequest&) { return engine_answer(); });

    std::string tmpl = (std::filesystem::temp_directory_path() / "pi-fuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
    pi::devtee::Options o;
    o.socket_path = dir + "/dstack.sock";
    o.fixture_path = std::string(PI_FIXTURES_DIR) + "/tdx/vllm_proxy_sample_dstack.json";
    devtee = std::make_unique<pi::devtee::Server>(tee_ioc.get_executor(), o);
    devtee->start();
    work.emplace(tee_ioc.get_executor());
    tee_thread = std::thread([this] { tee_ioc.run(); });

    pi::server::ServerConfig c;
    c.backend = pi::server::parse_backend_url("http://127.0.0.1:" + std::to_string(engine.port()));
    c.listen = {"127.0.0.1", 0};
    c.threads = 1;
    c.tokens = {"fuzz-token"};
    c.connect_timeout = 1s;
    c.backend_timeout = 2s;
    c.client_timeout = 2s;
    c.max_body_bytes = 1u << 20;
    c.shutdown_grace = 0ms;
    pi::server::TeeContext tee;
    tee.agent = pi::tee::make_dstack_agent(*pi::tee::parse_dstack_endpoint(devtee->socket_path()));
    tee.simulated = true;
    tee.agent_version = "dev-tee";
    proxy = std::make_unique<pi::server::ProxyServer>(std::move(c), identity(), std::move(tee));
    port = proxy->bind();
    proxy_thread = std::thread([this] {
      try {
        proxy->run(false);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "http_fuzz: ProxyServer::run threw: %s\n", e.what());
        std::abort();
      }
      if (!stopping) {
        std::fprintf(stderr, "http_fuzz: ProxyServer::run returned while the fuzzer still runs\n");
        std::abort();
      }
    });
  }

  void stop() {
    stopping = true;
    proxy->stop();
    proxy_thread.join();
    proxy.reset();
    net::post(tee_ioc, [this] { devtee->stop(); });
    work.reset();
    tee_thread.join();
    devtee.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

Env* g_env = nullptr;

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "http_fuzz: %s\n", what);
  std::fflush(stderr);
  __builtin_trap();
}

// Sends `bytes`, half-closes, and returns what the proxy answered (at most kKeepBytes) once it closes.
std::string exchange(std::string_view bytes) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(g_env->port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // A refused connection is retried a few times: a crashed worker aborts the process and a returned run() is
  // reported by its thread, so only a listener that stays gone is a finding (once, in a CI run on a machine
  // shared with other test processes, one connect was refused and never again).
  int fd = -1;
  for (int attempt = 0;; ++attempt) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) finding("socket() failed");
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) break;
    const int err = errno;
    ::close(fd);
    if (attempt == 4)
      finding((std::string("the proxy refuses connections (it is no longer serving): ") + std::strerror(err)).c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(100 << attempt));
  }
  // The proxy may answer and close before it has read everything (a refused head): a failed send is fine.
  while (!bytes.empty()) {
    const auto n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) break;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  ::shutdown(fd, SHUT_WR);
  std::string got;
  char buf[16384];
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) finding("the proxy kept a half-closed connection open past the deadline");
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) break;  // closed (or reset)
    if (n > 0 && got.size() < kKeepBytes)
      got.append(buf, std::min<std::size_t>(static_cast<std::size_t>(n), kKeepBytes));
  }
  ::close(fd);
  return got;
}

// The first answer's status line and header parse (nothing at all is fine: the proxy may just close).
void check_answer(const std::string& got) {
  if (got.empty()) return;
  http::response_parser<http::empty_body> p;
  p.eager(false);
  p.header_limit(kKeepBytes);
  boost::system::error_code ec;
  p.put(net::buffer(got), ec);
  if (ec || !p.is_header_done()) finding("the answer does not start with a complete HTTP status line and header");
  const unsigned status = p.get().result_int();
  if (status < 100 || status > 599) finding("the answer has an impossible status code");
}

void probe() {
  const auto got = exchange("GET /version HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n");
  if (got.rfind("HTTP/1.1 200 ", 0) != 0) finding("the health probe (GET /version) failed");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_env = new Env();  // NOLINT(cppcoreguidelines-owning-memory): lives until exit, stopped by atexit
  std::atexit([] { g_env->stop(); });
  probe();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static unsigned runs = 0;
  if (size < 1) return 0;
  g_mode = data[0];
  check_answer(exchange(pi::fuzz::as_text(data + 1, size - 1)));
  if (++runs % kProbeEvery == 0) {
    probe();
    g_env->engine.clear_requests();  // bounded memory over a long `make fuzz`
  }
  return 0;
}
