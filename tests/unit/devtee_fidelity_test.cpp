// dev-tee fidelity (issue 12, item 5): simulated evidence shaped like real dstack evidence, so that outside
// verifiers fail it only for its test root. Checked against REAL recorded dstack data (tests/fixtures/tdx):
// MRCONFIGID = 0x01 ‖ sha256(app_compose) ‖ 0…, mr_aggregated, the PCK certificate's extensions; and the dstack
// API as the official SDKs use it: absolute-form and /prpc/ request targets, EmitEvent extending RTMR3.
// Hashes here are computed with OpenSSL's EVP directly, not with the project's helpers under test.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json.hpp>
#include <fstream>
#include <set>
#include <sstream>

#include "crypto/openssl.hpp"
#include "devtee/devtee.hpp"
#include "devtee/pki_service.hpp"
#include "devtee/sim_collateral.hpp"
#include "devtee/sim_quote.hpp"
#include "devtee/test_pki.hpp"
#include "verify/attestation.hpp"
#include "verify/dcap.hpp"
#include "verify/event_log.hpp"
#include "verify/tdx_quote.hpp"

#include "test_support.hpp"

namespace pi::devtee {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using local = asio::local::stream_protocol;
using pi::testsupport::run_co;
using pi::testsupport::TempDir;
using verify::Status;

const std::string kFixture = std::string(PI_FIXTURES_DIR) + "/tdx/vllm_proxy_sample_dstack.json";
constexpr std::int64_t kNow = 1790000000;
// TDX v4 quote: 48-byte header, then the TD report body; MRTD at body 136, MRCONFIGID 184, MROWNER 232,
// MROWNERCONFIG 280, RTMR0..3 at 328 + 48 i, REPORTDATA 520.
constexpr std::size_t kBody = 48;

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Bytes evp(const EVP_MD* md, std::string_view data) {
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned n = 0;
  EXPECT_EQ(EVP_Digest(data.data(), data.size(), out.data(), &n, md, nullptr), 1);
  out.resize(n);
  return out;
}
std::string str(const Bytes& b) { return std::string(b.begin(), b.end()); }
std::string slice(const Bytes& q, std::size_t at, std::size_t n) {
  return std::string(q.begin() + static_cast<std::ptrdiff_t>(at), q.begin() + static_cast<std::ptrdiff_t>(at + n));
}

const TestPki& pki() {
  static const TestPki p = generate_test_pki(kNow);
  return p;
}

std::array<std::uint8_t, 64> rd_of(std::uint8_t fill) {
  std::array<std::uint8_t, 64> a{};
  a.fill(fill);
  return a;
}

// The PCK leaf (first PEM certificate) of a quote's certification data.
crypto::ossl::X509Ptr pck_leaf(const Bytes& quote) {
  std::string text(quote.begin(), quote.end());
  auto at = text.find("-----BEGIN CERTIFICATE-----");
  EXPECT_NE(at, std::string::npos);
  auto certs = crypto::ossl::certs_from_pem(text.substr(at, text.find('\0', at) - at));
  EXPECT_EQ(certs.size(), 3u);
  return std::move(certs.front());
}

std::string oid_text(const ASN1_OBJECT* o) {
  char buf[128];
  OBJ_obj2txt(buf, sizeof buf, o, 1);
  return buf;
}

std::set<std::string> extension_oids(const X509& c) {
  std::set<std::string> out;
  for (int i = 0; i < X509_get_ext_count(&c); ++i) out.insert(oid_text(X509_EXTENSION_get_object(X509_get_ext(&c, i))));
  return out;
}

// The OIDs of the items in the Intel SGX extension (a SEQUENCE of SEQUENCE { OID, value }), walked by hand.
std::vector<std::string> sgx_item_oids(const X509& c) {
  ASN1_OBJECT* sgx = OBJ_txt2obj("1.2.840.113741.1.13.1", 1);
  int idx = X509_get_ext_by_OBJ(&c, sgx, -1);
  ASN1_OBJECT_free(sgx);
  EXPECT_GE(idx, 0);
  if (idx < 0) return {};
  const ASN1_OCTET_STRING* os = X509_EXTENSION_get_data(X509_get_ext(&c, idx));
  const unsigned char* p = ASN1_STRING_get0_data(os);
  const unsigned char* end = p + ASN1_STRING_length(os);
  long len = 0;
  int tag = 0, cls = 0;
  EXPECT_EQ(ASN1_get_object(&p, &len, &tag, &cls, end - p) & 0x80, 0);
  EXPECT_EQ(tag, V_ASN1_SEQUENCE);
  std::vector<std::string> oids;
  while (p < end) {
    const unsigned char* item = p;
    ASN1_get_object(&item, &len, &tag, &cls, end - p);
    const unsigned char* next = item + len;
    ASN1_OBJECT* o = d2i_ASN1_OBJECT(nullptr, &item, next - item);
    if (o == nullptr) break;
    oids.push_back(oid_text(o));
    ASN1_OBJECT_free(o);
    p = next;
  }
  return oids;
}

// Info's tcb_info: a JSON string as the agent serves it, or an object as some recordings keep it.
json::object tcb_of(const json::object& info) {
  const json::value& t = info.at("tcb_info");
  return t.is_string() ? json::parse(t.as_string()).as_object() : t.as_object();
}

std::string subject_field(const X509& c, int nid) {
  char buf[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(&c), nid, buf, sizeof buf);
  return buf;
}

// ---- MRCONFIGID and mr_aggregated: the rules, confirmed on real dstack evidence ----

TEST(DevteeFidelity, RealDstackQuoteHasMrConfigIdOfItsComposeHash) {
  auto fx = json::parse(read_text(kFixture)).as_object();
  Bytes q = *from_hex(std::string_view(fx.at("quote").at("quote").as_string()));
  auto tcb = tcb_of(fx.at("info").as_object());
  std::string app_compose(tcb.at("app_compose").as_string());
  std::string expected = "\x01" + str(evp(EVP_sha256(), app_compose)) + std::string(15, '\0');
  EXPECT_EQ(slice(q, kBody + 184, 48), expected);

  // the stripped-log GetQuote answer recorded from dstack: MRCONFIGID carries its compose-hash event
  auto g = json::parse(read_text(std::string(PI_FIXTURES_DIR) + "/tdx/dstack_getquote_stripped.json")).as_object();
  Bytes gq = *from_hex(std::string_view(g.at("quote").as_string()));
  std::string compose_event;
  const json::value g_log = json::parse(g.at("event_log").as_string());
  for (const auto& e : g_log.as_array())
    if (e.at("event").as_string() == "compose-hash") compose_event = std::string(e.at("event_payload").as_string());
  ASSERT_EQ(compose_event.size(), 64u);
  EXPECT_EQ(to_hex(ByteView(gq.data() + kBody + 184, 48)), "01" + compose_event + std::string(30, '0'));
}

TEST(DevteeFidelity, SimulatedQuoteHasDstackMrConfigIdForTheComposeItIsGiven) {
  for (const std::string& compose : {sim_default_app_compose(), std::string(R"({"name":"other","runner":"x"})")}) {
    auto ev = make_sim_evidence(pki(), rd_of(7), compose);
    std::string expected = "\x01" + str(evp(EVP_sha256(), compose)) + std::string(15, '\0');
    EXPECT_EQ(slice(ev.quote, kBody + 184, 48), expected);
    EXPECT_EQ(verify::parse_quote(ev.quote).td.mr_config_id, dstack_mr_config_id(crypto::sha256(compose)));
  }
}

TEST(DevteeFidelity, MrAggregatedFollowsDstackOnRealAndSimulatedInfo) {
  auto check = [](const Bytes& q, const json::object& info) {
    // dstack: sha256(MRTD ‖ RTMR0..3 ‖ MRCONFIGID ‖ MROWNER ‖ MROWNERCONFIG) when the last three are not all zero
    std::string m = slice(q, kBody + 136, 48);
    for (int i = 0; i < 4; ++i) m += slice(q, kBody + 328 + 48 * static_cast<std::size_t>(i), 48);
    m += slice(q, kBody + 184, 144);
    auto tcb = tcb_of(info);
    EXPECT_EQ(tcb.at("mr_aggregated").as_string(), to_hex(evp(EVP_sha256(), m)));
  };
  auto fx = json::parse(read_text(kFixture)).as_object();
  check(*from_hex(std::string_view(fx.at("quote").at("quote").as_string())), fx.at("info").as_object());
  auto ev = make_sim_evidence(pki(), rd_of(1), sim_default_app_compose());
  check(ev.quote, ev.info);
  EXPECT_EQ(ev.info.at("mr_aggregated"), json::parse(ev.info.at("tcb_info").as_string()).at("mr_aggregated"));
  // the fields dstack's SDKs require of Info are all there
  for (const char* k : {"app_id", "instance_id", "app_cert", "app_name", "device_id", "key_provider_info",
                        "compose_hash", "os_image_hash", "tcb_info"})
    EXPECT_TRUE(ev.info.contains(k)) << k;
  auto tcb = json::parse(ev.info.at("tcb_info").as_string()).as_object();
  for (const char* k : {"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "app_compose", "event_log", "mr_aggregated",
                        "os_image_hash", "compose_hash", "device_id"})
    EXPECT_TRUE(tcb.contains(k)) << k;
}

// ---- the PCK certificate: Intel's extensions and names ----

TEST(DevteeFidelity, PckCertificateCarriesTheExtensionsOfARealIntelPckCertificate) {
  auto fx = json::parse(read_text(kFixture)).as_object();
  auto real = pck_leaf(*from_hex(std::string_view(fx.at("quote").at("quote").as_string())));
  auto ev = make_sim_evidence(pki(), rd_of(2), sim_default_app_compose());
  auto sim = pck_leaf(ev.quote);

  EXPECT_EQ(X509_get_ext_count(real.get()), 6);  // what go-tdx-guest requires
  EXPECT_EQ(X509_get_ext_count(sim.get()), 6);
  EXPECT_EQ(extension_oids(*sim), extension_oids(*real));
  EXPECT_EQ(extension_oids(*sim), (std::set<std::string>{"2.5.29.35", "2.5.29.31", "2.5.29.14", "2.5.29.15",
                                                         "2.5.29.19", "1.2.840.113741.1.13.1"}));
  // PPID, TCB, PCE-ID, FMSPC, SGX type, PlatformInstanceID, Configuration, in Intel's order
  EXPECT_EQ(sgx_item_oids(*sim), sgx_item_oids(*real));
  EXPECT_EQ(sgx_item_oids(*sim).size(), 7u);
  EXPECT_EQ(X509_get_extension_flags(sim.get()) & EXFLAG_CA, 0u);
  EXPECT_EQ(X509_get_key_usage(sim.get()), X509_get_key_usage(real.get()));

  // Intel's common names (which go-tdx-guest checks), our organisation
  EXPECT_EQ(subject_field(*sim, NID_commonName), subject_field(*real, NID_commonName));
  EXPECT_EQ(subject_field(*sim, NID_organizationName), kSimPkiOrganization);
  EXPECT_EQ(subject_field(*real, NID_organizationName), "Intel Corporation");
  auto chain = crypto::ossl::certs_from_pem(pki().pck_chain_pem());
  EXPECT_EQ(crypto::ossl::common_name(*chain[1]), "Intel SGX PCK Platform CA");
  EXPECT_EQ(crypto::ossl::common_name(*chain[2]), "Intel SGX Root CA");
  for (const auto& c : chain) {
    EXPECT_TRUE(extension_oids(*c).count("2.5.29.31")) << crypto::ossl::common_name(*c);  // CRL distribution points
    EXPECT_TRUE(extension_oids(*c).count("2.5.29.35")) << crypto::ossl::common_name(*c);  // authority key id
  }
}

TEST(DevteeFidelity, PckFmspcAndTcbAgreeWithTheSimulatedCollateral) {
  auto ev = make_sim_evidence(pki(), rd_of(3), sim_default_app_compose());
  auto c = verify::parse_collateral_json(sim_collateral_json(pki(), kNow));
  c.simulated_root_der = pki().root_cert_der();
  auto r = verify::verify_dcap(ev.quote, c, kNow);
  for (const auto& ch : r.checks) EXPECT_EQ(ch.status, Status::Pass) << ch.id << ": " << ch.detail;
  EXPECT_TRUE(r.verified);
  EXPECT_EQ(r.fmspc, to_hex(kSimFmspc));
  EXPECT_EQ(r.tcb_status, "UpToDate");
  // the root has Intel's common name, so the verifier's report names its organisation too
  for (const auto& ch : r.checks) {
    if (ch.id != "tdx.pck_chain") continue;
    EXPECT_NE(ch.detail.find(std::string("O='") + kSimPkiOrganization + "' (SIMULATED)"), std::string::npos)
        << ch.detail;
  }
}

// ---- verify_attestation: the MRCONFIGID check on simulated evidence ----

json::object report_for(const SimEvidence& ev, const Bytes& addr, const Bytes& nonce) {
  return json::object{{"signing_algo", "ecdsa"},        {"signing_address", to_hex(addr)},
                      {"request_nonce", to_hex(nonce)}, {"intel_quote", to_hex(ev.quote)},
                      {"event_log", ev.event_log},      {"info", ev.info}};
}

// What the verifier tests below share: report_data = addr ‖ nonce, and options that trust the test root.
struct SimCase {
  Bytes addr = Bytes(20, 0xab);
  Bytes nonce = Bytes(32, 0xcd);
  std::array<std::uint8_t, 64> rd{};
  verify::AttestationOptions opts;
  SimCase() {
    std::copy(addr.begin(), addr.end(), rd.begin());
    std::copy(nonce.begin(), nonce.end(), rd.begin() + 32);
    opts.now = kNow;
    opts.expected_nonce_hex = to_hex(nonce);
    opts.expected_signing_algo = "ecdsa";
    opts.collateral = verify::parse_collateral_json(sim_collateral_json(pki(), kNow));
    opts.collateral->simulated_root_der = pki().root_cert_der();
  }
};

TEST(DevteeFidelity, VerifierChecksMrConfigIdAgainstTheComposeHash) {
  SimCase sc;
  const auto& [addr, nonce, rd, opts] = sc;

  auto good = make_sim_evidence(pki(), rd, sim_default_app_compose());
  auto out = verify::verify_attestation(report_for(good, addr, nonce), opts);
  EXPECT_TRUE(out.report.ok());
  ASSERT_NE(out.report.find("code.mr_config_id"), nullptr);
  EXPECT_EQ(out.report.find("code.mr_config_id")->status, Status::Pass) << out.report.find("code.mr_config_id")->detail;

  // a quote launched for another compose, shown with this compose's log and Info: MRCONFIGID gives it away
  // (RTMR3 too, by the other path)
  auto other = make_sim_evidence(pki(), rd, R"({"name":"another app"})");
  auto mixed = good;
  mixed.quote = other.quote;
  auto bad = verify::verify_attestation(report_for(mixed, addr, nonce), opts);
  EXPECT_FALSE(bad.report.ok());
  EXPECT_EQ(bad.report.find("code.mr_config_id")->status, Status::Fail);
  EXPECT_NE(bad.report.find("code.mr_config_id")->detail.find("but the measured compose-hash event is"),
            std::string::npos);
}

// A fleet's records name the replica's instance_id, and so does its report: the verifier holds it to the measured
// instance-id event, so an auditor matching a record to a replica cannot be told another instance.
TEST(DevteeFidelity, VerifierHoldsTheReportsInstanceIdToTheMeasuredOne) {
  SimCase sc;
  const auto& [addr, nonce, rd, opts] = sc;
  auto ev = make_sim_evidence(pki(), rd, sim_default_app_compose());
  auto report = report_for(ev, addr, nonce);
  const std::string measured(ev.info.at("instance_id").as_string());
  EXPECT_EQ(verify::verify_attestation(report, opts).report.find("code.instance_id"), nullptr) << "no claim, no check";
  report["instance_id"] = measured;
  auto out = verify::verify_attestation(report, opts);
  EXPECT_TRUE(out.report.ok());
  ASSERT_NE(out.report.find("code.instance_id"), nullptr);
  EXPECT_EQ(out.report.find("code.instance_id")->status, Status::Pass);
  report["instance_id"] = "f1ee70000000000000000000000000000000000b";
  auto bad = verify::verify_attestation(report, opts);
  EXPECT_FALSE(bad.report.ok());
  EXPECT_EQ(bad.report.find("code.instance_id")->status, Status::Fail) << bad.report.find("code.instance_id")->detail;
}

// ---- the dstack API as the SDKs call it ----

TEST(DevteeFidelity, NormalizeTarget) {
  EXPECT_EQ(normalize_target("/GetKey"), "/GetKey");
  EXPECT_EQ(normalize_target("http://unix.socket/GetKey"), "/GetKey");
  EXPECT_EQ(normalize_target("http://localhost/GetQuote?report_data=ab"), "/GetQuote?report_data=ab");
  EXPECT_EQ(normalize_target("https://dstack:8090"), "/");
  EXPECT_EQ(normalize_target("http://h?x=1"), "/?x=1");
  EXPECT_EQ(normalize_target("/prpc/GetQuote?json"), "/GetQuote?json");
  EXPECT_EQ(normalize_target("http://unix.socket/prpc/Info"), "/Info");
  EXPECT_EQ(normalize_target("/prpcX"), "/prpcX");
  EXPECT_EQ(normalize_target("GetKey"), "/GetKey");
  EXPECT_EQ(normalize_target("1http://x/GetKey"), "/1http://x/GetKey");
}

struct Raw {
  unsigned status = 0;
  std::string body;
};
asio::awaitable<Raw> raw_post(std::string sock_path, std::string target, std::string body) {
  local::socket sock(co_await asio::this_coro::executor);
  co_await sock.async_connect(local::endpoint(sock_path), asio::use_awaitable);
  http::request<http::string_body> req{http::verb::post, target, 11};
  req.set(http::field::host, "unix.socket");
  req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  co_await http::async_write(sock, req, asio::use_awaitable);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  co_await http::async_read(sock, buf, res, asio::use_awaitable);
  co_return Raw{res.result_int(), res.body()};
}

TEST(DevteeFidelity, AbsoluteFormAndPrpcTargetsReachTheEndpointsOverTheSocket) {
  TempDir dir;
  asio::io_context ioc;
  Options o;
  o.socket_path = dir.file("dstack.sock");
  o.fixture_path = kFixture;
  o.state_dir = dir.file("state");
  Server server(ioc.get_executor(), o);
  server.start();
  const std::string body = R"({"path":"/signing","purpose":"ecdsa","algorithm":"secp256k1"})";
  auto origin = run_co(ioc, raw_post(o.socket_path, "/GetKey", body));
  auto absolute = run_co(ioc, raw_post(o.socket_path, "http://unix.socket/GetKey", body));
  auto prpc = run_co(ioc, raw_post(o.socket_path, "/prpc/GetKey?json", body));
  ASSERT_EQ(origin.status, 200u) << origin.body;
  EXPECT_EQ(absolute.status, 200u) << absolute.body;
  EXPECT_EQ(prpc.status, 200u) << prpc.body;
  EXPECT_EQ(json::parse(absolute.body).at("key"), json::parse(origin.body).at("key"));
  EXPECT_EQ(json::parse(prpc.body).at("key"), json::parse(origin.body).at("key"));
  auto quote = run_co(ioc, raw_post(o.socket_path, "http://unix.socket/GetQuote", R"({"report_data":"abcd"})"));
  ASSERT_EQ(quote.status, 200u) << quote.body;
  EXPECT_EQ(std::string(json::parse(quote.body).at("report_data").as_string()).substr(0, 4), "abcd");
  EXPECT_EQ(run_co(ioc, raw_post(o.socket_path, "http://unix.socket/Nope", "{}")).status, 404u);
  server.stop();
}

// RTMR3 after one dstack runtime event, computed here by hand: SHA384(rtmr ‖ SHA384(u32le(type) ‖ ":" ‖ name ‖
// ":" ‖ payload)).
std::string extend_by_hand(const std::string& rtmr, const std::string& name, const std::string& payload) {
  std::string msg("\x01\x00\x00\x08", 4);
  msg += ":" + name + ":" + payload;
  return str(evp(EVP_sha384(), rtmr + str(evp(EVP_sha384(), msg))));
}

TEST(DevteeFidelity, EmitEventExtendsRtmr3AndJoinsTheLogInRecordedMode) {
  Handler h(load_fixture(kFixture), KeyDeriver::open(""));
  auto before = json::parse(h.handle("POST", "/GetQuote", R"({"report_data":"01"})").body).as_object();
  Bytes q0 = *from_hex(std::string_view(before.at("quote").as_string()));

  EXPECT_EQ(h.handle("POST", "/EmitEvent", R"({"event":"","payload":"00"})").status, 400u);
  EXPECT_EQ(h.handle("POST", "/EmitEvent", R"({"event":"x","payload":"zz"})").status, 400u);
  EXPECT_EQ(h.handle("POST", "/EmitEvent", R"({"event":7,"payload":"00"})").status, 400u);
  auto ok = h.handle("POST", "/EmitEvent", R"({"event":"model-loaded","payload":"6d6f64656c"})");
  ASSERT_EQ(ok.status, 200u) << ok.body;
  EXPECT_EQ(json::parse(ok.body).at("simulated"), true);

  auto after = json::parse(h.handle("POST", "/GetQuote", R"({"report_data":"01"})").body).as_object();
  Bytes q1 = *from_hex(std::string_view(after.at("quote").as_string()));
  const std::size_t rtmr3_at = kBody + 328 + std::size_t{3} * 48;
  EXPECT_EQ(slice(q1, rtmr3_at, 48), extend_by_hand(slice(q0, rtmr3_at, 48), "model-loaded", "model"));
  EXPECT_EQ(slice(q1, 0, rtmr3_at), slice(q0, 0, rtmr3_at));  // nothing else moved
  auto log = json::parse(after.at("event_log").as_string()).as_array();
  EXPECT_EQ(log.size(), json::parse(before.at("event_log").as_string()).as_array().size() + 1);
  EXPECT_EQ(log.back().at("event"), "model-loaded");
  EXPECT_EQ(log.back().at("imr"), 3);
  EXPECT_EQ(log.back().at("event_payload"), "6d6f64656c");
  // the verifier's replay of the new log reaches the new RTMR3
  auto replay = verify::replay_event_log(verify::parse_event_log(log));
  EXPECT_TRUE(replay.problems.empty());
  EXPECT_EQ(slice(q1, rtmr3_at, 48), std::string(replay.rtmr[3].begin(), replay.rtmr[3].end()));
  // Info's tcb_info follows
  auto info = json::parse(h.handle("POST", "/Info", "").body).as_object();
  auto tcb = json::parse(info.at("tcb_info").as_string()).as_object();
  EXPECT_EQ(tcb.at("rtmr3").as_string(), to_hex(ByteView(q1.data() + rtmr3_at, 48)));
  EXPECT_EQ(tcb.at("event_log").as_array().back().at("event"), "model-loaded");
}

TEST(DevteeFidelity, EmitEventInPkiModeKeepsTheEvidenceVerifiable) {
  Service svc = pki_service(pki())(Handler(load_fixture(kFixture), KeyDeriver::open("")));
  ASSERT_EQ(svc("POST", "/EmitEvent", R"({"event":"app-started","payload":"01020304"})").status, 200u);
  Bytes addr(20, 0x11), nonce(32, 0x22);
  Bytes rd = addr;
  rd.resize(32, 0);
  rd.insert(rd.end(), nonce.begin(), nonce.end());
  auto r = svc("POST", "/GetQuote", json::serialize(json::object{{"report_data", to_hex(rd)}}));
  ASSERT_EQ(r.status, 200u) << r.body;
  auto answer = json::parse(r.body).as_object();
  auto log = json::parse(answer.at("event_log").as_string()).as_array();
  EXPECT_EQ(log.back().at("event"), "app-started");
  json::object info = json::parse(svc("POST", "/Info", "").body).as_object();
  json::object report{
      {"signing_algo", "ecdsa"},           {"signing_address", to_hex(addr)},     {"request_nonce", to_hex(nonce)},
      {"intel_quote", answer.at("quote")}, {"event_log", answer.at("event_log")}, {"info", info}};
  verify::AttestationOptions opts;
  opts.now = kNow;
  opts.expected_nonce_hex = to_hex(nonce);
  opts.expected_signing_algo = "ecdsa";
  opts.collateral = verify::parse_collateral_json(sim_collateral_json(pki(), kNow));
  opts.collateral->simulated_root_der = pki().root_cert_der();
  auto out = verify::verify_attestation(report, opts);
  for (const auto& c : out.report.checks) EXPECT_NE(c.status, Status::Fail) << c.id << ": " << c.detail;
  EXPECT_EQ(out.report.find("code.rtmr")->status, Status::Pass);
  EXPECT_EQ(out.report.find("code.mr_config_id")->status, Status::Pass);
  auto tcb = json::parse(info.at("tcb_info").as_string()).as_object();
  EXPECT_EQ(tcb.at("event_log").as_array().back().at("event"), "app-started");
}

}  // namespace
}  // namespace pi::devtee
