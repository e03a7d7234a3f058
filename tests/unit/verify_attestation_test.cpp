// Attestation-report verification end to end on recorded evidence: hardware (DCAP with the
// fixture collateral), binding (report_data), code (event-log replay, compose hash, policy) and
// the lenient encodings seen in the wild.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <fstream>
#include <sstream>

#include "crypto/hash.hpp"
#include "protocol/signing.hpp"
#include "verify/attestation.hpp"
#include "verify/encoding.hpp"
#include "verify/event_log.hpp"
#include "verify/policy.hpp"
#include "verify/render.hpp"
#include "verify/tdx_quote.hpp"

namespace pi::verify {
namespace {

namespace json = boost::json;

std::string read_file(const std::string& name) {
  std::ifstream f(std::string(PI_FIXTURES_DIR) + "/tdx/" + name, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

constexpr std::int64_t kNow = 1756900000;
std::string nonce01() {
  std::string s;
  for (int i = 0; i < 32; ++i) s += "01";
  return s;
}
// A real-looking ECDSA signer address for the sample (its report_data is a placeholder, 0x01 x 64).
const char* kEcdsaAddress = "0x1111111111111111111111111111111111111111";

// The vllm-proxy /v1/attestation/report shape, built from the recorded Phala deployment
// (tests/fixtures/tdx/vllm_proxy_sample_dstack.json).
json::object sample_report(const std::string& algo = "ecdsa", const std::string& address = kEcdsaAddress) {
  auto fx = json::parse(read_file("vllm_proxy_sample_dstack.json")).as_object();
  json::object r;
  r["signing_address"] = address;
  r["signing_algo"] = algo;
  r["request_nonce"] = nonce01();
  r["intel_quote"] = fx["quote"].as_object()["quote"];
  r["event_log"] = json::parse(fx["quote"].as_object()["event_log"].as_string());
  r["info"] = fx["info"];
  r["vm_config"] = "";
  r["nvidia_payload"] = nullptr;
  r["gpu_evidence"] = nullptr;
  r["gpu_evidence_error"] = "no GPU in this recording";
  r["simulated"] = false;
  return r;
}

AttestationOptions offline_opts() {
  AttestationOptions o;
  o.now = kNow;
  o.expected_nonce_hex = nonce01();
  o.expected_signing_algo = "ecdsa";
  o.collateral = parse_collateral_json(read_file("collateral_fmspc20a06f_2025-09.json"));
  return o;
}

Status status_of(const Report& r, std::string_view id) {
  const Check* c = r.find(id);
  EXPECT_NE(c, nullptr) << "missing check " << id;
  return c ? c->status : Status::Skipped;
}
std::string detail_of(const Report& r, std::string_view id) {
  const Check* c = r.find(id);
  return c ? c->detail : "";
}
std::string fact(const Report& r, std::string_view key) {
  for (const auto& [k, v] : r.facts)
    if (k == key) return v;
  return "";
}
// Every check passes except those named.
void expect_only_failures(const Report& r, std::initializer_list<std::string_view> failing) {
  for (const auto& c : r.checks) {
    bool expected_fail = std::find(failing.begin(), failing.end(), c.id) != failing.end();
    if (expected_fail)
      EXPECT_EQ(c.status, Status::Fail) << c.id << ": " << c.detail;
    else if (c.status == Status::Fail)
      ADD_FAILURE() << "unexpected failure " << c.id << ": " << c.detail;
  }
}

TEST(VerifyAttestation, SampleReportPassesEverythingButTheHonestBinding) {
  auto out = verify_attestation(sample_report(), offline_opts());
  const Report& r = out.report;
  // The sample's report_data is 0x01 x 64: a placeholder written by vllm-proxy's test harness,
  // not any real key's layout. Its nonce half equals our 0x01 x 32 nonce, but an ECDSA address
  // padded with zeros can never give 0x01 in bytes 20..31, so the key half must FAIL.
  expect_only_failures(r, {"binding.report_data"});
  EXPECT_NE(detail_of(r, "binding.report_data").find("signing-key half does not match"), std::string::npos)
      << detail_of(r, "binding.report_data");
  for (auto id : {"tdx.quote_format", "tdx.collateral_tcb_info", "tdx.collateral_qe_identity", "tdx.pck_chain",
                  "tdx.qe_report_signature", "tdx.qe_report_data", "tdx.qe_identity", "tdx.quote_signature",
                  "tdx.tcb_status", "tdx.td_debug", "tdx.tcb_policy", "binding.request_nonce", "binding.signing_algo",
                  "code.event_log", "code.rtmr", "code.compose_hash"})
    EXPECT_EQ(status_of(r, id), Status::Pass) << id << ": " << detail_of(r, id);
  EXPECT_EQ(status_of(r, "gpu.evidence"), Status::Skipped);
  EXPECT_NE(detail_of(r, "gpu.evidence").find("no GPU in this recording"), std::string::npos);
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(out.bound);
  EXPECT_EQ(fact(r, "tdx.tcb_status"), "UpToDate");
  EXPECT_EQ(fact(r, "app_id"), "ab84a54bdaf082be00ea40e8e37bdeb5c15c58de");
  EXPECT_EQ(fact(r, "compose_hash"), "62dd36d22b7d704aaa4d598226801ed4e6a3bfd17dde762b2efd9876768be800");
  EXPECT_EQ(fact(r, "os_image_hash"), "6809f73ca56b2dfba9918bdb9709608f30284af4fbb50e707e3270a0436f1657");
  EXPECT_NE(fact(r, "key_provider").find("\"name\":\"kms\""), std::string::npos);
  EXPECT_FALSE(fact(r, "docker_compose_file").empty());
  EXPECT_EQ(fact(r, "encoding.event_log"), "json (event_log)");
  EXPECT_EQ(fact(r, "encoding.info"), "json");
  EXPECT_EQ(fact(r, "event_log.format"), "full");
}

TEST(VerifyAttestation, LayoutMatchingKeyBindsTheSample) {
  // Synthetic check of the layout logic only: an Ed25519 "address" of 0x01 x 32 is exactly what
  // the placeholder report_data encodes (not a key anyone holds).
  auto opts = offline_opts();
  opts.expected_signing_algo = "ed25519";
  auto out = verify_attestation(sample_report("ed25519", nonce01()), opts);
  EXPECT_EQ(status_of(out.report, "binding.report_data"), Status::Pass) << detail_of(out.report, "binding.report_data");
  EXPECT_TRUE(out.report.ok());
  EXPECT_TRUE(out.report.complete());
  EXPECT_TRUE(out.bound);
}

TEST(VerifyAttestation, FlippedQuoteByteFailsAtTheQuoteSignature) {
  auto rep = sample_report("ed25519", nonce01());
  std::string q(rep["intel_quote"].as_string());
  q[568 * 2 + 1] = q[568 * 2 + 1] == '1' ? '0' : '1';  // byte 568 (first report_data byte)
  rep["intel_quote"] = q;
  auto opts = offline_opts();
  opts.expected_signing_algo = "ed25519";
  auto out = verify_attestation(rep, opts);
  // report_data changed too, so binding also notices; the hardware failure is the quote signature.
  expect_only_failures(out.report, {"tdx.quote_signature", "binding.report_data"});
  EXPECT_NE(detail_of(out.report, "tdx.quote_signature").find("signature invalid"), std::string::npos);
}

TEST(VerifyAttestation, WrongNonceIsAReplay) {
  auto opts = offline_opts();
  opts.expected_nonce_hex = std::string(64, 'a');
  opts.expected_signing_algo = "ed25519";
  auto out = verify_attestation(sample_report("ed25519", nonce01()), opts);
  expect_only_failures(out.report, {"binding.request_nonce", "binding.report_data"});
  EXPECT_NE(detail_of(out.report, "binding.request_nonce").find("not the nonce we sent"), std::string::npos);
  EXPECT_NE(detail_of(out.report, "binding.report_data").find("nonce half does not match"), std::string::npos);
}

TEST(VerifyAttestation, ExpiredCollateral) {
  auto opts = offline_opts();
  opts.now = 1759500000;
  auto out = verify_attestation(sample_report(), opts);
  EXPECT_EQ(status_of(out.report, "tdx.collateral_tcb_info"), Status::Fail);
  EXPECT_NE(detail_of(out.report, "tdx.collateral_tcb_info").find("TCB info expired"), std::string::npos);
}

TEST(VerifyAttestation, SgxQuoteIsRejected) {
  auto rep = sample_report();
  auto sgx = read_file("dcapqvl_sgx_quote.bin");
  rep["intel_quote"] = to_hex(as_bytes(sgx));
  auto opts = offline_opts();
  opts.collateral = parse_collateral_json(read_file("dcapqvl_sgx_quote_collateral.json"));
  opts.now = 1750330571 + 1000;
  auto out = verify_attestation(rep, opts);
  EXPECT_EQ(status_of(out.report, "tdx.quote_format"), Status::Fail);
  EXPECT_NE(detail_of(out.report, "tdx.quote_format").find("not a TDX quote"), std::string::npos);
  EXPECT_FALSE(out.report.ok());
}

TEST(VerifyAttestation, EditedEventLogEntryFails) {
  auto rep = sample_report("ed25519", nonce01());
  auto& log = rep["event_log"].as_array();
  // Claim a different app id without fixing the digest.
  for (auto& e : log)
    if (e.as_object()["event"] == "app-id") e.as_object()["event_payload"] = "00" + std::string(38, 'f');
  auto opts = offline_opts();
  opts.expected_signing_algo = "ed25519";
  auto out = verify_attestation(rep, opts);
  expect_only_failures(out.report, {"code.event_log", "code.rtmr"});
  EXPECT_NE(detail_of(out.report, "code.event_log").find("'app-id'"), std::string::npos);
  EXPECT_NE(detail_of(out.report, "code.rtmr").find("RTMR3"), std::string::npos);
}

TEST(VerifyAttestation, EditedBootDigestBreaksRtmr) {
  auto rep = sample_report("ed25519", nonce01());
  auto& e0 = rep["event_log"].as_array()[0].as_object();
  std::string d(e0["digest"].as_string());
  d[0] = d[0] == 'a' ? 'b' : 'a';
  e0["digest"] = d;
  auto opts = offline_opts();
  opts.expected_signing_algo = "ed25519";
  auto out = verify_attestation(rep, opts);
  expect_only_failures(out.report, {"code.rtmr"});
  EXPECT_NE(detail_of(out.report, "code.rtmr").find("RTMR0"), std::string::npos);
}

TEST(VerifyAttestation, ComposeFileThatDoesNotHashToTheEvent) {
  auto rep = sample_report("ed25519", nonce01());
  auto& ti = rep["info"].as_object()["tcb_info"].as_object();
  std::string compose(ti["app_compose"].as_string());
  compose.replace(compose.find("\"name\""), 6, "\"NAME\"");
  ti["app_compose"] = compose;
  auto opts = offline_opts();
  opts.expected_signing_algo = "ed25519";
  auto out = verify_attestation(rep, opts);
  expect_only_failures(out.report, {"code.compose_hash"});
  EXPECT_NE(detail_of(out.report, "code.compose_hash").find("but the measured compose-hash event is"),
            std::string::npos);
}

// Real dstack (Phala Cloud) launches the TD with MRCONFIGID = 0x01 || compose hash || 0 x 15: the verifier checks it
// against the measured compose-hash event.
TEST(VerifyAttestation, RealDstackMrConfigIdBindsTheComposeHash) {
  auto out = verify_attestation(sample_report(), offline_opts());
  EXPECT_EQ(status_of(out.report, "code.mr_config_id"), Status::Pass) << detail_of(out.report, "code.mr_config_id");
  EXPECT_EQ(fact(out.report, "mr_config_id"),
            "0162dd36d22b7d704aaa4d598226801ed4e6a3bfd17dde762b2efd9876768be800" + std::string(30, '0'));
  // dstack's own GetQuote answer (stripped log) binds its compose hash the same way
  AttestationOptions opts;
  opts.now = kNow;
  auto stripped = verify_attestation(json::parse(read_file("dstack_getquote_stripped.json")), opts);
  EXPECT_EQ(status_of(stripped.report, "code.mr_config_id"), Status::Pass)
      << detail_of(stripped.report, "code.mr_config_id");
}

TEST(VerifyAttestation, MrConfigIdOfAnotherComposeFails) {
  auto rep = sample_report("ed25519", nonce01());
  std::string q(rep["intel_quote"].as_string());
  const std::size_t at = std::size_t{48 + 184 + 1} * 2;  // first compose-hash byte of MRCONFIGID (hex digits)
  q[at] = q[at] == '6' ? '7' : '6';
  rep["intel_quote"] = q;
  auto opts = offline_opts();
  opts.expected_signing_algo = "ed25519";
  auto out = verify_attestation(rep, opts);
  // the quote signature covers MRCONFIGID, so the edit also breaks it
  expect_only_failures(out.report, {"tdx.quote_signature", "code.mr_config_id"});
  EXPECT_NE(detail_of(out.report, "code.mr_config_id").find("but the measured compose-hash event is"),
            std::string::npos);
  // bytes after the compose hash must be zero in dstack's form
  std::string q2(sample_report()["intel_quote"].as_string());
  q2[std::size_t{48 + 184 + 40} * 2] = '1';
  rep["intel_quote"] = q2;
  out = verify_attestation(rep, opts);
  EXPECT_EQ(status_of(out.report, "code.mr_config_id"), Status::Fail);
  EXPECT_NE(detail_of(out.report, "code.mr_config_id").find("non-zero bytes"), std::string::npos);
}

TEST(VerifyAttestation, ZeroMrConfigIdIsNotChecked) {
  // dstack's simulator (v0.5.5) leaves MRCONFIGID zero: nothing to compare, reported, not a failure
  json::object rep;
  rep["intel_quote"] = read_file("dstack_sim055_quote.hex").substr(0, 10012);
  rep["event_log"] = json::parse(read_file("dstack_sim055_eventlog.json"));
  AttestationOptions opts;
  opts.now = kNow;
  auto out = verify_attestation(rep, opts);
  const Check* c = out.report.find("code.mr_config_id");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->status, Status::Skipped);
  EXPECT_FALSE(c->enforced);
  EXPECT_NE(c->detail.find("zero"), std::string::npos);
}

TEST(VerifyAttestation, EncodingsJsonStringAndPythonLiteral) {
  auto fx = json::parse(read_file("vllm_proxy_sample_dstack.json")).as_object();
  auto rep = sample_report("ed25519", nonce01());
  rep["intel_quote"] = "0x" + std::string(rep["intel_quote"].as_string());
  rep["event_log"] = fx["quote"].as_object()["event_log"];  // JSON string
  // info as a Python-literal string (what str(dict) prints)
  std::string py = json::serialize(fx["info"]);
  // crude JSON → Python: only true/false/null differ for this data; keep double quotes (valid Python)
  rep["info"] = py;
  auto opts = offline_opts();
  opts.expected_signing_algo = "ed25519";
  auto out = verify_attestation(rep, opts);
  EXPECT_TRUE(out.report.ok()) << render_text(out.report, "attestation");
  EXPECT_EQ(fact(out.report, "encoding.quote"), "0x-hex (intel_quote)");
  EXPECT_EQ(fact(out.report, "encoding.event_log"), "json-string (event_log)");
  EXPECT_EQ(fact(out.report, "encoding.info"), "json-string");
}

TEST(VerifyAttestation, PythonLiteralInfo) {
  auto rep = sample_report("ed25519", nonce01());
  // Build a genuine Python repr: single-quoted strings, True/False.
  auto py_str = [](std::string_view s) {
    std::string o = "'";
    for (char c : s) {
      if (c == '\\')
        o += "\\\\";
      else if (c == '\'')
        o += "\\'";
      else if (c == '\n')
        o += "\\n";
      else
        o += c;
    }
    return o + "'";
  };
  std::function<std::string(const json::value&)> py = [&](const json::value& v) -> std::string {
    if (v.is_object()) {
      std::string s = "{";
      for (const auto& kv : v.get_object()) s += (s.size() > 1 ? ", " : "") + py_str(kv.key()) + ": " + py(kv.value());
      return s + "}";
    }
    if (v.is_array()) {
      std::string s = "[";
      for (const auto& x : v.get_array()) s += (s.size() > 1 ? ", " : "") + py(x);
      return s + "]";
    }
    if (v.is_string()) return py_str(v.get_string());
    if (v.is_bool()) return v.get_bool() ? "True" : "False";
    if (v.is_null()) return "None";
    return json::serialize(v);
  };
  rep["info"] = py(rep["info"]);
  rep.erase("event_log");  // forces the tcb_info.event_log path
  auto opts = offline_opts();
  opts.expected_signing_algo = "ed25519";
  auto out = verify_attestation(rep, opts);
  EXPECT_TRUE(out.report.ok()) << render_text(out.report, "attestation");
  EXPECT_EQ(fact(out.report, "encoding.info"), "python-literal-string");
  EXPECT_EQ(fact(out.report, "encoding.event_log"), "json (info.tcb_info.event_log)");
}

TEST(VerifyAttestation, PolicyPins) {
  auto opts = offline_opts();
  opts.expected_signing_algo = "ed25519";
  opts.policy = parse_policy_json(R"({
    "allowed_tcb_statuses": ["UpToDate"],
    "compose_hashes": ["62dd36d22b7d704aaa4d598226801ed4e6a3bfd17dde762b2efd9876768be800"],
    "os_image_hashes": ["0000000000000000000000000000000000000000000000000000000000000000"],
    "mrtd": ["F06DFDA6DCE1CF904D4E2BAB1DC370634CF95CEFA2CEB2DE2EEE127C9382698090D7A4A13E14C536EC6C9C3C8FA87077"]
  })");
  auto out = verify_attestation(sample_report("ed25519", nonce01()), opts);
  expect_only_failures(out.report, {"code.policy.os_image_hash"});
  EXPECT_EQ(status_of(out.report, "code.policy.compose_hash"), Status::Pass);
  EXPECT_EQ(status_of(out.report, "code.policy.mrtd"), Status::Pass);
  EXPECT_EQ(status_of(out.report, "tdx.tcb_policy"), Status::Pass);
}

TEST(VerifyAttestation, BadPolicyIsAClearError) {
  EXPECT_THROW(parse_policy_json("{\"mrtd\": [\"abc\"]}"), std::runtime_error);
  EXPECT_THROW(parse_policy_json("{\"mrtdd\": []}"), std::runtime_error);
  EXPECT_THROW(parse_policy_json("nope"), std::runtime_error);
}

TEST(VerifyAttestation, OfflineWithoutCollateralIsIncompleteNotVerified) {
  auto opts = offline_opts();
  opts.collateral.reset();
  opts.expected_signing_algo = "ed25519";
  auto out = verify_attestation(sample_report("ed25519", nonce01()), opts);
  EXPECT_TRUE(out.report.ok());
  EXPECT_FALSE(out.report.complete());
  EXPECT_EQ(exit_code(out.report), 3);
  EXPECT_EQ(status_of(out.report, "tdx.quote_signature"), Status::Pass);
  EXPECT_EQ(status_of(out.report, "tdx.pck_chain"), Status::Skipped);
  EXPECT_NE(detail_of(out.report, "tdx.pck_chain").find("offline"), std::string::npos);
}

TEST(VerifyAttestation, GpuPayloadIsHandedToTheGpuChecks) {
  // A JSON-string nvidia_payload reaches check_gpu_evidence (docs/verifier-gpu.md); evidence that
  // does not decode must fail there, enforced, instead of being skipped.
  auto rep = sample_report("ed25519", nonce01());
  rep["nvidia_payload"] =
      R"({"nonce":")" + nonce01() +
      R"(","arch":"HOPPER","evidence_list":[{"certificate":"bm90IGEgY2VydA==","evidence":"AAAA","arch":"HOPPER"}]})";
  auto opts = offline_opts();
  opts.expected_signing_algo = "ed25519";
  auto out = verify_attestation(rep, opts);
  EXPECT_EQ(fact(out.report, "encoding.nvidia_payload"), "json-string");
  bool gpu_fail = false;
  for (const auto& c : out.report.checks)
    if (c.group == Group::Gpu && c.status == Status::Fail && c.enforced) gpu_fail = true;
  EXPECT_TRUE(gpu_fail) << render_text(out.report, "attestation");
  EXPECT_EQ(out.report.find("gpu.evidence"), nullptr);
  EXPECT_FALSE(out.report.ok());
}

TEST(VerifyAttestation, DstackGetQuoteAnswerWithStrippedLog) {
  // dstack's own GetQuote answer (no signing key, report_data is a text statement): the code
  // checks still replay the stripped log into the quote's RTMRs; binding fails for lack of a key.
  auto doc = json::parse(read_file("dstack_getquote_stripped.json"));
  AttestationOptions opts;
  opts.now = kNow;
  auto out = verify_attestation(doc, opts);
  EXPECT_EQ(status_of(out.report, "code.event_log"), Status::Pass) << detail_of(out.report, "code.event_log");
  EXPECT_EQ(status_of(out.report, "code.rtmr"), Status::Pass) << detail_of(out.report, "code.rtmr");
  EXPECT_EQ(fact(out.report, "event_log.format"), "stripped (runtime digests empty, recomputed)");
  EXPECT_EQ(fact(out.report, "encoding.quote"), "hex (quote)");
  EXPECT_EQ(status_of(out.report, "tdx.quote_signature"), Status::Pass);
  EXPECT_EQ(status_of(out.report, "tdx.pck_chain"), Status::Skipped);  // no collateral, offline
  EXPECT_EQ(status_of(out.report, "binding.report_data"), Status::Fail);
  EXPECT_EQ(status_of(out.report, "code.compose_hash"), Status::Fail);  // no Info with app_compose
  EXPECT_FALSE(out.report.ok());
}

TEST(VerifyAttestation, GarbageNeverCrashes) {
  auto opts = offline_opts();
  for (const char* doc : {"null", "[]", "{}", R"({"intel_quote": "zz"})", R"({"intel_quote": "0x"})",
                          R"({"intel_quote": "00", "event_log": "{'a': }", "info": "[1,"})",
                          R"({"intel_quote": 5, "signing_address": 7, "request_nonce": []})"}) {
    auto out = verify_attestation(json::parse(doc), opts);
    EXPECT_FALSE(out.report.ok()) << doc;
  }
}

TEST(VerifyAttestation, AFieldOfTheWrongTypeFailsNamingIt) {
  // A present field with the wrong JSON type is a malformed report, never a skipped check (a non-string
  // signing_public_key used to skip binding.signing_key silently).
  for (const char* field : {"signing_public_key", "signing_address", "request_nonce", "intel_quote", "simulated",
                            "nvidia_payload", "gpu_evidence", "gpu_evidence_error", "tls_cert_fingerprint"}) {
    auto rep = sample_report();
    rep[field] = 42;
    auto out = verify_attestation(rep, offline_opts());
    EXPECT_EQ(status_of(out.report, "attestation.format"), Status::Fail) << field;
    EXPECT_NE(detail_of(out.report, "attestation.format").find(field), std::string::npos)
        << detail_of(out.report, "attestation.format");
    EXPECT_FALSE(out.report.ok());
    EXPECT_FALSE(out.bound);
  }
  // The documented variants are not type errors: a dstack GetQuote object as "quote", an empty gpu_evidence_info.
  auto rep = sample_report();
  rep["quote"] = json::object{{"quote", rep["intel_quote"]}};
  rep.erase("intel_quote");
  rep["gpu_evidence_info"] = json::object{};
  auto out = verify_attestation(rep, offline_opts());
  EXPECT_EQ(out.report.find("attestation.format"), nullptr);
  EXPECT_EQ(fact(out.report, "encoding.quote"), "hex (quote.quote)");
  EXPECT_EQ(status_of(out.report, "tdx.quote_signature"), Status::Pass);
  EXPECT_EQ(status_of(out.report, "code.rtmr"), Status::Pass);
}

TEST(VerifyEventLog, SimulatorLogReproducesItsQuote) {
  auto q = parse_quote(*from_hex(read_file("dstack_sim055_quote.hex").substr(0, 10012)));
  auto events = parse_event_log(json::parse(read_file("dstack_sim055_eventlog.json")));
  auto r = replay_event_log(events);
  EXPECT_TRUE(r.problems.empty());
  EXPECT_EQ(r.stripped, 0u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(to_hex(r.rtmr[i]), to_hex(q.td.rtmr[i])) << i;
}

TEST(VerifyEventLog, StrippedLogIsRecomputed) {
  auto fx = json::parse(read_file("dstack_getquote_stripped.json")).as_object();
  auto q = parse_quote(*from_hex(fx["quote"].as_string()));
  auto d = decode_lenient(fx["event_log"]);
  EXPECT_EQ(d.form, "json-string");
  auto events = parse_event_log(d.value);
  auto r = replay_event_log(events);
  EXPECT_TRUE(r.problems.empty());
  EXPECT_EQ(r.stripped, 9u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(to_hex(r.rtmr[i]), to_hex(q.td.rtmr[i])) << i;
  EXPECT_EQ(runtime_event_payload(events, "storage-fs", false), "zfs");
}

TEST(VerifyEventLog, RejectsMalformedEntries) {
  EXPECT_THROW(parse_event_log(json::parse("{}")), std::runtime_error);
  EXPECT_THROW(parse_event_log(json::parse(R"([{"imr": 7, "event_type": 1}])")), std::runtime_error);
  EXPECT_THROW(parse_event_log(json::parse(R"([{"imr": 0, "event_type": 1, "digest": "abcd"}])")), std::runtime_error);
  EXPECT_THROW(parse_event_log(json::parse(R"([{"imr": "x", "event_type": 1}])")), std::runtime_error);
}

TEST(VerifyEncoding, PythonLiterals) {
  auto v = parse_python_literal("{'a': True, 'b': None, 'c': [1, -2.5, 'x\\'y'], \"d\": (False,), 'e': '\\u00e9'}");
  EXPECT_EQ(json::serialize(v), R"({"a":true,"b":null,"c":[1,-2.5E0,"x'y"],"d":[false],"e":"é"})");
  EXPECT_THROW(parse_python_literal("{'a': }"), DecodeError);
  EXPECT_THROW(parse_python_literal("'unterminated"), DecodeError);
  EXPECT_THROW(parse_python_literal(std::string(1000, '[')), DecodeError);
  EXPECT_THROW(decode_hex_field("0x"), DecodeError);
  EXPECT_THROW(decode_hex_field("abc"), DecodeError);
  EXPECT_EQ(decode_hex_field(" 0xAB\n").form, "0x-hex");
}

TEST(VerifyBinding, NearLayout) {
  Bytes addr(20, 0xaa), fp(32, 0xbb);
  protocol::Nonce nonce{};
  nonce.fill(0xcc);
  auto rd = protocol::make_report_data_tls(addr, fp, nonce);
  Bytes m = addr;
  m.insert(m.end(), fp.begin(), fp.end());
  auto h = crypto::sha256(ByteView(m));
  EXPECT_TRUE(std::equal(h.begin(), h.end(), rd.begin()));
  EXPECT_TRUE(std::equal(nonce.begin(), nonce.end(), rd.begin() + 32));
}

TEST(VerifyRender, JsonDocumentIsStable) {
  auto out = verify_attestation(sample_report(), offline_opts());
  auto j = render_json(out.report, "attestation");
  EXPECT_EQ(j["schema"], "private-inference.verify/1");
  EXPECT_EQ(j["verdict"], "FAILED");
  EXPECT_EQ(j["exit_code"], 1);
  auto& checks = j["checks"].as_array();
  ASSERT_FALSE(checks.empty());
  // grouped: hardware first, gpu last here
  EXPECT_EQ(checks.front().as_object().at("group"), "hardware");
  EXPECT_EQ(checks.back().as_object().at("group"), "gpu");
  auto text = render_text(out.report, "attestation");
  EXPECT_NE(text.find("FAIL binding.report_data"), std::string::npos);
  EXPECT_NE(text.find("summary: attestation FAILED"), std::string::npos);
}

}  // namespace
}  // namespace pi::verify
