// DstackClient against real sockets: the dev-tee server (real dstack wire protocol, recorded data) and small
// misbehaving agents (silent, malformed answers) written here.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>
#include <chrono>
#include <filesystem>
#include <future>
#include <string>
#include <thread>

#include "crypto/eth.hpp"
#include "devtee/devtee.hpp"
#include "tee/dstack_client.hpp"
#include "test_support.hpp"

namespace {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using pi::tee::DstackClient;
using pi::tee::DstackEndpoint;
using pi::tee::DstackError;

const std::string kFixtures = PI_FIXTURES_DIR;

using pi::testsupport::run_co;
using pi::testsupport::TempDir;

DstackEndpoint unix_ep(const std::string& path) { return *pi::tee::parse_dstack_endpoint(path); }

pi::devtee::Options devtee_opts(const TempDir& dir, const std::string& fixture = "vllm_proxy_sample_dstack.json") {
  pi::devtee::Options o;
  o.socket_path = dir.file("dstack.sock");
  o.fixture_path = kFixtures + "/tdx/" + fixture;
  o.state_dir = dir.file("state");
  return o;
}

// An agent that accepts connections and never answers.
asio::awaitable<void> silent_agent(local::acceptor& acc, std::vector<local::socket>& held) {
  for (;;) {
    auto sock = co_await acc.async_accept(asio::use_awaitable);
    held.push_back(std::move(sock));
  }
}

// An agent that reads one request head and answers with a fixed raw HTTP response.
asio::awaitable<void> canned_agent(local::acceptor& acc, std::string raw_response) {
  for (;;) {
    auto sock = co_await acc.async_accept(asio::use_awaitable);
    asio::streambuf buf;
    co_await asio::async_read_until(sock, buf, "\r\n\r\n", asio::use_awaitable);
    co_await asio::async_write(sock, asio::buffer(raw_response), asio::use_awaitable);
    boost::system::error_code ec;
    sock.shutdown(asio::socket_base::shutdown_both, ec);
  }
}

std::string http_answer(int status, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

// ----------------------------------------------------------------------------------------------------------------

TEST(DstackEndpoint, ParsesSocketPathsAndHttp) {
  auto a = pi::tee::parse_dstack_endpoint("/var/run/dstack.sock");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->kind, DstackEndpoint::Kind::Unix);
  EXPECT_EQ(a->path, "/var/run/dstack.sock");
  EXPECT_EQ(a->describe(), "unix:/var/run/dstack.sock");

  auto b = pi::tee::parse_dstack_endpoint("unix:/tmp/x.sock");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->path, "/tmp/x.sock");
  auto b2 = pi::tee::parse_dstack_endpoint("unix:///tmp/x.sock");
  ASSERT_TRUE(b2);
  EXPECT_EQ(b2->path, "/tmp/x.sock");

  auto c = pi::tee::parse_dstack_endpoint("http://127.0.0.1:8090");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->kind, DstackEndpoint::Kind::Http);
  EXPECT_EQ(c->host, "127.0.0.1");
  EXPECT_EQ(c->port, "8090");
  EXPECT_EQ(c->describe(), "http://127.0.0.1:8090");

  auto d = pi::tee::parse_dstack_endpoint("http://[::1]:8090/");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->host, "::1");
  EXPECT_EQ(d->describe(), "http://[::1]:8090");

  auto e = pi::tee::parse_dstack_endpoint("http://localhost");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->port, "80");

  EXPECT_FALSE(pi::tee::parse_dstack_endpoint(""));
  EXPECT_FALSE(pi::tee::parse_dstack_endpoint("https://host:443"));
  EXPECT_FALSE(pi::tee::parse_dstack_endpoint("http://host:99999"));
  EXPECT_FALSE(pi::tee::parse_dstack_endpoint("http://host:80/path"));
  EXPECT_FALSE(pi::tee::parse_dstack_endpoint("http://host:abc"));
  EXPECT_FALSE(pi::tee::parse_dstack_endpoint("unix:"));
}

class EnvGuard {
 public:
  explicit EnvGuard(const char* name) : name_(name) {
    if (const char* v = std::getenv(name)) old_ = v;
  }
  ~EnvGuard() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(DstackDiscovery, FlagThenEnvThenDefaultSockets) {
  EnvGuard guard("DSTACK_SIMULATOR_ENDPOINT");
  ::setenv("DSTACK_SIMULATOR_ENDPOINT", "/tmp/from-env.sock", 1);
  auto from_env = pi::tee::discover_dstack("");
  ASSERT_TRUE(from_env);
  EXPECT_EQ(from_env->describe(), "unix:/tmp/from-env.sock");  // explicit: used even though no socket exists

  auto from_flag = pi::tee::discover_dstack("/tmp/from-flag.sock");
  ASSERT_TRUE(from_flag);
  EXPECT_EQ(from_flag->path, "/tmp/from-flag.sock");  // the flag wins over the environment

  ::setenv("DSTACK_SIMULATOR_ENDPOINT", "http://127.0.0.1:8090", 1);
  auto http = pi::tee::discover_dstack("");
  ASSERT_TRUE(http);
  EXPECT_EQ(http->kind, DstackEndpoint::Kind::Http);

  ::setenv("DSTACK_SIMULATOR_ENDPOINT", "https://nope", 1);
  EXPECT_THROW(pi::tee::discover_dstack(""), DstackError);  // explicit but unusable: an error, not "no TEE"

  ::unsetenv("DSTACK_SIMULATOR_ENDPOINT");
  auto fallback = pi::tee::discover_dstack("");
  std::error_code ec;
  const bool default_exists = std::filesystem::is_socket("/var/run/dstack.sock", ec) ||
                              std::filesystem::is_socket("/var/run/dstack/dstack.sock", ec);
  if (default_exists) {
    ASSERT_TRUE(fallback);
  } else {
    EXPECT_FALSE(fallback) << "no dstack socket here, discovery must report no TEE";
  }
}

TEST(DstackClient, TimesOutOnAnAgentThatNeverAnswers) {
  TempDir dir;
  asio::io_context ioc;
  local::acceptor acc(ioc, local::endpoint(dir.file("silent.sock")));
  std::vector<local::socket> held;
  asio::co_spawn(ioc, silent_agent(acc, held), asio::detached);

  DstackClient client(ioc.get_executor(), unix_ep(dir.file("silent.sock")), std::chrono::milliseconds(300));
  const auto start = std::chrono::steady_clock::now();
  try {
    run_co(ioc, client.version());
    FAIL() << "expected a timeout";
  } catch (const DstackError& e) {
    EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos) << e.what();
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, std::chrono::milliseconds(250));
  EXPECT_LT(elapsed, std::chrono::seconds(3));
  EXPECT_EQ(held.size(), 1u);  // it really connected; the deadline covered the read
}

TEST(DstackClient, UnixRequestsAreJsonPostsWithHostLocalhost) {
  TempDir dir;
  asio::io_context ioc;
  local::acceptor acc(ioc, local::endpoint(dir.file("agent.sock")));
  auto seen = std::make_shared<std::string>();
  auto agent = [](local::acceptor& a, std::shared_ptr<std::string> seen) -> asio::awaitable<void> {
    auto sock = co_await a.async_accept(asio::use_awaitable);
    asio::streambuf buf;
    co_await asio::async_read_until(sock, buf, "}", asio::use_awaitable);
    *seen = std::string(asio::buffers_begin(buf.data()), asio::buffers_end(buf.data()));
    const std::string answer =
        http_answer(200, R"({"quote":"0xABCDEF","event_log":[{"imr":3}],"report_data":"00","vm_config":{"a":1}})");
    co_await asio::async_write(sock, asio::buffer(answer), asio::use_awaitable);
  };
  asio::co_spawn(ioc, agent(acc, seen), asio::detached);
  DstackClient client(ioc.get_executor(), unix_ep(dir.file("agent.sock")), std::chrono::seconds(5));
  auto q = run_co(ioc, client.get_quote(pi::as_bytes("\x01\x02")));
  EXPECT_EQ(seen->rfind("POST /GetQuote HTTP/1.1\r\n", 0), 0u) << *seen;
  EXPECT_NE(seen->find("Host: localhost\r\n"), std::string::npos) << *seen;
  EXPECT_NE(seen->find("Content-Type: application/json\r\n"), std::string::npos) << *seen;
  EXPECT_NE(seen->find(R"({"report_data":"0102"})"), std::string::npos) << *seen;
  // 0x prefix stripped and lowercased; non-string event_log / vm_config serialized; simulated defaults to false.
  EXPECT_EQ(q.quote_hex, "abcdef");
  EXPECT_EQ(q.event_log, R"([{"imr":3}])");
  EXPECT_EQ(q.vm_config, R"({"a":1})");
  EXPECT_EQ(q.report_data_hex, "00");
  EXPECT_FALSE(q.simulated);
}

TEST(DstackClient, ConnectFailureIsAClearError) {
  TempDir dir;
  asio::io_context ioc;
  DstackClient client(ioc.get_executor(), unix_ep(dir.file("missing.sock")), std::chrono::seconds(2));
  try {
    run_co(ioc, client.info());
    FAIL() << "expected an error";
  } catch (const DstackError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("dstack Info"), std::string::npos) << msg;
    EXPECT_NE(msg.find(dir.file("missing.sock")), std::string::npos) << msg;
  }
}

TEST(DstackClient, MalformedJsonAndNon2xxAreDstackErrors) {
  TempDir dir;
  asio::io_context ioc;
  local::acceptor bad_json(ioc, local::endpoint(dir.file("badjson.sock")));
  asio::co_spawn(ioc, canned_agent(bad_json, http_answer(200, "{\"quote\": ")), asio::detached);
  local::acceptor not_hex(ioc, local::endpoint(dir.file("nothex.sock")));
  asio::co_spawn(ioc, canned_agent(not_hex, http_answer(200, R"({"quote":"zz","event_log":"[]"})")), asio::detached);
  local::acceptor err(ioc, local::endpoint(dir.file("err.sock")));
  asio::co_spawn(ioc, canned_agent(err, http_answer(500, R"({"error":"quote generation failed: no TDX device"})")),
                 asio::detached);
  local::acceptor err_text(ioc, local::endpoint(dir.file("errtext.sock")));
  asio::co_spawn(ioc, canned_agent(err_text, http_answer(502, "upstream\x01 broke")), asio::detached);

  auto expect_error = [&](const std::string& sock, const std::string& needle) {
    DstackClient client(ioc.get_executor(), unix_ep(dir.file(sock)), std::chrono::seconds(5));
    try {
      run_co(ioc, client.get_quote(pi::ByteView{}));
      ADD_FAILURE() << "expected an error from " << sock;
    } catch (const DstackError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("badjson.sock", "malformed JSON");
  expect_error("nothex.sock", "not hex");
  expect_error("err.sock", "HTTP 500: quote generation failed: no TDX device");
  expect_error("errtext.sock", "HTTP 502: upstream? broke");
}

TEST(DstackClient, SpeaksHttpOverTcpForSimulatorEndpoints) {
  asio::io_context ioc;
  asio::ip::tcp::acceptor acc(ioc, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const std::string port = std::to_string(acc.local_endpoint().port());
  // What the TCP agent saw, to check the request line and headers.
  auto seen = std::make_shared<std::string>();
  auto agent = [](asio::ip::tcp::acceptor& a, std::shared_ptr<std::string> seen) -> asio::awaitable<void> {
    auto sock = co_await a.async_accept(asio::use_awaitable);
    asio::streambuf buf;
    co_await asio::async_read_until(sock, buf, "}", asio::use_awaitable);  // head + the small JSON body
    *seen = std::string(asio::buffers_begin(buf.data()), asio::buffers_end(buf.data()));
    const std::string body = R"({"version":"0.5.5","rev":"abc"})";
    const std::string answer = http_answer(200, body);
    co_await asio::async_write(sock, asio::buffer(answer), asio::use_awaitable);
  };
  asio::co_spawn(ioc, agent(acc, seen), asio::detached);
  auto ep = pi::tee::parse_dstack_endpoint("http://127.0.0.1:" + port);
  ASSERT_TRUE(ep);
  DstackClient client(ioc.get_executor(), *ep, std::chrono::seconds(5));
  auto v = run_co(ioc, client.version());
  EXPECT_EQ(v.at("version"), "0.5.5");
  EXPECT_EQ(seen->rfind("POST /Version HTTP/1.1\r\n", 0), 0u) << *seen;
  EXPECT_NE(seen->find("Content-Type: application/json"), std::string::npos) << *seen;
  EXPECT_NE(seen->find("Host: 127.0.0.1"), std::string::npos) << *seen;
}

TEST(DstackClient, RejectsReportDataLongerThan64BytesBeforeSending) {
  TempDir dir;
  asio::io_context ioc;
  DstackClient client(ioc.get_executor(), unix_ep(dir.file("unused.sock")));
  const pi::Bytes rd(65, 0xab);
  try {
    run_co(ioc, client.get_quote(rd));
    FAIL() << "expected an error";
  } catch (const DstackError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("report_data is 65 bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("64"), std::string::npos) << msg;
  }
}

TEST(DstackClient, AgentErrorTextIsCarriedInTheException) {
  // A fixture that is a bare GetQuote answer (no Info): dev-tee answers /Info with HTTP 500 {"error": ...}.
  TempDir dir;
  asio::io_context ioc;
  pi::devtee::Server server(ioc.get_executor(), devtee_opts(dir, "dstack_getquote_stripped.json"));
  server.start();
  DstackClient client(ioc.get_executor(), unix_ep(server.socket_path()));
  try {
    run_co(ioc, client.info());
    FAIL() << "expected an error";
  } catch (const DstackError& e) {
    EXPECT_NE(std::string(e.what()).find("HTTP 500: the dev-tee fixture has no recorded Info"), std::string::npos)
        << e.what();
  }
  // The same server still answers GetQuote from that recorded answer.
  auto q = run_co(ioc, client.get_quote(pi::as_bytes("hello")));
  EXPECT_TRUE(q.simulated);
  EXPECT_FALSE(q.vm_config.empty());
  EXPECT_EQ(q.report_data_hex.substr(0, 10), "68656c6c6f");
}

TEST(DstackClient, GetKeyBlockingUsesItsOwnIoContext) {
  TempDir dir;
  asio::io_context server_ioc;
  auto server = std::make_unique<pi::devtee::Server>(server_ioc.get_executor(), devtee_opts(dir));
  server->start();
  auto guard = asio::make_work_guard(server_ioc);
  std::thread t([&] { server_ioc.run(); });

  pi::tee::KeyResult k1, k2;
  EXPECT_NO_THROW(k1 = pi::tee::get_key_blocking(unix_ep(server->socket_path()), "m/ecdsa-signing-key", "signing"));
  EXPECT_NO_THROW(k2 = pi::tee::get_key_blocking(unix_ep(server->socket_path()), "m/ecdsa-signing-key", "signing"));
  EXPECT_EQ(k1.key.size(), 32u);
  EXPECT_EQ(k1.key, k2.key);
  EXPECT_TRUE(k1.signature_chain.empty());
  EXPECT_TRUE(pi::crypto::EthSigner::from_secret(k1.key).has_value());

  asio::post(server_ioc, [&] {
    server->stop();
    guard.reset();
    server_ioc.stop();
  });
  t.join();
  server.reset();
  EXPECT_THROW(
      pi::tee::get_key_blocking(unix_ep(dir.file("dstack.sock")), "p", "signing", std::chrono::milliseconds(500)),
      DstackError);  // the socket file is gone after stop()
}

}  // namespace
