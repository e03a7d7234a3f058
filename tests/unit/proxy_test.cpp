// The signing proxy end to end, in process: a real ProxyServer (one worker thread, short timeouts) in front of
// a scripted fake engine (fake_engine.hpp), driven by a small HTTP client. Only what is visible through
// ProxyServer's public API and on the wire is checked: status codes and OpenAI error envelopes, the bytes
// relayed in both directions, the signatures served and their verification with the identity's keys, and what
// the engine received (or did not, or when it saw its connection closed).
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "crypto/bytes.hpp"
#include "crypto/eth.hpp"
#include "crypto/hash.hpp"
#include "devtee/devtee.hpp"
#include "fake_engine.hpp"
#include "protocol/signing.hpp"
#include "protocol/wire.hpp"
#include "server/config.hpp"
#include "server/proxy.hpp"
#include "server/response_signer.hpp"
#include "tee/agent.hpp"
#include "test_support.hpp"

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;
using pi::testsupport::Answer;
using pi::testsupport::FakeEngine;
using pi::testsupport::Piece;
using Response = http::response<http::string_body>;
using Request = http::request<http::string_body>;

std::string hex_sha256(std::string_view s) { return pi::to_hex(pi::crypto::sha256(s)); }

// ---------------------------------------------------------------------------------------------------------------
// A small HTTP/1.1 client on its own io_context: asynchronous operations run to completion one at a time, each
// bounded by a deadline so that a misbehaving proxy fails the test instead of hanging it.

class Client {
 public:
  explicit Client(unsigned short port, const std::string& local_address = {}) : stream_(ioc_) {
    if (!local_address.empty()) {  // another loopback address: another client for per-client shares
      stream_.socket().open(tcp::v4());
      stream_.socket().bind(tcp::endpoint(net::ip::make_address(local_address), 0));
    }
    auto ec = run([&](auto h) { stream_.async_connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port), h); });
    if (ec) throw std::runtime_error("connect to the proxy failed: " + ec.message());
  }

  beast::error_code write(Request req) {
    req.prepare_payload();
    return run([&](auto h) { http::async_write(stream_, req, h); });
  }
  beast::error_code write_raw(const std::string& bytes) {
    return run([&](auto h) { net::async_write(stream_, net::buffer(bytes), h); });
  }
  beast::error_code read(Response& out, std::chrono::milliseconds limit = 5s) {
    http::response_parser<http::string_body> p;
    p.body_limit(64u << 20);
    auto ec = run([&](auto h) { http::async_read(stream_, buf_, p, h); }, limit);
    out = p.release();
    return ec;
  }
  Response request(Request req) {
    if (auto ec = write(std::move(req))) throw std::runtime_error("write failed: " + ec.message());
    Response res;
    if (auto ec = read(res)) throw std::runtime_error("read failed: " + ec.message());
    return res;
  }
  Response raw(const std::string& bytes) {
    if (auto ec = write_raw(bytes)) throw std::runtime_error("write failed: " + ec.message());
    Response res;
    if (auto ec = read(res)) throw std::runtime_error("read failed: " + ec.message());
    return res;
  }

  // Streaming: the header, then body bytes as they come.
  beast::error_code read_header(http::response_parser<http::string_body>& p) {
    return run([&](auto h) { http::async_read_header(stream_, buf_, p, h); });
  }
  // Reads until the body parsed so far contains `needle` (or an error, or the deadline).
  beast::error_code read_until(http::response_parser<http::string_body>& p, std::string_view needle) {
    while (p.get().body().find(needle) == std::string::npos) {
      if (p.is_done()) return http::error::end_of_stream;
      if (auto ec = run([&](auto h) { http::async_read_some(stream_, buf_, p, h); }); ec) return ec;
    }
    return {};
  }
  // True when the proxy closed the connection (EOF or reset) within `limit`, without sending anything.
  bool closed_by_peer(std::chrono::milliseconds limit = 2s) {
    std::array<char, 64> tmp{};
    std::size_t got = 0;
    beast::error_code ec;
    stream_.expires_after(limit);
    bool done = false;
    stream_.async_read_some(net::buffer(tmp), [&](beast::error_code e, std::size_t n) {
      ec = e;
      got = n;
      done = true;
    });
    drive(done);
    return got == 0 && (ec == net::error::eof || ec == net::error::connection_reset);
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

 private:
  template <class Op>
  beast::error_code run(Op&& op, std::chrono::milliseconds limit = 5s) {
    beast::error_code result = net::error::would_block;
    bool done = false;
    stream_.expires_after(limit);
    op([&](beast::error_code ec, auto&&...) {
      result = ec;
      done = true;
    });
    drive(done);
    return result;
  }
  void drive(const bool& done) {
    ioc_.restart();
    while (!done && ioc_.run_one_for(20s) > 0) {
    }
    if (!done) ADD_FAILURE() << "client operation did not complete";
  }

  net::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
};

Request make_request(http::verb verb, std::string target, std::string body = {}, std::string token = {}) {
  Request req{verb, target, 11};
  req.set(http::field::host, "proxy.test");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  if (verb == http::verb::post) req.set(http::field::content_type, "application/json");
  req.body() = std::move(body);
  return req;
}

// The OpenAI error envelope, checked for its exact shape; returns the inner object.
json::object error_of(const Response& res) {
  EXPECT_EQ(res[http::field::content_type], "application/json");
  boost::system::error_code ec;
  auto v = json::parse(res.body(), ec);
  if (ec || !v.is_object() || !v.as_object().contains("error") || !v.at("error").is_object()) {
    ADD_FAILURE() << "not an OpenAI error envelope: " << res.body();
    return {};
  }
  EXPECT_EQ(v.as_object().size(), 1u) << res.body();
  const auto& e = v.at("error").as_object();
  EXPECT_EQ(e.size(), 4u) << res.body();
  EXPECT_TRUE(e.contains("message") && e.at("message").is_string() && !e.at("message").as_string().empty())
      << res.body();
  EXPECT_TRUE(e.contains("type") && e.at("type").is_string()) << res.body();
  EXPECT_TRUE(e.contains("param")) << res.body();
  EXPECT_TRUE(e.contains("code")) << res.body();
  return e;
}

void expect_error(const Response& res, unsigned status, std::string_view code) {
  EXPECT_EQ(res.result_int(), status) << res.body();
  auto e = error_of(res);
  if (auto* c = e.if_contains("code"); c && c->is_string())
    EXPECT_EQ(c->as_string(), code) << res.body();
  else
    ADD_FAILURE() << "error code missing: " << res.body();
}

// SSE pieces of a chat completion stream with id `id`.
std::string sse_event(std::string_view id, std::string_view content) {
  return "data: {\"id\":\"" + std::string(id) +
         "\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" +
         std::string(content) + "\"}}]}\n\n";
}
constexpr std::string_view kDone = "data: [DONE]\n\n";

// A port nothing listens on (bound, then released).
// The value of an unlabelled metric in a Prometheus text exposition (-1 when absent).
double metric(const std::string& exposition, std::string_view name) {
  std::istringstream in(exposition);
  for (std::string line; std::getline(in, line);)
    if (line.starts_with(name) && line.size() > name.size() && line[name.size()] == ' ')
      return std::stod(line.substr(name.size() + 1));
  return -1;
}

unsigned short unused_port() {
  net::io_context ioc;
  tcp::acceptor a(ioc, {net::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

// Deterministic keys, so that the test keeps its own identity next to the one given to the proxy.
pi::protocol::SigningIdentity make_identity() {
  auto ecdsa = pi::crypto::EthSigner::from_secret(pi::Bytes(32, 0x42));
  auto ed = pi::crypto::Ed25519Signer::from_seed(pi::Bytes(32, 0x24));
  if (!ecdsa || !ed) throw std::runtime_error("test keys");
  return {*ecdsa, std::move(*ed)};
}

// ---------------------------------------------------------------------------------------------------------------

class Proxy : public ::testing::Test {
 protected:
  void SetUp() override {
    prev_level_ = spdlog::get_level();
    spdlog::set_level(spdlog::level::warn);  // the proxy logs every exchange at info
  }
  void TearDown() override {
    stop();
    spdlog::set_level(prev_level_);
  }

  pi::server::ServerConfig config() const {
    pi::server::ServerConfig c;
    c.backend = pi::server::parse_backend_url("http://127.0.0.1:" + std::to_string(engine.port()));
    c.listen = {"127.0.0.1", 0};
    c.threads = 1;
    c.connect_timeout = 2s;
    c.backend_timeout = 5s;
    c.client_timeout = 5s;
    return c;
  }

  void start(const std::function<void(pi::server::ServerConfig&)>& tweak = {}, pi::server::TeeContext tee = {}) {
    auto c = config();
    if (tweak) tweak(c);
    proxy = std::make_unique<pi::server::ProxyServer>(std::move(c), make_identity(), std::move(tee));
    port = proxy->bind();
    thread = std::thread([this] { proxy->run(false); });
  }
  void stop() {
    if (!proxy) return;
    proxy->stop();
    thread.join();
    proxy.reset();
  }

  Response get(const std::string& target, const std::string& token = {}) {
    return Client(port).request(make_request(http::verb::get, target, {}, token));
  }
  Response post(const std::string& target, std::string body, const std::string& token = {}) {
    return Client(port).request(make_request(http::verb::post, target, std::move(body), token));
  }
  Response chat(std::string body = R"({"model":"m","messages":[{"role":"user","content":"hi"}]})",
                const std::string& token = {}) {
    return post("/v1/chat/completions", std::move(body), token);
  }
  json::object signature(const std::string& id, std::string_view algo = "ecdsa", const std::string& token = {}) {
    auto res = get("/v1/signature/" + id + "?signing_algo=" + std::string(algo), token);
    EXPECT_EQ(res.result_int(), 200u) << res.body();
    if (res.result_int() != 200) return {};
    return json::parse(res.body()).as_object();
  }

  // The record served for `id` is a valid signature, by this proxy's keys, over exactly these bytes.
  void expect_signed(const std::string& id, std::string_view request_bytes, std::string_view response_bytes,
                     const std::string& token = {}) {
    const std::string text = hex_sha256(request_bytes) + ":" + hex_sha256(response_bytes);
    auto ec = signature(id, "ecdsa", token);
    ASSERT_FALSE(ec.empty());
    EXPECT_EQ(ec.at("text").as_string(), text);
    EXPECT_EQ(ec.at("request_hash").as_string(), hex_sha256(request_bytes));
    EXPECT_EQ(ec.at("response_hash").as_string(), hex_sha256(response_bytes));
    EXPECT_EQ(ec.at("signing_algo").as_string(), "ecdsa");
    const auto address = identity.signing_address(pi::protocol::SigningAlgo::Ecdsa);
    EXPECT_EQ(ec.at("signing_address").as_string(), address);
    auto signer = pi::protocol::recover_ecdsa_signer(text, ec.at("signature").as_string());
    ASSERT_TRUE(signer.has_value());
    EXPECT_EQ(pi::crypto::eth_checksum_address(*signer), address);

    auto ed = signature(id, "ed25519", token);
    ASSERT_FALSE(ed.empty());
    EXPECT_EQ(ed.at("text").as_string(), text);
    EXPECT_EQ(ed.at("signing_algo").as_string(), "ed25519");
    const auto pub = identity.signing_address(pi::protocol::SigningAlgo::Ed25519);
    EXPECT_EQ(ed.at("signing_address").as_string(), pub);
    EXPECT_TRUE(pi::protocol::verify_ed25519(text, ed.at("signature").as_string(), pub));
    // Both signatures come with either answer.
    EXPECT_EQ(ed.at("ecdsa_signature").as_string(), ec.at("signature").as_string());
    EXPECT_EQ(ec.at("ed25519_signature").as_string(), ed.at("signature").as_string());
  }
  void expect_unsigned(const std::string& id, const std::string& token = {}) {
    expect_error(get("/v1/signature/" + id, token), 404, "signature_not_found");
  }

  FakeEngine engine;
  pi::protocol::SigningIdentity identity = make_identity();
  std::unique_ptr<pi::server::ProxyServer> proxy;
  std::thread thread;
  unsigned short port = 0;

 private:
  spdlog::level::level_enum prev_level_ = spdlog::level::info;
};

// ---------------------------------------------------------------------------------------------------------------
// Routing

TEST_F(Proxy, UnknownPathIs404InTheOpenAiEnvelope) {
  start();
  for (const char* target : {"/", "/v1/chat", "/v1/chat/completions/x", "/v2/models", "/nope?x=1"}) {
    auto res = get(target);
    expect_error(res, 404, "unknown_url");
    EXPECT_EQ(error_of(res).at("type").as_string(), "invalid_request_error");
    EXPECT_TRUE(error_of(res).at("param").is_null());
  }
  auto res = post("/v1/unknown", "{}");
  expect_error(res, 404, "unknown_url");
  EXPECT_EQ(engine.request_count(), 0u);
}

TEST_F(Proxy, WrongMethodIs405WithAllow) {
  start();
  auto res = get("/v1/chat/completions");
  expect_error(res, 405, "method_not_allowed");
  EXPECT_EQ(res[http::field::allow], "POST");
  res = post("/version", "{}");
  expect_error(res, 405, "method_not_allowed");
  EXPECT_EQ(res[http::field::allow], "GET");
  res = Client(port).request(make_request(http::verb::delete_, "/v1/signature/abc"));
  expect_error(res, 405, "method_not_allowed");
  EXPECT_EQ(res[http::field::allow], "GET");
  EXPECT_EQ(engine.request_count(), 0u);
}

TEST_F(Proxy, ForwardsToTheBackendPrefixAndRelaysEngineHeaders) {
  engine.script([](const pi::testsupport::EngineRequest& r) {
    auto a = Answer::json(R"({"object":"list","data":[],"target":")" + r.target + "\"}");
    a.headers = {{"X-Engine-Note", "kept"}};
    return a;
  });
  start([&](auto& c) {
    c.backend = pi::server::parse_backend_url("http://127.0.0.1:" + std::to_string(engine.port()) + "/engine");
  });
  auto res = get("/v1/models");
  ASSERT_EQ(res.result_int(), 200u) << res.body();
  EXPECT_EQ(res["X-Engine-Note"], "kept");
  EXPECT_EQ(res.count("X-Signature-Id"), 0u);  // /v1/models is not a signed exchange
  EXPECT_EQ(get("/health").result_int(), 200u);
  auto seen = engine.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].target, "/engine/v1/models");
  EXPECT_EQ(seen[1].target, "/engine/health");
  EXPECT_EQ(seen[0].header("Host"), "127.0.0.1:" + std::to_string(engine.port()));
}

// ---------------------------------------------------------------------------------------------------------------
// Authentication

TEST_F(Proxy, MissingOrBadTokenIs401WithBearerChallenge) {
  start([](auto& c) { c.tokens = {"tok-a", "tok-b"}; });
  for (const std::string& token : {std::string(), std::string("wrong"), std::string("TOK-A"), std::string("tok-")}) {
    auto res = chat(R"({"model":"m"})", token);
    expect_error(res, 401, "invalid_api_key");
    EXPECT_EQ(error_of(res).at("type").as_string(), "authentication_error");
    EXPECT_EQ(res[http::field::www_authenticate], "Bearer");
  }
  auto basic = make_request(http::verb::post, "/v1/chat/completions", "{}");
  basic.set(http::field::authorization, "Basic dG9rLWE6");
  expect_error(Client(port).request(basic), 401, "invalid_api_key");
  auto bare = make_request(http::verb::post, "/v1/chat/completions", "{}");
  bare.set(http::field::authorization, "tok-a");  // the token without its scheme
  expect_error(Client(port).request(bare), 401, "invalid_api_key");
  expect_error(get("/v1/signature/x"), 401, "invalid_api_key");  // signatures are not public
  EXPECT_EQ(engine.request_count(), 0u);
  EXPECT_EQ(chat(R"({"model":"m"})", "tok-b").result_int(), 200u);
  auto lower = make_request(http::verb::post, "/v1/chat/completions", "{}");
  lower.set(http::field::authorization, "bearer tok-a");  // the scheme is case-insensitive
  EXPECT_EQ(Client(port).request(lower).result_int(), 200u);
  EXPECT_EQ(engine.request_count(), 2u);
}

TEST_F(Proxy, PublicEndpointsNeedNoTokenAndClientTokensAreNotForwarded) {
  start([](auto& c) {
    c.tokens = {"tok-a"};
    c.backend_api_key = "engine-secret";
  });
  EXPECT_EQ(get("/version").result_int(), 200u);
  EXPECT_EQ(get("/health").result_int(), 200u);
  EXPECT_EQ(get("/v1/models").result_int(), 200u);
  EXPECT_EQ(get("/v1/attestation/report").result_int(), 503u);  // reached the handler: no TEE here
  EXPECT_EQ(chat(R"({"model":"m"})", "tok-a").result_int(), 200u);
  auto seen = engine.requests();
  ASSERT_EQ(seen.size(), 3u);
  for (const auto& r : seen) EXPECT_EQ(r.header("Authorization"), "Bearer engine-secret") << r.target;
}

TEST_F(Proxy, WithoutBackendKeyTheEngineSeesNoAuthorization) {
  start([](auto& c) { c.tokens = {"tok-a"}; });
  EXPECT_EQ(chat(R"({"model":"m"})", "tok-a").result_int(), 200u);
  ASSERT_EQ(engine.request_count(), 1u);
  EXPECT_FALSE(engine.requests()[0].has_header("Authorization"));
}

TEST_F(Proxy, SignaturesAreNamespacedPerToken) {
  engine.answer(Answer::json(R"({"id":"chatcmpl-owned","object":"chat.completion"})"));
  start([](auto& c) { c.tokens = {"tok-a", "tok-b"}; });
  const std::string body = R"({"model":"m","messages":[]})";
  auto res = chat(body, "tok-a");
  ASSERT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res["X-Signature-Id"], "chatcmpl-owned");
  expect_signed("chatcmpl-owned", body, res.body(), "tok-a");
  expect_unsigned("chatcmpl-owned", "tok-b");
  expect_error(get("/v1/signature/chatcmpl-owned"), 401, "invalid_api_key");
  // The same id under tok-b is tok-b's own record, not a collision with tok-a's.
  auto res_b = chat(body, "tok-b");
  EXPECT_EQ(res_b["X-Signature-Id"], "chatcmpl-owned");
  expect_signed("chatcmpl-owned", body, res_b.body(), "tok-b");
}

// ---------------------------------------------------------------------------------------------------------------
// Bad requests

TEST_F(Proxy, MalformedJsonIs400AndNeverReachesTheEngine) {
  start();
  for (const char* body : {"{not json", "", "[1,2]", "\"text\"", "{\"a\":1} trailing"}) {
    auto res = chat(body);
    expect_error(res, 400, "invalid_json");
    EXPECT_EQ(res["x-should-retry"], "false");
  }
  expect_error(post("/v1/embeddings", "{"), 400, "invalid_json");
  EXPECT_EQ(engine.request_count(), 0u);
}

TEST_F(Proxy, BodyOverMaxBodyBytesIs413) {
  start([](auto& c) { c.max_body_bytes = 1024; });
  const std::string big = "{\"x\":\"" + std::string(2000, 'a') + "\"}";
  {
    auto res = chat(big);  // Content-Length over the limit
    expect_error(res, 413, "request_too_large");
    EXPECT_NE(error_of(res).at("message").as_string().find("1024"), std::string::npos);
  }
  {
    Client c(port);  // chunked: the limit is found while reading the body
    std::string raw =
        "POST /v1/chat/completions HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n7d0\r\n" +
        std::string(2000, ' ') + "\r\n0\r\n\r\n";
    expect_error(c.raw(raw), 413, "request_too_large");
  }
  const std::string small = "{\"x\":\"" + std::string(1000, 'a') + "\"}";  // 1010 bytes: fits
  EXPECT_EQ(chat(small).result_int(), 200u);
  ASSERT_EQ(engine.request_count(), 1u);
  EXPECT_EQ(engine.requests()[0].body, small);
}

TEST_F(Proxy, MalformedHttpIs400) {
  start();
  Client c(port);
  auto res = c.raw("GET /version HTTP/1.1\r\nHost: p\r\nBad Header Line\r\n\r\n");
  expect_error(res, 400, "bad_request");
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_EQ(engine.request_count(), 0u);
}

TEST_F(Proxy, EndToEndEncryptionHeadersAreRefusedNotForwarded) {
  start();
  auto req = make_request(http::verb::post, "/v1/chat/completions", R"({"model":"m"})");
  req.set("X-Encryption-Version", "1");
  expect_error(Client(port).request(req), 400, "e2ee_unsupported");
  EXPECT_EQ(engine.request_count(), 0u);
}

// ---------------------------------------------------------------------------------------------------------------
// Signed non-streaming answers

TEST_F(Proxy, AnswerIsSignedOverTheExactBytesInBothDirections) {
  // Unusual but valid JSON on both sides: whitespace, escapes, UTF-8, a trailing newline. Nothing may be
  // re-serialized on the way.
  const std::string request_body =
      "{ \"model\" : \"m\",\n  \"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9 \xc3\xa9\"}] ,"
      "\"stream\":false }\n";
  const std::string answer_body =
      "{\"id\":\"chatcmpl-exact-1\",  \"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
      "\"message\":{\"role\":\"assistant\",\"content\":\"\\u00e9\xc3\xa9  \\n\"}}],\"usage\":null}\n";
  engine.answer(Answer::json(answer_body));
  start();
  auto req = make_request(http::verb::post, "/v1/chat/completions", request_body);
  req.set("X-Request-Id", "client-chosen-id");
  req.set("X-Request-Hash", "client-chosen-hash");
  auto res = Client(port).request(req);
  ASSERT_EQ(res.result_int(), 200u) << res.body();
  EXPECT_EQ(res.body(), answer_body);
  EXPECT_EQ(res["X-Signature-Id"], "chatcmpl-exact-1");
  EXPECT_EQ(res[http::field::content_type], "application/json");

  auto seen = engine.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/v1/chat/completions");
  EXPECT_EQ(seen[0].body, request_body);
  EXPECT_EQ(seen[0].header("Content-Length"), std::to_string(request_body.size()));
  EXPECT_EQ(seen[0].header("Content-Type"), "application/json");
  EXPECT_FALSE(seen[0].has_header("X-Request-Id"));
  EXPECT_FALSE(seen[0].has_header("X-Request-Hash"));

  expect_signed("chatcmpl-exact-1", request_body, answer_body);
  expect_error(get("/v1/signature/chatcmpl-exact-1?signing_algo=rsa"), 400, "invalid_signing_algo");
  expect_unsigned("chatcmpl-other");
}

// Sign on demand: the store keeps the hashes; a fetch signs them. The bytes are the same on every fetch and are
// exactly what signing at answer time gave (deterministic ECDSA and Ed25519); the record names the instance.
TEST_F(Proxy, SignaturesAreMadeOnDemandAndAreTheSameBytesEveryTime) {
  const std::string request_body = R"({"model":"m","messages":[{"role":"user","content":"hi"}]})";
  const std::string answer_body = R"({"id":"chatcmpl-on-demand","object":"chat.completion"})";
  engine.answer(Answer::json(answer_body));
  pi::server::TeeContext tee;
  tee.instance_id = "0123456789abcdef0123456789abcdef01234567";
  start({}, tee);
  ASSERT_EQ(chat(request_body).result_int(), 200u);
  auto rec = proxy->store().get(pi::server::record_key("", "chatcmpl-on-demand"));
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->instance_id, tee.instance_id);
  const auto at_answer_time = identity.sign(pi::crypto::sha256(request_body), pi::crypto::sha256(answer_body));
  for (auto algo : {pi::protocol::SigningAlgo::Ecdsa, pi::protocol::SigningAlgo::Ed25519}) {
    const std::string target =
        "/v1/signature/chatcmpl-on-demand?signing_algo=" + std::string(pi::protocol::to_string(algo));
    const auto first = get(target).body();
    EXPECT_EQ(get(target).body(), first) << "the same bytes on every fetch";
    EXPECT_EQ(first, json::serialize(pi::protocol::signature_response(at_answer_time, identity, algo, tee.instance_id)))
        << "what signing when the answer was sent would have served";
    EXPECT_EQ(json::parse(first).at("instance_id").as_string(), tee.instance_id);
  }
  expect_signed("chatcmpl-on-demand", request_body, answer_body);
}

TEST_F(Proxy, ChunkedRequestBodyIsForwardedAndHashedAsItsBytes) {
  engine.answer(Answer::json(R"({"id":"chatcmpl-chunked"})"));
  start();
  const std::string body = R"({"model":"m","messages":[{"role":"user","content":"split in two"}]})";
  std::string raw =
      "POST /v1/completions HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  for (auto part : {body.substr(0, 10), body.substr(10)}) {
    char len[16];
    std::snprintf(len, sizeof len, "%zx\r\n", part.size());
    raw += len + part + "\r\n";
  }
  raw += "0\r\n\r\n";
  auto res = Client(port).raw(raw);
  ASSERT_EQ(res.result_int(), 200u) << res.body();
  ASSERT_EQ(engine.request_count(), 1u);
  EXPECT_EQ(engine.requests()[0].body, body);
  EXPECT_EQ(engine.requests()[0].target, "/v1/completions");
  expect_signed("chatcmpl-chunked", body, res.body());
}

TEST_F(Proxy, AnswerWithoutIdIsSignedUnderAGeneratedId) {
  const std::string answer = R"({"object":"list","data":[{"embedding":[0.5,-1]}]})";
  engine.answer(Answer::json(answer));
  start();
  const std::string body = R"({"model":"m","input":"x"})";
  auto res = post("/v1/embeddings", body);
  ASSERT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res.body(), answer);
  const std::string id(res["X-Signature-Id"]);
  ASSERT_FALSE(id.empty());
  EXPECT_TRUE(id.starts_with("pi-")) << id;
  expect_signed(id, body, answer);
  EXPECT_NE(post("/v1/embeddings", body)["X-Signature-Id"], id);  // fresh per exchange
}

TEST_F(Proxy, EngineErrorsAreRelayedUnchangedAndNotSigned) {
  const std::string engine_error = R"({"error":{"message":"context too long","type":"BadRequestError","code":400}})";
  engine.script([&](const pi::testsupport::EngineRequest& r) {
    auto a =
        Answer::json(r.body.find("boom") != std::string::npos ? R"({"id":"chatcmpl-500","detail":"boom"})"
                                                              : R"({"id":"chatcmpl-400",)" + engine_error.substr(1),
                     r.body.find("boom") != std::string::npos ? 500 : 400);
    return a;
  });
  start();
  auto res = chat(R"({"model":"m"})");
  EXPECT_EQ(res.result_int(), 400u);
  EXPECT_EQ(res.body(), R"({"id":"chatcmpl-400",)" + engine_error.substr(1));
  EXPECT_EQ(res.count("X-Signature-Id"), 0u);
  res = chat(R"({"model":"boom"})");
  EXPECT_EQ(res.result_int(), 500u);
  EXPECT_EQ(res.body(), R"({"id":"chatcmpl-500","detail":"boom"})");
  EXPECT_EQ(res.count("X-Signature-Id"), 0u);
  expect_unsigned("chatcmpl-400");
  expect_unsigned("chatcmpl-500");
}

TEST_F(Proxy, EngineCannotInjectASignatureId) {
  engine.script([](const pi::testsupport::EngineRequest& r) {
    auto a = Answer::json(R"({"id":"chatcmpl-real"})", r.body.find("fail") != std::string::npos ? 503 : 200);
    a.headers = {{"X-Signature-Id", "forged"}};
    return a;
  });
  start();
  auto res = chat();
  ASSERT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res.count("X-Signature-Id"), 1u);
  EXPECT_EQ(res["X-Signature-Id"], "chatcmpl-real");
  res = chat(R"({"fail":true})");
  EXPECT_EQ(res.result_int(), 503u);
  EXPECT_EQ(res.count("X-Signature-Id"), 0u);
  expect_unsigned("forged");
}

TEST_F(Proxy, ARepeatedIdNeverOverwritesTheFirstRecord) {
  int n = 0;
  engine.script([&n](const pi::testsupport::EngineRequest&) {
    return Answer::json(R"({"id":"chatcmpl-dup","n":)" + std::to_string(++n) + "}");
  });
  start();
  const std::string body = R"({"model":"m"})";
  auto first = chat(body);
  EXPECT_EQ(first["X-Signature-Id"], "chatcmpl-dup");
  auto second = chat(body);
  EXPECT_EQ(second.result_int(), 200u);
  EXPECT_NE(second.body(), first.body());
  EXPECT_EQ(second.count("X-Signature-Id"), 0u);  // no record was made for the second answer
  expect_signed("chatcmpl-dup", body, first.body());
}

// ---------------------------------------------------------------------------------------------------------------
// Streams

TEST_F(Proxy, StreamIsRelayedUnchangedAndSignedAfterDone) {
  const std::string e1 = sse_event("chatcmpl-s1", "Hel");
  const std::string e2 = sse_event("chatcmpl-s1", "lo");
  // Pieces cut across event and line boundaries.
  std::vector<Piece> pieces{{0ms, e1.substr(0, 17)},
                            {10ms, e1.substr(17) + e2.substr(0, 5)},
                            {10ms, e2.substr(5)},
                            {10ms, ": keep-alive comment\n\n"},
                            {10ms, std::string(kDone)}};
  std::string stream;
  for (const auto& p : pieces) stream += p.bytes;
  auto answer = Answer::sse(pieces);
  answer.headers = {{"X-Engine-Note", "streamed"}};
  engine.answer(answer);
  start();
  const std::string body = R"({"model":"m","stream":true,"messages":[]})";
  auto res = chat(body);
  ASSERT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res[http::field::content_type], "text/event-stream");
  EXPECT_EQ(res["X-Engine-Note"], "streamed");
  EXPECT_EQ(res.count("X-Signature-Id"), 0u);  // headers go out before the stream is judged
  EXPECT_EQ(res.body(), stream);
  EXPECT_EQ(engine.requests()[0].body, body);
  expect_signed("chatcmpl-s1", body, stream);
}

TEST_F(Proxy, StreamWithoutDoneEndsCleanlyButIsNotSigned) {
  const std::string stream = sse_event("chatcmpl-nodone", "a") + sse_event("chatcmpl-nodone", "b");
  engine.answer(Answer::sse({{0ms, stream}}));
  start();
  auto res = chat(R"({"stream":true})");
  ASSERT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res.body(), stream);
  expect_unsigned("chatcmpl-nodone");
}

TEST_F(Proxy, StreamCutByTheEngineIsNotSignedAndTheClientSeesABrokenStream) {
  const std::string e1 = sse_event("chatcmpl-cut", "partial");
  engine.answer(Answer::sse({{0ms, e1}, {5ms, sse_event("chatcmpl-cut", "more")}}, Answer::End::Cut));
  start();
  Client c(port);
  ASSERT_FALSE(c.write(make_request(http::verb::post, "/v1/chat/completions", R"({"stream":true})")));
  Response res;
  auto ec = c.read(res);
  EXPECT_TRUE(ec) << "a cut stream must not end cleanly";
  EXPECT_NE(ec, net::error::would_block) << "the proxy did not end the connection";
  expect_unsigned("chatcmpl-cut");
}

TEST_F(Proxy, StreamCutAfterDoneIsNotSignedAndDoneIsNotRelayed) {
  // [DONE] arrived but the engine's response never ended (no terminating chunk): still incomplete. Today the
  // proxy holds back the piece that completed the stream until it has judged it, so the client never sees a
  // [DONE] for a stream that was not signed.
  const std::string e1 = sse_event("chatcmpl-cut2", "x");
  engine.answer(Answer::sse({{0ms, e1}, {5ms, std::string(kDone)}}, Answer::End::Cut));
  start();
  Client c(port);
  ASSERT_FALSE(c.write(make_request(http::verb::post, "/v1/chat/completions", R"({"stream":true})")));
  http::response_parser<http::string_body> p;
  ASSERT_FALSE(c.read_header(p));
  auto ec = c.read_until(p, "[DONE]");
  EXPECT_TRUE(ec);
  EXPECT_EQ(p.get().body(), e1);
  expect_unsigned("chatcmpl-cut2");
}

TEST_F(Proxy, StreamWithAnErrorEventIsRelayedButNotSigned) {
  const std::string stream = sse_event("chatcmpl-err", "a") +
                             "event: error\ndata: {\"error\":{\"message\":\"engine failed\",\"code\":500}}\n\n" +
                             std::string(kDone);
  engine.answer(Answer::sse({{0ms, stream}}));
  start();
  auto res = chat(R"({"stream":true})");
  ASSERT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res.body(), stream);
  expect_unsigned("chatcmpl-err");

  // An error object in a data line (no event: line) is an error too.
  const std::string stream2 =
      sse_event("chatcmpl-err2", "a") + "data: {\"error\":{\"message\":\"oom\"}}\n\n" + std::string(kDone);
  engine.answer(Answer::sse({{0ms, stream2}}));
  res = chat(R"({"stream":true})");
  EXPECT_EQ(res.body(), stream2);
  expect_unsigned("chatcmpl-err2");
}

TEST_F(Proxy, StreamWithoutIdIsNotSigned) {
  const std::string stream = "data: {\"object\":\"chat.completion.chunk\"}\n\n" + std::string(kDone);
  engine.answer(Answer::sse({{0ms, stream}}));
  start([](auto& c) { c.signature_capacity = 1; });
  auto res = chat(R"({"stream":true})");
  EXPECT_EQ(res.body(), stream);
  // Nothing was stored: the one slot is still free for the next signed exchange.
  engine.answer(Answer::json(R"({"id":"chatcmpl-after"})"));
  EXPECT_EQ(chat()["X-Signature-Id"], "chatcmpl-after");
}

// ---------------------------------------------------------------------------------------------------------------
// Cancellation and engine failures

TEST_F(Proxy, ClientDisconnectMidStreamCancelsTheEngineRequest) {
  engine.answer(Answer::sse({{0ms, sse_event("chatcmpl-gone", "first")}}, Answer::End::Hold));
  start();
  {
    Client c(port);
    ASSERT_FALSE(c.write(make_request(http::verb::post, "/v1/chat/completions", R"({"stream":true})")));
    http::response_parser<http::string_body> p;
    ASSERT_FALSE(c.read_header(p));
    ASSERT_FALSE(c.read_until(p, "first"));
    c.close();
  }
  EXPECT_TRUE(engine.wait_for_peer_disconnect(3s)) << "the engine's request was not cancelled";
  expect_unsigned("chatcmpl-gone");
  // The proxy is still serving.
  engine.answer(Answer::json(R"({"id":"chatcmpl-next"})"));
  EXPECT_EQ(chat()["X-Signature-Id"], "chatcmpl-next");
}

TEST_F(Proxy, ClientDisconnectBeforeTheAnswerCancelsTheEngineRequest) {
  engine.answer(Answer::silent());
  start();
  {
    Client c(port);
    ASSERT_FALSE(c.write(make_request(http::verb::post, "/v1/chat/completions", R"({"model":"m"})")));
    ASSERT_TRUE(engine.wait_for_requests(1));
    c.close();
  }
  EXPECT_TRUE(engine.wait_for_peer_disconnect(3s)) << "the engine's request was not cancelled";
}

TEST_F(Proxy, EngineUnreachableIs502) {
  start(
      [](auto& c) { c.backend = pi::server::parse_backend_url("http://127.0.0.1:" + std::to_string(unused_port())); });
  auto res = chat();
  expect_error(res, 502, "backend_unavailable");
  EXPECT_EQ(error_of(res).at("type").as_string(), "server_error");
  expect_error(get("/health"), 502, "backend_unavailable");
}

TEST_F(Proxy, EngineClosingWithoutAnAnswerIs502) {
  engine.answer(Answer::close());
  start();
  expect_error(chat(), 502, "backend_error");
}

TEST_F(Proxy, SilentEngineIs504AfterTheBackendTimeout) {
  engine.answer(Answer::silent());
  start([](auto& c) { c.backend_timeout = 1s; });
  const auto t0 = std::chrono::steady_clock::now();
  auto res = chat();
  const auto took = std::chrono::steady_clock::now() - t0;
  expect_error(res, 504, "backend_timeout");
  EXPECT_GE(took, 900ms);
  EXPECT_LT(took, 3s);
  EXPECT_TRUE(engine.wait_for_peer_disconnect(2s));  // the proxy let go of the engine's connection
}

TEST_F(Proxy, StalledStreamIsCutAfterTheBackendTimeoutAndNotSigned) {
  engine.answer(Answer::sse({{0ms, sse_event("chatcmpl-stall", "x")}}, Answer::End::Hold));
  start([](auto& c) { c.backend_timeout = 1s; });
  Client c(port);
  ASSERT_FALSE(c.write(make_request(http::verb::post, "/v1/chat/completions", R"({"stream":true})")));
  Response res;
  const auto t0 = std::chrono::steady_clock::now();
  auto ec = c.read(res, 4s);
  EXPECT_TRUE(ec);
  EXPECT_NE(ec, beast::error::timeout) << "the proxy did not cut the stalled stream";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_TRUE(engine.wait_for_peer_disconnect(2s));
  expect_unsigned("chatcmpl-stall");
}

// ---------------------------------------------------------------------------------------------------------------
// Signature store capacity

TEST_F(Proxy, FullSignatureStoreIs503WithRetryAfter) {
  engine.script([](const pi::testsupport::EngineRequest& r) {
    if (r.body.find("fail") != std::string::npos) return Answer::json(R"({"error":"nope"})", 500);
    return Answer::json(R"({"id":"chatcmpl-)" + std::to_string(r.body.size()) + "\"}");
  });
  start([](auto& c) {
    c.signature_capacity = 1;
    c.signature_ttl = 3600s;
  });
  // A failed exchange gives its reserved slot back.
  EXPECT_EQ(chat(R"({"fail":1})").result_int(), 500u);
  auto res = chat(R"({"a":1})");
  ASSERT_EQ(res.result_int(), 200u);
  EXPECT_FALSE(res["X-Signature-Id"].empty());
  const auto before = engine.request_count();
  res = chat(R"({"ab":1})");
  expect_error(res, 503, "signature_store_full");
  const std::string retry(res[http::field::retry_after]);
  ASSERT_FALSE(retry.empty());
  EXPECT_GT(std::stoul(retry), 0u);
  EXPECT_LE(std::stoul(retry), 3600u);
  EXPECT_EQ(engine.request_count(), before);  // refused before forwarding
  // Unsigned routes still work.
  EXPECT_EQ(post("/tokenize", R"({"prompt":"x"})").result_int(), 200u);
  EXPECT_EQ(engine.request_count(), before + 1);
}

// ---------------------------------------------------------------------------------------------------------------
// Connections

TEST_F(Proxy, KeepAliveServesSeveralRequestsOnOneConnection) {
  const std::string stream = sse_event("chatcmpl-ka-s", "x") + std::string(kDone);
  engine.script([&](const pi::testsupport::EngineRequest& r) {
    if (r.body.find("stream") != std::string::npos) return Answer::sse({{0ms, stream}});
    return Answer::json(R"({"id":"chatcmpl-ka"})");
  });
  start();
  Client c(port);
  auto res = c.request(make_request(http::verb::get, "/version"));
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_TRUE(res.keep_alive());
  res = c.request(make_request(http::verb::get, "/nope"));
  expect_error(res, 404, "unknown_url");
  EXPECT_TRUE(res.keep_alive());
  res = c.request(make_request(http::verb::post, "/v1/chat/completions", "{bad"));
  expect_error(res, 400, "invalid_json");
  EXPECT_TRUE(res.keep_alive());
  res = c.request(make_request(http::verb::post, "/v1/chat/completions", R"({"m":1})"));
  EXPECT_EQ(res["X-Signature-Id"], "chatcmpl-ka");
  EXPECT_TRUE(res.keep_alive());
  res = c.request(make_request(http::verb::get, "/v1/signature/chatcmpl-ka"));
  EXPECT_EQ(res.result_int(), 200u);
  res = c.request(make_request(http::verb::post, "/v1/chat/completions", R"({"stream":true})"));
  EXPECT_EQ(res.body(), stream);
  EXPECT_TRUE(res.keep_alive());
  res = c.request(make_request(http::verb::get, "/v1/signature/chatcmpl-ka-s"));
  EXPECT_EQ(res.result_int(), 200u);
  // Connection: close is honoured.
  auto last = make_request(http::verb::get, "/version");
  last.keep_alive(false);
  res = c.request(last);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(Proxy, PipelinedRequestsAreAnsweredInOrder) {
  engine.script([](const pi::testsupport::EngineRequest& r) { return Answer::json(R"({"id":"p-)" + r.body + "\"}"); });
  start();
  Client c(port);
  std::string both;
  for (const char* body : {"1", "2"}) {
    std::string b = std::string("{\"n\":") + body + "}";
    both += "POST /v1/completions HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\nContent-Length: " +
            std::to_string(b.size()) + "\r\n\r\n" + b;
  }
  ASSERT_FALSE(c.write_raw(both));
  Response r1, r2;
  ASSERT_FALSE(c.read(r1));
  ASSERT_FALSE(c.read(r2));
  EXPECT_EQ(r1.body(), R"({"id":"p-{"n":1}"})");
  EXPECT_EQ(r2.body(), R"({"id":"p-{"n":2}"})");
}

// ---------------------------------------------------------------------------------------------------------------
// Local endpoints

TEST_F(Proxy, VersionReportsTheIdentityAndTheTeeMode) {
  start();
  auto res = get("/version");
  ASSERT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  auto v = json::parse(res.body()).as_object();
  EXPECT_EQ(v.at("name").as_string(), "private-inference");
  EXPECT_FALSE(v.at("version").as_string().empty());
  EXPECT_EQ(v.at("tee").at("mode").as_string(), "none");
  EXPECT_EQ(v.at("tee").at("simulated").as_bool(), false);
  EXPECT_TRUE(v.at("signing_keys").as_string().starts_with("random"));
  EXPECT_EQ(v.at("signing_addresses").at("ecdsa").as_string(),
            identity.signing_address(pi::protocol::SigningAlgo::Ecdsa));
  EXPECT_EQ(v.at("signing_addresses").at("ed25519").as_string(),
            identity.signing_address(pi::protocol::SigningAlgo::Ed25519));
  EXPECT_EQ(v.at("gpu_evidence").at("mode").as_string(), "off");
  EXPECT_EQ(v.at("gpu_evidence").at("available").as_bool(), false);
  EXPECT_EQ(v.at("simulated").as_bool(), false);
  EXPECT_EQ(engine.request_count(), 0u);
}

TEST_F(Proxy, AttestationWithoutTeeIs503AndQueryErrorsComeFirst) {
  start();
  auto res = get("/v1/attestation/report");
  expect_error(res, 503, "tee_unavailable");
  expect_error(get("/v1/attestation?nonce=" + std::string(64, 'a')), 503, "tee_unavailable");
  // The query is checked before the TEE: nonce, then signing_algo, then signing_address.
  for (const std::string& bad : {std::string("xyz"), std::string(63, 'a'), std::string(65, 'a'),
                                 "0x" + std::string(64, 'a'), std::string(63, 'a') + "g"}) {
    res = get("/v1/attestation/report?nonce=" + bad + "&signing_algo=rsa");
    expect_error(res, 400, "invalid_nonce");
    EXPECT_EQ(error_of(res).at("param").as_string(), "nonce");
  }
  res = get("/v1/attestation/report?signing_algo=rsa&signing_address=0x00");
  expect_error(res, 400, "invalid_signing_algo");
  EXPECT_EQ(error_of(res).at("param").as_string(), "signing_algo");
  res = get("/v1/attestation/report?signing_address=0x0000000000000000000000000000000000000000");
  expect_error(res, 404, "signing_address_not_found");
  // The proxy's own ed25519 address with signing_algo=ecdsa is a mismatch.
  res = get("/v1/attestation/report?signing_algo=ecdsa&signing_address=" +
            identity.signing_address(pi::protocol::SigningAlgo::Ed25519));
  expect_error(res, 404, "signing_address_not_found");
  res = get("/v1/attestation/report?signing_address=" + identity.signing_address(pi::protocol::SigningAlgo::Ed25519));
  expect_error(res, 503, "tee_unavailable");
}

// ---------------------------------------------------------------------------------------------------------------
// Hardening (issue: Hardening): refusals before the body, framing, JSON depth, cut close-delimited streams,
// graceful drain.

TEST_F(Proxy, UnauthenticatedBodyIsNeverReadOrForwarded) {
  start([](auto& c) { c.tokens = {"tok-a"}; });
  Client c(port);
  // The head announces 1 MB, no body byte follows: the 401 must come from the head alone.
  ASSERT_FALSE(
      c.write_raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  "Content-Length: 1000000\r\n\r\n"));
  Response res;
  ASSERT_FALSE(c.read(res, 2s));
  expect_error(res, 401, "invalid_api_key");
  EXPECT_FALSE(res.keep_alive()) << "a body is still on its way: the connection ends";
  EXPECT_EQ(engine.request_count(), 0u);
}

TEST_F(Proxy, ExpectContinueIsAnsweredOnlyAfterTheTokenIsChecked) {
  start([](auto& c) { c.tokens = {"tok-a"}; });
  Client c(port);
  ASSERT_FALSE(
      c.write_raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
                  "Expect: 100-continue\r\nContent-Length: 10\r\n\r\n"));
  Response res;
  ASSERT_FALSE(c.read(res, 2s));
  expect_error(res, 401, "invalid_api_key");  // not "100 Continue" first
}

TEST_F(Proxy, TransferCodingsOtherThanChunkedAre400AndNeverDesync) {
  start();
  for (std::string te : {"gzip", "identity", "foo", "chunked, gzip", "gzip, chunked", "chunked, chunked", ""}) {
    Client c(port);
    const std::string body = R"({"model":"m"})";
    // What follows the head would be a second request if the body were taken as empty.
    ASSERT_FALSE(c.write_raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + te +
                             "\r\n\r\nGET /version HTTP/1.1\r\nHost: x\r\n\r\n"));
    Response res;
    ASSERT_FALSE(c.read(res, 2s)) << te;
    if (te == "chunked, chunked") {
      EXPECT_EQ(res.result_int(), 400u) << te;  // Beast refuses it itself
    } else {
      expect_error(res, 400, "unsupported_transfer_encoding");
    }
    EXPECT_FALSE(res.keep_alive()) << te;
    Response second;
    EXPECT_TRUE(c.read(second, 1s)) << "a second response to one request (" << te << "): " << second.body();
  }
  EXPECT_EQ(engine.request_count(), 0u);
}

TEST_F(Proxy, BareLfLineEndingsAre400AtOnceNotATimeout) {
  start([](auto& c) { c.client_timeout = 30s; });  // a wait for more bytes would outlast the read below
  const std::string head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (const std::string& raw : {
           head + "d\n{\"model\":\"m\"}\r\n0\r\n\r\n",            // chunk-size line
           head + "d\r\n{\"model\":\"m\"}\r\n0\n\n",              // last chunk
           head + "d;ext=1\n{\"model\":\"m\"}\r\n0\r\n\r\n",      // with an extension
           head + "d\r\n{\"model\":\"m\"}\r\n0\r\nX-T: 1\n\r\n",  // trailer field
           std::string("GET /version HTTP/1.1\nHost: x\n\n"),     // the head itself
           std::string("GET /version HTTP/1.1\r\nHost: x\n\r\n"),
       }) {
    Client c(port);
    const auto t0 = std::chrono::steady_clock::now();
    Response res;
    ASSERT_FALSE(c.write_raw(raw));
    ASSERT_FALSE(c.read(res, 3s)) << raw;
    EXPECT_EQ(res.result_int(), 400u) << raw;
    EXPECT_FALSE(res.keep_alive());
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  }
  // An LF inside chunk data is data, not a line ending.
  Client c(port);
  const std::string body = "{\"model\":\n\"m\"}";
  auto res = c.raw(head + "e\r\n" + body + "\r\n0\r\n\r\n");
  EXPECT_EQ(res.result_int(), 200u) << res.body();
  ASSERT_EQ(engine.request_count(), 1u);
  EXPECT_EQ(engine.requests()[0].body, body);
}

TEST_F(Proxy, HttpOneOneNeedsExactlyOneHost) {
  start();
  for (const std::string& raw : {std::string("GET /version HTTP/1.1\r\n\r\n"),
                                 std::string("GET /version HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
                                 std::string("GET /version HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n")}) {
    Client c(port);
    auto res = c.raw(raw);
    expect_error(res, 400, "invalid_host");
    EXPECT_TRUE(c.closed_by_peer());
  }
  Client c(port);  // HTTP/1.0 needs none
  EXPECT_EQ(c.raw("GET /version HTTP/1.0\r\n\r\n").result_int(), 200u);
  // A JSON body with LFs in it (Content-Length framing) is never taken for bare-LF lines.
  const std::string body = "{\n  \"model\": \"m\"\n}\n";
  EXPECT_EQ(chat(body).result_int(), 200u);
  ASSERT_EQ(engine.request_count(), 1u);
  EXPECT_EQ(engine.requests()[0].body, body);
}

TEST_F(Proxy, RefusalToAHeadRequestIsItsHeadAlone) {
  start();
  Client c(port);
  // A HEAD of a POST-only route: 405 with its Content-Length, but no body bytes, and the connection
  // stays usable (a body would be read as the next response otherwise).
  ASSERT_FALSE(
      c.write_raw("HEAD /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\nGET /version HTTP/1.1\r\nHost: x\r\n\r\n"));
  http::response_parser<http::string_body> p;
  p.skip(true);  // a response to HEAD has no body, whatever its Content-Length says
  ASSERT_FALSE(c.read_header(p));
  EXPECT_EQ(p.get().result_int(), 405u);
  EXPECT_NE(p.get()[http::field::content_length], "0");
  Response next;
  ASSERT_FALSE(c.read(next));
  EXPECT_EQ(next.result_int(), 200u);
  EXPECT_NE(next.body().find("signing_address"), std::string::npos) << next.body();
}

TEST_F(Proxy, HttpOneZeroExpectContinueIsIgnored) {
  start();
  Client c(port);
  const std::string body = R"({"model":"m"})";
  ASSERT_FALSE(
      c.write_raw("POST /v1/chat/completions HTTP/1.0\r\nExpect: 100-continue\r\nContent-Type: application/json\r\n"
                  "Content-Length: " +
                  std::to_string(body.size()) + "\r\n\r\n" + body));
  Response res;
  ASSERT_FALSE(c.read(res));
  EXPECT_EQ(res.result_int(), 200u) << res.body();  // the final answer, never "100 Continue" first
  EXPECT_EQ(res.version(), 11u);
  ASSERT_EQ(engine.request_count(), 1u);
  EXPECT_EQ(engine.requests()[0].body, body);
}

TEST_F(Proxy, DeeplyNestedValidJsonIsForwarded) {
  start();
  std::string schema = "{}";
  for (int i = 0; i < 2000; ++i) schema = R"({"type":"object","properties":{"x":)" + schema + "}}";
  const std::string body = R"({"model":"m","response_format":{"type":"json_schema","json_schema":)" + schema + "}}";
  auto res = chat(body);
  EXPECT_EQ(res.result_int(), 200u) << res.body();
  ASSERT_EQ(engine.request_count(), 1u);
  EXPECT_EQ(engine.requests()[0].body, body);
  expect_error(chat(std::string(100000, '[') + std::string(99999, ']')), 400, "invalid_json");
}

TEST_F(Proxy, CutCloseDelimitedStreamReachesTheClientBroken) {
  Answer a = Answer::sse({{0ms, sse_event("chatcmpl-cd", "partial")}});
  a.close_delimited = true;
  engine.answer(a);
  start();
  Client c(port);
  ASSERT_FALSE(c.write(make_request(http::verb::post, "/v1/chat/completions", R"({"stream":true})")));
  Response res;
  auto ec = c.read(res);
  EXPECT_TRUE(ec) << "a cut close-delimited stream must not end cleanly";
  EXPECT_NE(ec, net::error::would_block);
  expect_unsigned("chatcmpl-cd");
}

TEST_F(Proxy, CompleteCloseDelimitedStreamEndsCleanlyAndIsSigned) {
  const std::string stream = sse_event("chatcmpl-cd2", "all") + std::string(kDone);
  Answer a = Answer::sse({{0ms, stream}});
  a.close_delimited = true;
  engine.answer(a);
  start();
  const std::string body = R"({"stream":true})";
  auto res = chat(body);
  ASSERT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res.body(), stream);
  expect_signed("chatcmpl-cd2", body, stream);
}

TEST_F(Proxy, DrainLetsFiftyStreamsFinishAndBeSigned) {
  std::atomic<int> n{0};
  engine.script([&n](const pi::testsupport::EngineRequest&) {
    const std::string id = "chatcmpl-drain-" + std::to_string(n++);
    return Answer::sse({{0ms, sse_event(id, "a")},
                        {150ms, sse_event(id, "b")},
                        {150ms, sse_event(id, "c")},
                        {100ms, std::string(kDone)}});
  });
  start([](auto& c) { c.shutdown_grace = 10s; });
  constexpr int kStreams = 50;
  std::vector<std::string> bodies(kStreams);
  std::vector<std::thread> clients;
  for (int i = 0; i < kStreams; ++i)
    clients.emplace_back([&, i] {
      try {
        bodies[i] =
            Client(port).request(make_request(http::verb::post, "/v1/chat/completions", R"({"stream":true})")).body();
      } catch (const std::exception& e) {
        bodies[i] = std::string("FAILED: ") + e.what();
      }
    });
  ASSERT_TRUE(engine.wait_for_requests(kStreams));
  const auto t0 = std::chrono::steady_clock::now();
  proxy->drain();
  std::this_thread::sleep_for(100ms);  // the workers close their acceptors on their own threads
  EXPECT_THROW(Client(port).request(make_request(http::verb::get, "/version")), std::runtime_error)
      << "new connections are refused while draining";
  for (auto& t : clients) t.join();
  thread.join();  // run() returns once the last stream is done
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  std::set<std::string> ids;
  for (const auto& b : bodies) {
    ASSERT_NE(b.find("[DONE]"), std::string::npos) << b;
    const auto p = b.find("chatcmpl-drain-");
    ASSERT_NE(p, std::string::npos);
    const std::string id = b.substr(p, b.find('"', p) - p);
    ids.insert(id);
    auto rec = proxy->store().get(pi::server::record_key("", id));
    ASSERT_TRUE(rec) << id << " was not signed";
    EXPECT_EQ(pi::to_hex(rec->request_hash) + ":" + pi::to_hex(rec->response_hash),
              hex_sha256(R"({"stream":true})") + ":" + hex_sha256(b));
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kStreams));
  proxy.reset();
}

TEST_F(Proxy, DrainCutsWhatOutlastsTheGracePeriod) {
  engine.answer(Answer::sse({{0ms, sse_event("chatcmpl-long", "a")}}, Answer::End::Hold));
  start([](auto& c) { c.shutdown_grace = 300ms; });
  Client c(port);
  ASSERT_FALSE(c.write(make_request(http::verb::post, "/v1/chat/completions", R"({"stream":true})")));
  http::response_parser<http::string_body> p;
  ASSERT_FALSE(c.read_header(p));
  const auto t0 = std::chrono::steady_clock::now();
  proxy->drain();
  thread.join();
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 3s);
  proxy.reset();
}

// A TEE agent that takes its time (as a real quote does, ~100 ms and more): attestations overlap.
class SlowAgent final : public pi::tee::TeeAgent {
 public:
  std::string describe() const override { return "slow-test-agent"; }
  net::awaitable<pi::tee::QuoteResult> get_quote(pi::ByteView report_data) override {
    net::steady_timer t(co_await net::this_coro::executor, 150ms);
    co_await t.async_wait(net::use_awaitable);
    pi::tee::QuoteResult q;
    q.quote_hex = pi::to_hex(report_data);
    q.event_log = "[]";
    co_return q;
  }
  net::awaitable<json::object> info() override { co_return json::object{}; }
};

TEST_F(Proxy, LoopingAttestationClientsCannotStarveAPoliteOne) {
  pi::server::TeeContext tee;
  tee.agent = std::make_shared<SlowAgent>();
  start({}, tee);
  std::atomic<bool> stop_loops{false};
  std::atomic<int> looped{0}, refused{0};
  std::vector<std::thread> loops;
  for (int i = 0; i < 32; ++i)
    loops.emplace_back([&] {
      while (!stop_loops) {
        try {
          auto r = Client(port).request(make_request(http::verb::get, "/v1/attestation/report"));
          (r.result_int() == 429 ? refused : looped)++;
        } catch (const std::exception&) {
        }
      }
    });
  std::this_thread::sleep_for(300ms);  // the loops fill the server
  int first_try = 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    int tries = 0;
    unsigned status = 0;
    while (tries < 2 && status != 200) {
      ++tries;
      status = Client(port, "127.0.0.2").request(make_request(http::verb::get, "/v1/attestation/report")).result_int();
      if (status != 200) std::this_thread::sleep_for(1s);  // honours Retry-After: 1
    }
    EXPECT_EQ(status, 200u) << "the polite client was starved on attempt " << attempt;
    if (tries == 1) ++first_try;
    std::this_thread::sleep_for(200ms);
  }
  stop_loops = true;
  for (auto& t : loops) t.join();
  EXPECT_GT(refused.load(), 0) << "the loops never hit their share: the test proves nothing";
  EXPECT_EQ(first_try, 5);
}

TEST_F(Proxy, ConnectionsOverTheCapGet503AndClose) {
  start([](auto& c) { c.max_connections = 2; });
  Client a(port), b(port);
  ASSERT_EQ(a.request(make_request(http::verb::get, "/version")).result_int(), 200u);
  ASSERT_EQ(b.request(make_request(http::verb::get, "/version")).result_int(), 200u);
  Client third(port);
  Response res;
  ASSERT_FALSE(third.write(make_request(http::verb::get, "/version")));
  ASSERT_FALSE(third.read(res));
  expect_error(res, 503, "too_many_connections");
  EXPECT_EQ(res[http::field::retry_after], "1");
  EXPECT_EQ(metric(a.request(make_request(http::verb::get, "/metrics")).body(), "pi_connections_refused_total"), 1);
}

TEST_F(Proxy, DrainClosesIdleKeepAliveConnectionsAtOnce) {
  start([](auto& c) { c.shutdown_grace = 10s; });
  Client idle(port);
  auto res = idle.request(make_request(http::verb::get, "/version"));
  ASSERT_EQ(res.result_int(), 200u);
  ASSERT_TRUE(res.keep_alive());
  const auto t0 = std::chrono::steady_clock::now();
  proxy->drain();
  EXPECT_TRUE(idle.closed_by_peer(3s));  // nothing in flight on it: no reason to wait for the grace
  thread.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  proxy.reset();
}

TEST_F(Proxy, RequestBytesOverTheBufferBudgetGet503) {
  start([](auto& c) {
    c.tokens = {"tok-a"};
    c.max_buffered_bytes = 256u << 10;
  });
  // Declared too large for what is left: refused before a body byte is read.
  Client c(port);
  ASSERT_FALSE(
      c.write_raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-a\r\n"
                  "Content-Type: application/json\r\nContent-Length: 400000\r\n\r\n"));
  Response res;
  ASSERT_FALSE(c.read(res, 2s));
  expect_error(res, 503, "server_busy");
  EXPECT_FALSE(res.keep_alive());
  // Chunked bodies are charged as they grow.
  Client d(port);
  std::string chunk(100000, ' ');
  std::string raw =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-a\r\nContent-Type: "
      "application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 4; ++i) raw += "186a0\r\n" + chunk + "\r\n";
  ASSERT_FALSE(d.write_raw(raw));
  Response res2;
  ASSERT_FALSE(d.read(res2, 2s));
  expect_error(res2, 503, "server_busy");
  EXPECT_EQ(engine.request_count(), 0u);
  EXPECT_EQ(metric(get("/metrics").body(), "pi_buffer_full_rejections_total"), 2);
  // The budget came back: a normal request is served.
  EXPECT_EQ(chat(R"({"model":"m"})", "tok-a").result_int(), 200u);
}

TEST_F(Proxy, BadPercentEncodingIs400) {
  start();
  expect_error(get("/v1/signature/abc%zz"), 400, "invalid_path");
  expect_error(get("/v1/signature/abc?signing_algo=ecdsa%4"), 400, "invalid_query");
  expect_error(get("/v1/attestation/report?nonce=%g0"), 400, "invalid_query");
}

// Through the in-process dev-tee (the simulated dstack agent): the quote binds the signing address and the nonce.
class ProxyWithDevTee : public Proxy {
 protected:
  void SetUp() override {
    Proxy::SetUp();
    pi::devtee::Options o;
    o.socket_path = dir.file("dstack.sock");
    o.fixture_path = std::string(PI_FIXTURES_DIR) + "/tdx/vllm_proxy_sample_dstack.json";
    devtee = std::make_unique<pi::devtee::Server>(tee_ioc.get_executor(), o);
    devtee->start();
    work.emplace(tee_ioc.get_executor());
    tee_thread = std::thread([this] { tee_ioc.run(); });
  }
  void TearDown() override {
    Proxy::TearDown();
    work.reset();
    tee_ioc.stop();
    tee_thread.join();
    devtee.reset();
  }
  pi::server::TeeContext tee() const {
    pi::server::TeeContext t;
    t.agent = pi::tee::make_dstack_agent(*pi::tee::parse_dstack_endpoint(devtee->socket_path()));
    t.simulated = true;
    t.agent_version = "dev-tee";
    return t;
  }

  pi::testsupport::TempDir dir;
  net::io_context tee_ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::unique_ptr<pi::devtee::Server> devtee;
  std::thread tee_thread;
};

TEST_F(ProxyWithDevTee, QuoteReportDataIsTheAddressPaddedAndTheNonce) {
  constexpr std::size_t kReportDataAt = 568;  // TDX v4 quote: 48-byte header + REPORTDATA at offset 520
  start({}, tee());
  pi::Bytes nonce(32);
  for (std::size_t i = 0; i < nonce.size(); ++i) nonce[i] = static_cast<std::uint8_t>(0xa0 + i);
  const std::string nonce_hex = pi::to_hex(nonce);

  for (auto algo : {pi::protocol::SigningAlgo::Ecdsa, pi::protocol::SigningAlgo::Ed25519}) {
    const std::string algo_s(pi::protocol::to_string(algo));
    auto res = get("/v1/attestation/report?nonce=" + nonce_hex + "&signing_algo=" + algo_s);
    ASSERT_EQ(res.result_int(), 200u) << res.body();
    auto r = json::parse(res.body()).as_object();
    const std::string address = identity.signing_address(algo);
    EXPECT_EQ(r.at("signing_address").as_string(), address);
    EXPECT_EQ(r.at("signing_algo").as_string(), algo_s);
    EXPECT_EQ(r.at("request_nonce").as_string(), nonce_hex);
    EXPECT_EQ(r.at("simulated").as_bool(), true);
    EXPECT_EQ(r.at("intel_quote").as_string(), r.at("quote").as_string());
    EXPECT_TRUE(r.at("gpu_evidence").is_null());
    ASSERT_EQ(r.at("all_attestations").as_array().size(), 1u);

    // report_data = address bytes zero-padded to 32 ‖ nonce, built here independently of the proxy.
    pi::Bytes expected;
    if (algo == pi::protocol::SigningAlgo::Ecdsa) {
      auto a = pi::crypto::parse_eth_address(address);
      ASSERT_TRUE(a.has_value());
      expected.assign(a->begin(), a->end());
      expected.resize(32, 0);
    } else {
      expected = *pi::from_hex(address);
      ASSERT_EQ(expected.size(), 32u);
    }
    expected.insert(expected.end(), nonce.begin(), nonce.end());
    auto quote = pi::from_hex(std::string_view(r.at("intel_quote").as_string()));
    ASSERT_TRUE(quote.has_value());
    ASSERT_GE(quote->size(), kReportDataAt + 64);
    EXPECT_EQ(pi::to_hex(pi::ByteView(quote->data() + kReportDataAt, 64)), pi::to_hex(expected)) << algo_s;
  }

  // Without a nonce the proxy picks a fresh one and reports it.
  auto res = get("/v1/attestation/report");
  ASSERT_EQ(res.result_int(), 200u) << res.body();
  auto r = json::parse(res.body()).as_object();
  const std::string fresh(r.at("request_nonce").as_string());
  EXPECT_TRUE(pi::is_hex_of_length(fresh, 64));
  EXPECT_NE(fresh, nonce_hex);
  auto quote = *pi::from_hex(std::string_view(r.at("intel_quote").as_string()));
  EXPECT_EQ(pi::to_hex(pi::ByteView(quote.data() + kReportDataAt + 32, 32)), fresh);

  auto v = json::parse(get("/version").body()).as_object();
  EXPECT_EQ(v.at("tee").at("mode").as_string(), "dstack");
  EXPECT_EQ(v.at("tee").at("simulated").as_bool(), true);
  EXPECT_EQ(v.at("simulated").as_bool(), true);
}

}  // namespace
