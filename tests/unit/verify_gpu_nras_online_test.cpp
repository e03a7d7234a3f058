// The NRAS network path (nras::https_request, check_gpu_evidence with nras=true) against a local TLS server.
// There is no network here and NVIDIA's NRAS cannot run locally, so the server below is a *simulated* NRAS: it
// speaks NRAS v4's wire protocol (POST JSON evidence → [["JWT", token], {"GPU-0": token}]) and answers with
// nvtrust's recorded NRAS claim sets, signed by a throwaway ES384 key whose JWKS the test writes to a file. Its TLS
// certificate comes from a throwaway test CA passed as GpuOptions::nras_tls_ca_pem.
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "crypto/hash.hpp"
#include "verify/gpu.hpp"
#include "verify/nras.hpp"

#include "test_support.hpp"

namespace pi::verify {
namespace {

using Signer = pi::testsupport::NrasTestSigner;

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;

constexpr std::int64_t kNow = 1735689600;  // 2025-01-01T00:00:00Z (see verify_gpu_test.cpp)
constexpr const char* kNonce = pi::testsupport::kNvtrustNonce;
using pi::testsupport::nvtrust_payload;

std::string fixture(const std::string& name) { return pi::testsupport::nvidia_fixture(name); }

std::string pem_of(X509* x) {
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, x);
  char* d = nullptr;
  long n = BIO_get_mem_data(b, &d);
  std::string s(d, static_cast<std::size_t>(n));
  BIO_free(b);
  return s;
}
std::string pem_of(EVP_PKEY* k) {
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr);
  char* d = nullptr;
  long n = BIO_get_mem_data(b, &d);
  std::string s(d, static_cast<std::size_t>(n));
  BIO_free(b);
  return s;
}

// Throwaway TLS PKI: a CA and a "localhost" server certificate.
struct TlsPki {
  EVP_PKEY* ca_key = EVP_EC_gen("P-256");
  EVP_PKEY* server_key = EVP_EC_gen("P-256");
  X509* ca = nullptr;
  X509* server = nullptr;
  TlsPki() {
    ca = make(ca_key, ca_key, nullptr, "Simulated NRAS Test CA", true, nullptr);
    server = make(server_key, ca_key, ca, "localhost", false, "DNS:localhost");
  }
  ~TlsPki() {
    X509_free(ca);
    X509_free(server);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(server_key);
  }
  static X509* make(EVP_PKEY* key, EVP_PKEY* issuer_key, X509* issuer, const char* cn, bool is_ca, const char* san) {
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), is_ca ? 10 : 11);
    X509_NAME* name = X509_NAME_new();
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509_NAME_free(name);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, nullptr, nullptr, 0);
    auto ext = [&](int nid, const char* value) {
      X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
      X509_add_ext(x, e, -1);
      X509_EXTENSION_free(e);
    };
    ext(NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    ext(NID_key_usage, is_ca ? "critical,keyCertSign" : "critical,digitalSignature");
    ext(NID_subject_key_identifier, "hash");
    if (san) ext(NID_subject_alt_name, san);
    X509_sign(x, issuer_key, EVP_sha256());
    return x;
  }
};

struct Request {
  std::string method, target, content_type, body;
};

// A one-thread HTTPS server answering every request with handler(request) → (status, body).
class TestHttpsServer {
 public:
  using Handler = std::function<std::pair<int, std::string>(const Request&)>;
  TestHttpsServer(const TlsPki& pki, Handler handler)
      : ctx_(ssl::context::tls_server), acceptor_(ioc_), handler_(std::move(handler)) {
    std::string cert = pem_of(pki.server), key = pem_of(pki.server_key);
    ctx_.use_certificate_chain(asio::buffer(cert));
    ctx_.use_private_key(asio::buffer(key), ssl::context::pem);
    asio::ip::tcp::endpoint ep(asio::ip::address_v4::loopback(), 0);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { serve(); });
  }
  ~TestHttpsServer() {
    stop_ = true;
    beast::error_code ec;
    asio::io_context io;
    asio::ip::tcp::socket s(io);
    s.connect({asio::ip::address_v4::loopback(), port_}, ec);  // wake the blocking accept
    thread_.join();
  }
  unsigned short port() const { return port_; }
  int served() const { return served_; }
  std::vector<Request> requests;  // read after the client call returned

 private:
  void serve() {
    while (!stop_) {
      asio::ip::tcp::socket sock(ioc_);
      beast::error_code ec;
      acceptor_.accept(sock, ec);
      if (ec || stop_) return;
      ssl::stream<asio::ip::tcp::socket> stream(std::move(sock), ctx_);
      stream.handshake(ssl::stream_base::server, ec);
      if (ec) continue;  // e.g. the client refused our certificate
      beast::flat_buffer buf;
      http::request<http::string_body> req;
      http::read(stream, buf, req, ec);
      if (ec) continue;
      Request r{std::string(req.method_string()), std::string(req.target()),
                std::string(req[http::field::content_type]), req.body()};
      requests.push_back(r);
      auto [status, body] = handler_(r);
      http::response<http::string_body> res{static_cast<http::status>(status), 11};
      res.set(http::field::content_type, "application/json");
      res.body() = body;
      res.prepare_payload();
      http::write(stream, res, ec);
      ++served_;
      stream.shutdown(ec);
    }
  }
  asio::io_context ioc_;
  ssl::context ctx_;
  asio::ip::tcp::acceptor acceptor_;
  Handler handler_;
  unsigned short port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> served_{0};
  std::thread thread_;
};

TEST(VerifyGpuNrasOnline, HttpsRoundTripWithTrustedTestCa) {
  TlsPki pki;
  TestHttpsServer srv(pki, [](const Request& r) { return std::make_pair(200, "{\"echo\":" + r.body + "}"); });
  auto url = "https://localhost:" + std::to_string(srv.port()) + "/v4/attest/gpu";
  auto res = nras::https_request("POST", url, R"({"x":1})", 10, pem_of(pki.ca));
  ASSERT_TRUE(res.ok) << res.error;
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.body, R"({"echo":{"x":1}})");
  ASSERT_EQ(srv.requests.size(), 1u);
  EXPECT_EQ(srv.requests[0].method, "POST");
  EXPECT_EQ(srv.requests[0].target, "/v4/attest/gpu");
  EXPECT_EQ(srv.requests[0].content_type, "application/json");
}

TEST(VerifyGpuNrasOnline, UntrustedServerCertificateIsRefused) {
  TlsPki pki;
  TestHttpsServer srv(pki, [](const Request&) { return std::make_pair(200, std::string("{}")); });
  auto res = nras::https_request("GET", "https://localhost:" + std::to_string(srv.port()) + "/", {}, 10);
  EXPECT_FALSE(res.ok);
  EXPECT_NE(res.error.find("certificate verify failed"), std::string::npos) << res.error;
  EXPECT_TRUE(srv.requests.empty());
}

TEST(VerifyGpuNrasOnline, ServerCertificateForAnotherHostIsRefused) {
  TlsPki pki;  // certificate names "localhost" only
  TestHttpsServer srv(pki, [](const Request&) { return std::make_pair(200, std::string("{}")); });
  auto res =
      nras::https_request("GET", "https://127.0.0.1:" + std::to_string(srv.port()) + "/", {}, 10, pem_of(pki.ca));
  EXPECT_FALSE(res.ok);
  EXPECT_TRUE(srv.requests.empty());
}

// --- the whole online flow against the simulated NRAS ---

boost::json::object json_fixture(const std::string& name) {
  boost::system::error_code ec;
  auto v = boost::json::parse(fixture(name), ec);
  EXPECT_FALSE(ec) << name;
  return v.is_object() ? v.as_object() : boost::json::object{};
}

// Simulated NRAS: checks the request's shape, answers with the recorded claim sets for the request's nonce.
std::pair<int, std::string> simulated_nras(const Signer& s, const Request& r) {
  boost::system::error_code ec;
  auto v = boost::json::parse(r.body, ec);
  if (ec || !v.is_object()) return {400, R"({"error":"body is not JSON"})"};
  const auto& o = v.as_object();
  if (!o.contains("nonce") || !o.contains("arch") || !o.contains("evidence_list") || !o.at("nonce").is_string() ||
      !o.at("evidence_list").is_array() || o.at("evidence_list").as_array().empty()) {
    return {400, R"({"error":"missing nonce/arch/evidence_list"})"};
  }
  std::string nonce(o.at("nonce").as_string());
  // The real NRAS per-GPU claims recorded for this very evidence (nvtrust sample): driver 550.90.07 etc.
  auto detached_claims = json_fixture("nvat_hopperClaimsv3_decoded.json")["GPU-0"].as_object();
  detached_claims["eat_nonce"] = nonce;
  std::string detached = s.sign(detached_claims);
  auto overall = json_fixture("nvtrust_claims_overall_claims_remote.json");
  overall["eat_nonce"] = nonce;
  overall["submods"] = boost::json::object{
      {"GPU-0", boost::json::array{"DIGEST", boost::json::array{"SHA-256", pi::to_hex(pi::crypto::sha256(detached))}}}};
  boost::json::array answer{boost::json::array{"JWT", s.sign(overall)}, boost::json::object{{"GPU-0", detached}}};
  return {200, boost::json::serialize(answer)};
}

struct JwksFile {
  std::string path;
  explicit JwksFile(const std::string& content) {
    path = (std::filesystem::temp_directory_path() / ("pi-gpu-jwks-" + std::to_string(::getpid()) + ".json")).string();
    std::ofstream(path) << content;
  }
  ~JwksFile() { std::filesystem::remove(path); }
};

TEST(VerifyGpuNrasOnline, SimulatedNrasOnlineFlowPasses) {
  TlsPki pki;
  Signer signer;
  TestHttpsServer srv(pki, [&](const Request& r) { return simulated_nras(signer, r); });
  JwksFile jwks(signer.jwks());
  GpuOptions opts;
  opts.now = kNow;
  opts.nras = true;
  opts.nras_url = "https://localhost:" + std::to_string(srv.port()) + "/v4/attest/gpu";
  opts.nras_tls_ca_pem = pem_of(pki.ca);
  opts.jwks_path = jwks.path;
  Report r;
  check_gpu_evidence(nvtrust_payload(), kNonce, opts, r);
  for (const auto& c : r.checks) {
    if (c.enforced) {
      EXPECT_EQ(c.status, Status::Pass) << c.id << ": " << c.detail;
    }
  }
  EXPECT_TRUE(r.ok());
  // What we sent is NRAS v4's request: our nonce, the detected arch, the evidence as received.
  ASSERT_EQ(srv.requests.size(), 1u);
  boost::system::error_code ec;
  auto sent = boost::json::parse(srv.requests[0].body, ec).as_object();
  EXPECT_EQ(sent.at("nonce").as_string(), kNonce);
  EXPECT_EQ(sent.at("arch").as_string(), "HOPPER");
  EXPECT_EQ(sent.at("claims_version").as_string(), "3.0");
  auto payload = boost::json::parse(nvtrust_payload().as_string()).as_object();
  EXPECT_EQ(sent.at("evidence_list").as_array()[0].at("evidence"),
            payload.at("evidence_list").as_array()[0].at("evidence"));
  EXPECT_EQ(sent.at("evidence_list").as_array()[0].at("certificate"),
            payload.at("evidence_list").as_array()[0].at("certificate"));
}

TEST(VerifyGpuNrasOnline, NrasHttpErrorIsAFailedCheck) {
  TlsPki pki;
  TestHttpsServer srv(pki, [](const Request&) { return std::make_pair(400, std::string(R"({"error":"bad"})")); });
  GpuOptions opts;
  opts.now = kNow;
  opts.nras = true;
  opts.nras_url = "https://localhost:" + std::to_string(srv.port()) + "/v4/attest/gpu";
  opts.nras_tls_ca_pem = pem_of(pki.ca);
  Report r;
  check_gpu_evidence(nvtrust_payload(), kNonce, opts, r);
  const Check* c = nullptr;
  for (const auto& x : r.checks)
    if (x.id == "gpu.nras") c = &x;
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->status, Status::Fail);
  EXPECT_NE(c->detail.find("HTTP 400"), std::string::npos) << c->detail;
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace pi::verify
