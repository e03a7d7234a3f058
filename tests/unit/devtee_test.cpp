// dev-tee: the simulated dstack agent, started in-process on a temp socket and driven with the real DstackClient
// (and raw HTTP where the client cannot produce the bad input).
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "crypto/eth.hpp"
#include "devtee/devtee.hpp"
#include "tee/dstack_client.hpp"
#include "test_support.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using local = asio::local::stream_protocol;
using pi::tee::DstackClient;
using pi::tee::DstackError;

const std::string kFixture = std::string(PI_FIXTURES_DIR) + "/tdx/vllm_proxy_sample_dstack.json";
constexpr std::size_t kReportDataAt = 568;  // TDX v4 quote: 48-byte header + REPORTDATA at TD report offset 520

using pi::testsupport::run_co;
using pi::testsupport::TempDir;

json::object read_json_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str()).as_object();
}

// The recorded quote, read independently of dev-tee's fixture loader.
pi::Bytes fixture_quote() {
  auto root = read_json_file(kFixture);
  return *pi::from_hex(std::string_view(root.at("quote").at("quote").as_string()));
}

pi::devtee::Options opts_in(const TempDir& dir, const std::string& state = "state") {
  pi::devtee::Options o;
  o.socket_path = dir.file("dstack.sock");
  o.fixture_path = kFixture;
  o.state_dir = state.empty() ? std::string() : dir.file(state);
  return o;
}

struct RawReply {
  unsigned status = 0;
  std::string body;
};

// One HTTP request over the Unix socket, bypassing DstackClient so bad input can be sent.
asio::awaitable<RawReply> raw(std::string sock_path, http::verb verb, std::string target, std::string body,
                              std::string content_length_override = {}) {
  local::socket sock(co_await asio::this_coro::executor);
  co_await sock.async_connect(local::endpoint(sock_path), asio::use_awaitable);
  if (!content_length_override.empty()) {
    // A header that announces a huge body; the server must refuse it without reading it.
    std::string head = std::string(http::to_string(verb)) + " " + target +
                       " HTTP/1.1\r\nHost: localhost\r\nContent-Length: " + content_length_override + "\r\n\r\n";
    co_await asio::async_write(sock, asio::buffer(head), asio::use_awaitable);
  } else {
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "localhost");
    if (!body.empty()) req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    co_await http::async_write(sock, req, asio::use_awaitable);
  }
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  co_await http::async_read(sock, buf, res, asio::use_awaitable);
  co_return RawReply{res.result_int(), res.body()};
}

// ----------------------------------------------------------------------------------------------------------------

class DevTee : public ::testing::Test {
 protected:
  void SetUp() override {
    server = std::make_unique<pi::devtee::Server>(ioc.get_executor(), opts_in(dir));
    server->start();
    client = std::make_unique<DstackClient>(ioc.get_executor(), *pi::tee::parse_dstack_endpoint(server->socket_path()),
                                            std::chrono::seconds(10));
  }
  TempDir dir;
  asio::io_context ioc;
  std::unique_ptr<pi::devtee::Server> server;
  std::unique_ptr<DstackClient> client;
};

TEST_F(DevTee, QuoteCarriesReportDataAndEveryOtherByteIsTheRecording) {
  const pi::Bytes original = fixture_quote();
  ASSERT_GT(original.size(), kReportDataAt + 64);

  pi::Bytes rd(64);
  for (std::size_t i = 0; i < rd.size(); ++i) rd[i] = static_cast<std::uint8_t>(0xa0 ^ i);
  auto q = run_co(ioc, client->get_quote(rd));
  EXPECT_TRUE(q.simulated);
  auto quote = pi::from_hex(q.quote_hex);
  ASSERT_TRUE(quote);
  ASSERT_EQ(quote->size(), original.size());
  for (std::size_t i = 0; i < quote->size(); ++i) {
    if (i >= kReportDataAt && i < kReportDataAt + 64) {
      ASSERT_EQ((*quote)[i], rd[i - kReportDataAt]) << "report_data byte " << i - kReportDataAt;
    } else {
      ASSERT_EQ((*quote)[i], original[i]) << "quote byte " << i << " changed";
    }
  }
  EXPECT_EQ(q.report_data_hex, pi::to_hex(rd));
  // The recorded event log is passed through as the same JSON string.
  auto root = read_json_file(kFixture);
  EXPECT_EQ(q.event_log, std::string(root.at("quote").at("event_log").as_string()));
  EXPECT_TRUE(json::parse(q.event_log).is_array());
  // vm_config is JSON text naming the recorded os image.
  auto vm = json::parse(q.vm_config).as_object();
  EXPECT_EQ(vm.at("os_image_hash"), root.at("info").at("os_image_hash"));
}

TEST_F(DevTee, ShortReportDataIsZeroPadded) {
  auto q = run_co(ioc, client->get_quote(pi::as_bytes("abc")));
  auto quote = *pi::from_hex(q.quote_hex);
  pi::Bytes expect(64, 0);
  expect[0] = 'a';
  expect[1] = 'b';
  expect[2] = 'c';
  EXPECT_EQ(pi::Bytes(quote.begin() + kReportDataAt, quote.begin() + kReportDataAt + 64), expect);
  EXPECT_EQ(q.report_data_hex, pi::to_hex(expect));
}

TEST_F(DevTee, OversizedReportDataIsRefusedByServerAndClient) {
  // Client side: never sent.
  EXPECT_THROW(run_co(ioc, client->get_quote(pi::Bytes(65, 1))), DstackError);
  // Server side: a raw request with 65 bytes gets 400 and a clear message.
  const std::string body = R"({"report_data":")" + std::string(130, 'a') + R"("})";
  auto r = run_co(ioc, raw(server->socket_path(), http::verb::post, "/GetQuote", body));
  EXPECT_EQ(r.status, 400u);
  auto o = json::parse(r.body).as_object();
  EXPECT_NE(std::string(o.at("error").as_string()).find("65 bytes"), std::string::npos) << r.body;
  EXPECT_EQ(o.at("simulated"), true);

  auto bad_hex = run_co(ioc, raw(server->socket_path(), http::verb::post, "/GetQuote", R"({"report_data":"xyz"})"));
  EXPECT_EQ(bad_hex.status, 400u);
  EXPECT_NE(bad_hex.body.find("not valid hex"), std::string::npos) << bad_hex.body;
  auto not_string = run_co(ioc, raw(server->socket_path(), http::verb::post, "/GetQuote", R"({"report_data":12})"));
  EXPECT_EQ(not_string.status, 400u);
}

TEST_F(DevTee, GetQuoteByQueryString) {
  const std::string rd = "00112233445566778899aabbccddeeff";
  auto r = run_co(ioc, raw(server->socket_path(), http::verb::get, "/GetQuote?report_data=" + rd, ""));
  ASSERT_EQ(r.status, 200u) << r.body;
  auto o = json::parse(r.body).as_object();
  EXPECT_EQ(std::string(o.at("report_data").as_string()), rd + std::string(96, '0'));
  auto quote = *pi::from_hex(std::string_view(o.at("quote").as_string()));
  EXPECT_EQ(pi::to_hex(pi::ByteView(quote).subspan(kReportDataAt, 16)), rd);
  EXPECT_EQ(o.at("simulated"), true);
}

TEST_F(DevTee, InfoHasTcbInfoAsAStringCarryingAppCompose) {
  auto info = run_co(ioc, client->info());
  EXPECT_EQ(info.at("simulated"), true);
  ASSERT_TRUE(info.at("tcb_info").is_string());
  auto tcb = json::parse(info.at("tcb_info").as_string()).as_object();
  ASSERT_TRUE(tcb.contains("app_compose"));
  auto root = read_json_file(kFixture);
  const auto& recorded = root.at("info").as_object();
  EXPECT_EQ(tcb.at("app_compose"), recorded.at("tcb_info").at("app_compose"));
  EXPECT_EQ(tcb.at("mrtd"), recorded.at("tcb_info").at("mrtd"));
  EXPECT_EQ(info.at("app_id"), recorded.at("app_id"));
  EXPECT_EQ(info.at("compose_hash"), recorded.at("compose_hash"));
}

TEST_F(DevTee, VersionIsLabelledSimulated) {
  auto v = run_co(ioc, client->version());
  EXPECT_EQ(v.at("simulated"), true);
  EXPECT_EQ(v.at("rev"), "simulated");
  EXPECT_NE(std::string(v.at("version").as_string()).find("-dev-tee"), std::string::npos);
}

TEST_F(DevTee, BadRequestsGetClearErrorsAndTheServerKeepsServing) {
  auto malformed = run_co(ioc, raw(server->socket_path(), http::verb::post, "/GetKey", "{\"path\": "));
  EXPECT_EQ(malformed.status, 400u);
  auto o = json::parse(malformed.body).as_object();
  EXPECT_NE(std::string(o.at("error").as_string()).find("malformed JSON"), std::string::npos) << malformed.body;

  auto not_object = run_co(ioc, raw(server->socket_path(), http::verb::post, "/GetKey", "[1,2]"));
  EXPECT_EQ(not_object.status, 400u);
  auto wrong_type = run_co(ioc, raw(server->socket_path(), http::verb::post, "/GetKey", R"({"path":1})"));
  EXPECT_EQ(wrong_type.status, 400u);

  auto unknown = run_co(ioc, raw(server->socket_path(), http::verb::post, "/GetTlsKey", "{}"));
  EXPECT_EQ(unknown.status, 404u);
  EXPECT_NE(unknown.body.find("unknown endpoint"), std::string::npos) << unknown.body;

  auto method = run_co(ioc, raw(server->socket_path(), http::verb::delete_, "/Info", ""));
  EXPECT_EQ(method.status, 405u);

  auto bad_escape = run_co(ioc, raw(server->socket_path(), http::verb::get, "/GetKey?path=%zz", ""));
  EXPECT_EQ(bad_escape.status, 400u);

  auto too_big = run_co(ioc, raw(server->socket_path(), http::verb::post, "/GetQuote", "", "1000000"));
  EXPECT_EQ(too_big.status, 413u);

  auto v = run_co(ioc, client->version());  // still alive
  EXPECT_EQ(v.at("simulated"), true);
}

TEST_F(DevTee, AnswersExpect100ContinueAndKeepsConnectionsAlive) {
  auto exchange = [](std::string path) -> asio::awaitable<std::pair<std::string, std::string>> {
    local::socket sock(co_await asio::this_coro::executor);
    co_await sock.async_connect(local::endpoint(path), asio::use_awaitable);
    const std::string body = R"({"path":"a","purpose":"b"})";
    const std::string head =
        "POST /GetKey HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Expect: 100-continue\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n";
    co_await asio::async_write(sock, asio::buffer(head), asio::use_awaitable);
    asio::streambuf interim;
    const std::size_t n = co_await asio::async_read_until(sock, interim, "\r\n\r\n", asio::use_awaitable);
    std::string first(asio::buffers_begin(interim.data()), asio::buffers_begin(interim.data()) + n);
    interim.consume(n);
    co_await asio::async_write(sock, asio::buffer(body), asio::use_awaitable);
    beast::flat_buffer buf;
    buf.commit(asio::buffer_copy(buf.prepare(interim.size()), interim.data()));
    http::response<http::string_body> res;
    co_await http::async_read(sock, buf, res, asio::use_awaitable);
    // The same connection serves a second request (keep-alive).
    http::request<http::string_body> again{http::verb::get, "/Version", 11};
    again.set(http::field::host, "localhost");
    co_await http::async_write(sock, again, asio::use_awaitable);
    http::response<http::string_body> res2;
    co_await http::async_read(sock, buf, res2, asio::use_awaitable);
    co_return std::pair{first, res.body() + "|" + res2.body()};
  };
  auto [first, bodies] = run_co(ioc, exchange(server->socket_path()));
  EXPECT_EQ(first.rfind("HTTP/1.1 100 Continue\r\n", 0), 0u) << first;
  EXPECT_NE(bodies.find(R"("key":")"), std::string::npos) << bodies;
  EXPECT_NE(bodies.find("-dev-tee"), std::string::npos) << bodies;
}

TEST(DevTeeKeys, DeterministicPerStateDirAndValidSecp256k1) {
  TempDir dir;
  auto get = [&](const std::string& state, const std::string& path) {
    asio::io_context ioc;
    pi::devtee::Server server(ioc.get_executor(), opts_in(dir, state));
    server.start();
    DstackClient client(ioc.get_executor(), *pi::tee::parse_dstack_endpoint(server.socket_path()));
    return run_co(ioc, client.get_key(path, "signing")).key;
  };
  const auto a1 = get("s1", "model/ecdsa-signing-key");
  const auto a2 = get("s1", "model/ecdsa-signing-key");  // a second server instance, same state dir
  const auto b = get("s2", "model/ecdsa-signing-key");
  const auto other_path = get("s1", "model/ed25519-signing-key");
  EXPECT_EQ(a1.size(), 32u);
  EXPECT_EQ(a1, a2);
  EXPECT_NE(a1, b);
  EXPECT_NE(a1, other_path);
  EXPECT_TRUE(pi::crypto::EthSigner::from_secret(a1).has_value());
  EXPECT_TRUE(pi::crypto::EthSigner::from_secret(b).has_value());

  // The seed file is private and the key follows the documented formula (computed here with OpenSSL directly).
  struct stat st {};
  ASSERT_EQ(::stat(dir.file("s1/seed").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(dir.file("s1").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  std::ifstream in(dir.file("s1/seed"));
  std::string seed_hex;
  in >> seed_hex;
  auto seed = pi::from_hex(seed_hex);
  ASSERT_TRUE(seed && seed->size() == 32);
  const std::string msg = std::string("dstack-dev-tee-key") + '\0' + "model/ecdsa-signing-key" + '\0' + "signing";
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), seed->data(), 32, reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac, &len);
  EXPECT_EQ(pi::to_hex(a1), pi::to_hex(pi::ByteView(mac, len)));
}

TEST(DevTeeKeys, WithoutStateDirKeysArePerProcess) {
  TempDir dir;
  auto get = [&] {
    asio::io_context ioc;
    pi::devtee::Server server(ioc.get_executor(), opts_in(dir, ""));
    server.start();
    DstackClient client(ioc.get_executor(), *pi::tee::parse_dstack_endpoint(server.socket_path()));
    return run_co(ioc, client.get_key("p", "signing")).key;
  };
  EXPECT_NE(get(), get());
}

TEST(DevTeeKeys, CorruptSeedFileIsAnError) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("state"));
  std::ofstream(dir.file("state/seed")) << "not hex";
  EXPECT_THROW(pi::devtee::KeyDeriver::open(dir.file("state")), std::runtime_error);
}

TEST(DevTeeKeys, DerivedKeysAreValidSecretsAndPure) {
  // The re-hash branch (HMAC output >= the group order) cannot be reached with a real seed in feasible time, so
  // this checks the invariant over many paths: every key is a valid secret and a pure function of its inputs.
  std::array<std::uint8_t, 32> seed{};
  seed.fill(7);
  pi::devtee::KeyDeriver k(seed);
  for (int i = 0; i < 200; ++i) {
    auto key = k.derive("p" + std::to_string(i), "signing");
    ASSERT_TRUE(pi::crypto::EthSigner::from_secret(key).has_value());
    ASSERT_EQ(key, k.derive("p" + std::to_string(i), "signing"));
  }
  EXPECT_NE(k.derive("a", "b"), k.derive("a", "c"));
  EXPECT_NE(k.derive("ab", "c"), k.derive("a", "bc"));
  // NUL separates path from purpose, so NUL inside them would make the encoding ambiguous: refused.
  EXPECT_THROW(k.derive(std::string_view("a\0b", 3), "c"), std::invalid_argument);
  EXPECT_THROW(k.derive("a", std::string_view("b\0c", 3)), std::invalid_argument);
}

TEST(DevTeeServer, RemovesStaleSocketRefusesLiveOnesAndCleansUp) {
  TempDir dir;
  const std::string path = dir.file("dstack.sock");
  {
    // A stale socket file: bound, then the listener gone.
    asio::io_context ioc;
    local::acceptor acc(ioc, local::endpoint(path));
    acc.close();
  }
  ASSERT_TRUE(std::filesystem::is_socket(path));
  asio::io_context ioc;
  {
    pi::devtee::Server server(ioc.get_executor(), opts_in(dir));
    server.start();
    EXPECT_TRUE(std::filesystem::is_socket(path));
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0660u);
    // A second instance on the same live socket is refused.
    EXPECT_THROW(pi::devtee::Server(ioc.get_executor(), opts_in(dir)), std::runtime_error);
    server.stop();
    EXPECT_FALSE(std::filesystem::exists(path));
  }
  // A regular file in the way is never deleted.
  std::ofstream(path) << "precious";
  EXPECT_THROW(pi::devtee::Server(ioc.get_executor(), opts_in(dir)), std::runtime_error);
  EXPECT_TRUE(std::filesystem::is_regular_file(path));
}

TEST(DevTeeFixture, LoadsBothShapesAndRejectsBadFiles) {
  auto f = pi::devtee::load_fixture(kFixture);
  EXPECT_EQ(f.report_data_offset, kReportDataAt);
  ASSERT_TRUE(f.info);
  EXPECT_TRUE(f.info->at("tcb_info").is_string());

  auto flat = pi::devtee::load_fixture(std::string(PI_FIXTURES_DIR) + "/tdx/dstack_getquote_stripped.json");
  EXPECT_EQ(flat.report_data_offset, kReportDataAt);
  EXPECT_FALSE(flat.info);
  EXPECT_FALSE(flat.vm_config.empty());

  TempDir dir;
  EXPECT_THROW(pi::devtee::load_fixture(dir.file("missing.json")), std::runtime_error);
  std::ofstream(dir.file("bad.json")) << "{";
  EXPECT_THROW(pi::devtee::load_fixture(dir.file("bad.json")), std::runtime_error);
  std::ofstream(dir.file("short.json")) << R"({"quote":"0400020081000000","event_log":"[]"})";
  EXPECT_THROW(pi::devtee::load_fixture(dir.file("short.json")), std::runtime_error);
  // An SGX quote (tee_type 0) is not a TD quote.
  std::ofstream(dir.file("sgx.json")) << R"({"quote":")" << std::string(std::size_t{2} * 700, '0')
                                      << R"(","event_log":"[]"})";
  EXPECT_THROW(pi::devtee::load_fixture(dir.file("sgx.json")), std::runtime_error);
}

TEST(DevTeeHandler, PathsAndLabels) {
  pi::devtee::Handler h(pi::devtee::load_fixture(kFixture), pi::devtee::KeyDeriver::open(""));
  for (const char* path : {"/GetQuote", "/Info", "/GetKey", "/Version"}) {
    auto post = h.handle("POST", path, "");
    EXPECT_EQ(post.status, 200u) << path << ": " << post.body;
    EXPECT_EQ(json::parse(post.body).at("simulated"), true) << path;
    EXPECT_EQ(h.handle("GET", path, "").status, 200u) << path;
  }
  auto key = json::parse(h.handle("GET", "/GetKey?path=a%2Fb&purpose=signing", "").body).as_object();
  auto key2 = json::parse(h.handle("POST", "/GetKey", R"({"path":"a/b","purpose":"signing"})").body).as_object();
  EXPECT_EQ(key.at("key"), key2.at("key"));
  EXPECT_TRUE(key.at("signature_chain").as_array().empty());
  EXPECT_EQ(h.handle("POST", "/", "").status, 404u);
  auto nul = h.handle("GET", "/GetKey?path=a%00b&purpose=signing", "");
  EXPECT_EQ(nul.status, 400u);
  EXPECT_NE(nul.body.find("NUL"), std::string::npos) << nul.body;
}

}  // namespace

namespace {

// The real `private-inference dev-tee` process next to this test binary (both land in the build dir).
TEST(DevTeeProcess, ServesOverItsSocketAndCleansUpOnSigterm) {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path() / "private-inference";
  if (ec || !std::filesystem::exists(exe)) GTEST_SKIP() << "private-inference is not built next to the tests";
  TempDir dir;
  const std::string sock = dir.file("dstack.sock");
  std::vector<std::string> args = {exe.string(), "dev-tee",         "--socket",  sock,
                                   "--state",    dir.file("state"), "--fixture", kFixture};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(::posix_spawn(&pid, args[0].c_str(), nullptr, nullptr, argv.data(), environ), 0);

  auto exited = [&](int* status) { return ::waitpid(pid, status, WNOHANG) == pid; };
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  asio::io_context ioc;
  DstackClient client(ioc.get_executor(), *pi::tee::parse_dstack_endpoint(sock), std::chrono::seconds(10));
  std::optional<json::object> version;
  while (!version) {
    if (exited(&status)) FAIL() << "dev-tee exited early with status " << status;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      FAIL() << "dev-tee did not answer on " << sock;
    }
    try {
      version = run_co(ioc, client.version());
    } catch (const DstackError&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  EXPECT_EQ(version->at("simulated"), true);
  auto q = run_co(ioc, client.get_quote(pi::as_bytes("process")));
  EXPECT_TRUE(q.simulated);

  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(std::filesystem::exists(sock)) << "socket file left behind";
}

}  // namespace
