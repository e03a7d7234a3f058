// dev-tee test-PKI mode (issue 5): SIMULATED quotes that verify through the verifier's real DCAP code
// path (src/verify/dcap.cpp) ONLY when the test root is trusted, with generated collateral; event log
// replay and compose hash consistency with the verifier's own implementations.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "crypto/random.hpp"
#include "devtee/sim_collateral.hpp"
#include "devtee/sim_quote.hpp"
#include "devtee/test_pki.hpp"
#include "tee/dstack_client.hpp"
#include "verify/attestation.hpp"
#include "verify/dcap.hpp"
#include "verify/event_log.hpp"
#include "verify/tdx_quote.hpp"

#include "test_support.hpp"

namespace pi::devtee {
namespace {

namespace json = boost::json;
using pi::testsupport::run_co;
using verify::Check;
using verify::Status;

constexpr std::int64_t kNow = 1790000000;  // 2026-09-21

const TestPki& pki() {
  static const TestPki p = generate_test_pki(kNow);
  return p;
}

std::array<std::uint8_t, 64> fresh_report_data() {
  auto r = crypto::random_bytes(64);
  std::array<std::uint8_t, 64> a{};
  std::copy(r.begin(), r.end(), a.begin());
  return a;
}

verify::Collateral sim_collateral(bool trust_test_root) {
  auto c = verify::parse_collateral_json(sim_collateral_json(pki(), kNow));
  if (trust_test_root) c.simulated_root_der = pki().root_cert_der();
  return c;
}

const Check* find(const verify::DcapResult& r, const std::string& id) {
  for (const auto& c : r.checks)
    if (c.id == id) return &c;
  return nullptr;
}

TEST(DevteePki, QuoteVerifiesThroughDcapWithTestRoot) {
  auto rd = fresh_report_data();
  auto ev = make_sim_evidence(pki(), rd, sim_default_app_compose());
  auto r = verify::verify_dcap(ev.quote, sim_collateral(true), kNow);
  for (const auto& c : r.checks) {
    EXPECT_EQ(c.status, Status::Pass) << c.id << ": " << c.detail;
    EXPECT_TRUE(c.simulated) << c.id;
  }
  EXPECT_GE(r.checks.size(), 10u);
  EXPECT_TRUE(r.verified);
  EXPECT_TRUE(r.simulated);
  EXPECT_EQ(r.tcb_status, "UpToDate");
  EXPECT_EQ(r.fmspc, to_hex(kSimFmspc));
  ASSERT_TRUE(r.quote);
  EXPECT_EQ(r.quote->version, 4);
  EXPECT_EQ(r.quote->td.report_data, rd);
  EXPECT_TRUE(std::equal(rd.begin(), rd.end(), ev.quote.begin() + verify::kTdReportDataOffset));
  ASSERT_NE(find(r, "tdx.pck_chain"), nullptr);
  EXPECT_NE(find(r, "tdx.pck_chain")->detail.find("SIMULATED"), std::string::npos);
}

TEST(DevteePki, QuoteFailsWithoutTestRoot) {
  auto ev = make_sim_evidence(pki(), fresh_report_data(), sim_default_app_compose());
  auto r = verify::verify_dcap(ev.quote, sim_collateral(false), kNow);
  EXPECT_FALSE(r.verified);
  EXPECT_FALSE(r.simulated);
  for (const char* id : {"tdx.pck_chain", "tdx.collateral_tcb_info", "tdx.collateral_qe_identity"}) {
    ASSERT_NE(find(r, id), nullptr) << id;
    EXPECT_EQ(find(r, id)->status, Status::Fail) << id;
  }
  EXPECT_EQ(find(r, "tdx.qe_report_signature")->status, Status::Skipped);
  EXPECT_TRUE(r.tcb_status.empty());
  for (const auto& c : r.checks) EXPECT_FALSE(c.simulated) << c.id;
}

TEST(DevteePki, ADifferentTestRootIsNotTrusted) {
  auto ev = make_sim_evidence(pki(), fresh_report_data(), sim_default_app_compose());
  auto col = sim_collateral(false);
  col.simulated_root_der = generate_test_pki(kNow).root_cert_der();  // same names, other key
  auto r = verify::verify_dcap(ev.quote, col, kNow);
  EXPECT_FALSE(r.verified);
  EXPECT_EQ(find(r, "tdx.pck_chain")->status, Status::Fail);
}

// The extra test root must not touch real evidence: a real Intel quote with real collateral still
// verifies against Intel's root and is NOT labelled simulated; test-signed collateral cannot stand in.
TEST(DevteePki, TestRootLeavesRealQuotesAlone) {
  auto read = [](const std::string& name) {
    std::ifstream f(std::string(PI_FIXTURES_DIR) + "/tdx/" + name, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  auto fx = json::parse(read("vllm_proxy_sample_dstack.json"));
  Bytes real_quote = *from_hex(fx.at("quote").at("quote").as_string());
  auto col = verify::parse_collateral_json(read("collateral_fmspc20a06f_2025-09.json"));
  col.simulated_root_der = pki().root_cert_der();
  constexpr std::int64_t kFixtureNow = 1756900000;  // inside the recorded collateral's window (fixtures README)
  auto r = verify::verify_dcap(real_quote, col, kFixtureNow);
  EXPECT_TRUE(r.verified);
  EXPECT_FALSE(r.simulated);
  for (const auto& c : r.checks) EXPECT_FALSE(c.simulated) << c.id;
  // the real quote with the SIMULATED collateral: nothing verifies against Intel's root
  auto mixed = verify::verify_dcap(real_quote, sim_collateral(true), kNow);
  EXPECT_FALSE(mixed.verified);
  EXPECT_FALSE(mixed.simulated);
  EXPECT_EQ(find(mixed, "tdx.collateral_tcb_info")->status, Status::Fail);
  EXPECT_EQ(find(mixed, "tdx.collateral_qe_identity")->status, Status::Fail);
}

// The whole attestation report (vllm-proxy shape) through verify_attestation: hardware, binding and
// code groups all pass with the test root, and the hardware checks carry the simulated label.
TEST(DevteePki, FullAttestationReportVerifiesOnlyWithTestRoot) {
  Bytes addr = crypto::random_bytes(20), nonce = crypto::random_bytes(32);
  std::array<std::uint8_t, 64> rd{};
  std::copy(addr.begin(), addr.end(), rd.begin());
  std::copy(nonce.begin(), nonce.end(), rd.begin() + 32);
  auto ev = make_sim_evidence(pki(), rd, sim_default_app_compose());
  json::object report{{"signing_algo", "ecdsa"},        {"signing_address", to_hex(addr)},
                      {"request_nonce", to_hex(nonce)}, {"intel_quote", to_hex(ev.quote)},
                      {"event_log", ev.event_log},      {"info", ev.info}};
  verify::AttestationOptions opts;
  opts.now = kNow;
  opts.expected_nonce_hex = to_hex(nonce);
  opts.expected_signing_algo = "ecdsa";
  opts.collateral = sim_collateral(true);
  auto out = verify::verify_attestation(report, opts);
  EXPECT_TRUE(out.report.ok());
  EXPECT_TRUE(out.bound);
  for (const char* id :
       {"tdx.quote_signature", "tdx.tcb_status", "binding.report_data", "code.rtmr", "code.compose_hash"}) {
    const Check* c = out.report.find(id);
    ASSERT_NE(c, nullptr) << id;
    EXPECT_EQ(c->status, Status::Pass) << id << ": " << c->detail;
  }
  EXPECT_TRUE(out.report.find("tdx.pck_chain")->simulated);

  opts.collateral = sim_collateral(false);
  auto untrusted = verify::verify_attestation(report, opts);
  EXPECT_FALSE(untrusted.report.ok());
  EXPECT_EQ(untrusted.report.find("tdx.pck_chain")->status, Status::Fail);
}

TEST(DevteePki, EditedReportDataFailsQuoteSignature) {
  auto ev = make_sim_evidence(pki(), fresh_report_data(), sim_default_app_compose());
  ev.quote[verify::kTdReportDataOffset + 7] ^= 0x01;
  auto r = verify::verify_dcap(ev.quote, sim_collateral(true), kNow);
  EXPECT_FALSE(r.verified);
  ASSERT_NE(find(r, "tdx.quote_signature"), nullptr);
  EXPECT_EQ(find(r, "tdx.quote_signature")->status, Status::Fail);
  EXPECT_EQ(find(r, "tdx.pck_chain")->status, Status::Pass);  // only the edited part fails
  EXPECT_EQ(verify::verify_quote_structure(ev.quote).checks.front().status, Status::Pass);
  EXPECT_EQ(find(verify::verify_quote_structure(ev.quote), "tdx.quote_signature")->status, Status::Fail);
}

TEST(DevteePki, ExpiredCollateralFails) {
  auto ev = make_sim_evidence(pki(), fresh_report_data(), sim_default_app_compose());
  auto r = verify::verify_dcap(ev.quote, sim_collateral(true), kNow + 40LL * 86400);
  EXPECT_FALSE(r.verified);
  EXPECT_EQ(find(r, "tdx.collateral_tcb_info")->status, Status::Fail);
}

TEST(DevteePki, EventLogReplaysToQuoteRtmrs) {
  auto ev = make_sim_evidence(pki(), fresh_report_data(), sim_default_app_compose());
  auto q = verify::parse_quote(ev.quote);
  auto events = verify::parse_event_log(json::parse(ev.event_log));
  auto replay = verify::replay_event_log(events);
  EXPECT_TRUE(replay.problems.empty());
  EXPECT_GT(replay.recomputed, 0u);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(replay.rtmr[i], q.td.rtmr[i]) << "rtmr" << i;

  // Info's tcb_info carries the same values
  auto tcb = json::parse(ev.info.at("tcb_info").as_string()).as_object();
  EXPECT_EQ(tcb.at("rtmr3").as_string(), to_hex(q.td.rtmr[3]));
  EXPECT_EQ(tcb.at("mrtd").as_string(), to_hex(q.td.mr_td));

  // an edited runtime event no longer replays to the quote's RTMR3
  auto log = json::parse(ev.event_log).as_array();
  bool edited = false;
  for (auto& e : log)
    if (e.as_object().at("event").as_string() == "app-id") {
      e.as_object()["event_payload"] = std::string(40, 'f');
      e.as_object()["digest"] = "";
      edited = true;
    }
  ASSERT_TRUE(edited);
  auto bad = verify::replay_event_log(verify::parse_event_log(log));
  EXPECT_NE(bad.rtmr[3], q.td.rtmr[3]);
  EXPECT_EQ(bad.rtmr[0], q.td.rtmr[0]);

  // an edited firmware digest changes its RTMR
  auto log2 = json::parse(ev.event_log).as_array();
  log2[0].as_object()["digest"] = std::string(96, '0');
  EXPECT_NE(verify::replay_event_log(verify::parse_event_log(log2)).rtmr[0], q.td.rtmr[0]);
}

TEST(DevteePki, ComposeHashMatchesInfo) {
  std::string compose = sim_default_app_compose();
  auto ev = make_sim_evidence(pki(), fresh_report_data(), compose);
  auto events = verify::parse_event_log(json::parse(ev.event_log));
  auto measured = verify::runtime_event_payload(events, "compose-hash", true);
  ASSERT_TRUE(measured);
  auto tcb = json::parse(ev.info.at("tcb_info").as_string()).as_object();
  std::string app_compose(tcb.at("app_compose").as_string());
  EXPECT_EQ(app_compose, compose);
  EXPECT_EQ(*measured, to_hex(crypto::sha256(app_compose)));
  EXPECT_EQ(ev.info.at("compose_hash").as_string(), *measured);
  EXPECT_TRUE(ev.info.at("simulated").as_bool());
  // a different compose gives a different measured hash and RTMR3
  auto other = make_sim_evidence(pki(), fresh_report_data(), compose + " ");
  EXPECT_NE(verify::parse_quote(other.quote).td.rtmr[3], verify::parse_quote(ev.quote).td.rtmr[3]);
}

TEST(DevteePki, PersistedInStateDirAndReloaded) {
  auto dir = std::filesystem::temp_directory_path() / ("devtee_pki_test_" + to_hex(crypto::random_bytes(6)));
  auto a = load_or_create_test_pki(dir.string(), kNow);
  auto b = load_or_create_test_pki(dir.string(), kNow + 100);
  EXPECT_EQ(a.root_cert_pem, b.root_cert_pem);
  EXPECT_EQ(a.attestation_key_pem, b.attestation_key_pem);
  EXPECT_EQ(a.pck_crl_der, b.pck_crl_der);
  struct stat st {};
  ASSERT_EQ(::stat((dir / "pki" / "pck.key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir / "pki").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // a quote made with the reloaded PKI verifies against the first one's root and collateral
  auto col = verify::parse_collateral_json(sim_collateral_json(a, kNow));
  col.simulated_root_der = a.root_cert_der();
  EXPECT_TRUE(verify::verify_dcap(make_sim_evidence(b, fresh_report_data(), "{}").quote, col, kNow).verified);
  // a corrupt file is an error, not a silent regeneration
  { std::ofstream(dir / "pki" / "pck.key.pem") << "garbage"; }
  EXPECT_THROW(load_or_create_test_pki(dir.string(), kNow), std::runtime_error);
  std::filesystem::remove_all(dir);
}

// Runs `cmd` with the shell, returning (exit status, stdout).
std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {-1, out};
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

// The CLI end to end: `dev-tee --pki --pki-evidence` prints evidence; `verify attestation` accepts it only with
// `--trust-simulated STATE` and then says "simulated hardware: not a security proof".
TEST(DevteePki, CliEvidenceVerifiesOnlyWithTrustSimulated) {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path() / "private-inference";
  if (ec || !std::filesystem::exists(exe)) GTEST_SKIP() << "private-inference is not built next to the tests";
  auto dir = std::filesystem::temp_directory_path() / ("devtee_pki_cli_" + to_hex(crypto::random_bytes(6)));
  std::filesystem::create_directories(dir);
  std::string state = (dir / "state").string();
  Bytes addr = crypto::random_bytes(20), nonce = crypto::random_bytes(32);
  std::string rd = to_hex(addr) + std::string(24, '0') + to_hex(nonce);
  auto [rc, out] = run(exe.string() + " dev-tee --state " + state + " --pki --pki-evidence " + rd + " 2>/dev/null");
  ASSERT_EQ(rc, 0) << out;
  auto ev = json::parse(out).as_object();
  EXPECT_TRUE(ev.at("simulated").as_bool());
  EXPECT_EQ(ev.at("report_data").as_string(), rd);
  json::object report{{"signing_algo", "ecdsa"},         {"signing_address", to_hex(addr)},
                      {"request_nonce", to_hex(nonce)},  {"intel_quote", ev.at("quote")},
                      {"event_log", ev.at("event_log")}, {"info", ev.at("info")}};
  std::string report_path = (dir / "report.json").string();
  { std::ofstream(report_path) << json::serialize(report); }
  std::string verify =
      exe.string() + " verify attestation --offline --report " + report_path + " --nonce " + to_hex(nonce);

  auto [ok_rc, ok_out] = run(verify + " --trust-simulated " + state + " 2>&1");
  EXPECT_EQ(ok_rc, 0) << ok_out;
  EXPECT_NE(ok_out.find("summary: simulated hardware: not a security proof"), std::string::npos) << ok_out;
  EXPECT_NE(ok_out.find("PASS tdx.quote_signature [simulated]"), std::string::npos) << ok_out;
  EXPECT_NE(ok_out.find("PASS tdx.tcb_status [simulated]"), std::string::npos) << ok_out;

  auto [js_rc, js_out] = run(verify + " --trust-simulated " + state + " --json 2>/dev/null");
  EXPECT_EQ(js_rc, 0);
  auto js = json::parse(js_out).as_object();
  EXPECT_TRUE(js.at("simulated").as_bool());
  EXPECT_EQ(js.at("verdict").as_string(), "VERIFIED");

  // the same evidence and collateral without --trust-simulated: FAILED, nothing labelled simulated
  auto [bad_rc, bad_out] = run(verify + " --collateral " + state + "/collateral.json 2>&1");
  EXPECT_EQ(bad_rc, 1) << bad_out;
  EXPECT_NE(bad_out.find("FAIL tdx.pck_chain"), std::string::npos) << bad_out;
  EXPECT_EQ(bad_out.find("[simulated]"), std::string::npos) << bad_out;
  EXPECT_EQ(bad_out.find("simulated hardware"), std::string::npos) << bad_out;

  // --trust-simulated on a dir without a test PKI is a usage error
  auto [use_rc, use_out] = run(verify + " --trust-simulated " + dir.string() + " 2>&1");
  EXPECT_EQ(use_rc, 2) << use_out;
  std::filesystem::remove_all(dir);
}

// `dev-tee --pki --socket`: the real process, driven with the real DstackClient. Its GetQuote answer over our
// report_data verifies through DCAP with the state dir's root and collateral; Info matches the event log.
TEST(DevteePki, SocketServesVerifiableQuotes) {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path() / "private-inference";
  if (ec || !std::filesystem::exists(exe)) GTEST_SKIP() << "private-inference is not built next to the tests";
  auto dir = std::filesystem::temp_directory_path() / ("devtee_pki_sock_" + to_hex(crypto::random_bytes(6)));
  std::filesystem::create_directories(dir);
  const std::string sock = (dir / "dstack.sock").string(), state = (dir / "state").string();
  std::vector<std::string> args = {exe.string(), "dev-tee", "--socket",    sock,  "--state",
                                   state,        "--pki",   "--log-level", "warn"};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(::posix_spawn(&pid, args[0].c_str(), nullptr, nullptr, argv.data(), environ), 0);
  int status = 0;
  boost::asio::io_context ioc;
  tee::DstackClient client(ioc.get_executor(), *tee::parse_dstack_endpoint(sock), std::chrono::seconds(10));
  std::optional<json::object> version;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!version && std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) FAIL() << "dev-tee exited early with status " << status;
    try {
      version = run_co(ioc, client.version());
    } catch (const tee::DstackError&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  if (!version) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    FAIL() << "dev-tee did not answer on " << sock;
  }
  Bytes rd = crypto::random_bytes(64);
  auto q = run_co(ioc, client.get_quote(rd));
  auto info = run_co(ioc, client.info());
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "status " << status << " exited " << WIFEXITED(status) << " code " << WEXITSTATUS(status) << " signal "
      << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_FALSE(std::filesystem::exists(sock)) << "socket file left behind";

  EXPECT_TRUE(q.simulated);
  Bytes quote = *from_hex(q.quote_hex);
  EXPECT_TRUE(std::equal(rd.begin(), rd.end(), quote.begin() + verify::kTdReportDataOffset));
  auto col = verify::parse_collateral_json(run("cat " + state + "/collateral.json").second);
  col.simulated_root_der = load_or_create_test_pki(state, kNow).root_cert_der();
  auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
  auto r = verify::verify_dcap(quote, col, now.count());
  for (const auto& c : r.checks) EXPECT_EQ(c.status, Status::Pass) << c.id << ": " << c.detail;
  EXPECT_TRUE(r.verified);
  EXPECT_EQ(r.tcb_status, "UpToDate");
  col.simulated_root_der.reset();
  EXPECT_FALSE(verify::verify_dcap(quote, col, now.count()).verified);

  auto replay = verify::replay_event_log(verify::parse_event_log(json::parse(q.event_log)));
  auto parsed = verify::parse_quote(quote);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(replay.rtmr[i], parsed.td.rtmr[i]) << "rtmr" << i;
  EXPECT_TRUE(info.at("simulated").as_bool());
  auto tcb = json::parse(info.at("tcb_info").as_string()).as_object();
  auto events = verify::parse_event_log(json::parse(q.event_log));
  EXPECT_EQ(*verify::runtime_event_payload(events, "compose-hash", true),
            to_hex(crypto::sha256(std::string(tcb.at("app_compose").as_string()))));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace pi::devtee
