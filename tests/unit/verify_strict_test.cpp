// The verifier cannot be talked round (issue #11 item 7): evidence that was removed, bytes outside every
// signature, a multi-instance list that disagrees with the top level, signature encodings the signer never
// emits, and facts shown without saying whether anything checked them.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <fstream>
#include <set>
#include <sstream>

#include "crypto/hash.hpp"
#include "protocol/signing.hpp"
#include "protocol/tdx_quote.hpp"
#include "verify/attestation.hpp"
#include "verify/policy.hpp"
#include "verify/render.hpp"
#include "verify/response.hpp"

#include "test_support.hpp"

namespace pi::verify {
namespace {

namespace json = boost::json;

std::string tdx_fixture(const std::string& name) {
  std::ifstream f(std::string(PI_FIXTURES_DIR) + "/tdx/" + name, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

constexpr std::int64_t kNow = 1756900000;  // inside the fixture collateral's window and every GPU fixture cert's
const std::string kNonce01 = [] {
  std::string s;
  for (int i = 0; i < 32; ++i) s += "01";
  return s;
}();
constexpr const char* kNvatNonce = "e97b23a1718095a0e9e35edca810768c70a6a5a389b705e753b197912bc11576";

// The recorded Phala report in the vllm-proxy shape with the synthetic Ed25519 "key" 01..01 that the placeholder
// report_data binds: every TDX/binding/code check passes.
json::object verifying_report() {
  auto fx = json::parse(tdx_fixture("vllm_proxy_sample_dstack.json")).as_object();
  json::object r;
  r["signing_address"] = kNonce01;
  r["signing_algo"] = "ed25519";
  r["request_nonce"] = kNonce01;
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

AttestationOptions opts() {
  AttestationOptions o;
  o.now = kNow;
  o.expected_nonce_hex = kNonce01;
  o.expected_signing_algo = "ed25519";
  o.collateral = parse_collateral_json(tdx_fixture("collateral_fmspc20a06f_2025-09.json"));
  return o;
}

Status status(const Report& r, std::string_view id) {
  const Check* c = r.find(id);
  EXPECT_NE(c, nullptr) << "missing check " << id;
  return c ? c->status : Status::Skipped;
}
std::string detail(const Report& r, std::string_view id) {
  const Check* c = r.find(id);
  return c ? c->detail : "<no check " + std::string(id) + ">";
}

// The recorded 4-GPU Hopper evidence (nvat_multi_gpu_hopper.json), its nonce as the report's nonce. The quote's
// report_data binds nonce 01..01, so binding fails here: these tests look at the GPU group only.
json::object gpu_report(std::size_t keep = 4) {
  auto items = json::parse(testsupport::nvidia_fixture("nvat_multi_gpu_hopper.json")).as_array();
  items.resize(keep);
  auto r = verifying_report();
  r["request_nonce"] = kNvatNonce;
  json::object payload{{"nonce", kNvatNonce}, {"evidence_list", items}, {"arch", "HOPPER"}};
  r["nvidia_payload"] = json::serialize(payload);
  r["gpu_evidence_error"] = nullptr;
  return r;
}
AttestationOptions gpu_opts() {
  auto o = opts();
  o.expected_nonce_hex = kNvatNonce;
  return o;
}

// ------------------------------------------------------------------------------------------- 1. GPU count

TEST(VerifyStrictGpu, VerifiedGpusAreCountedAndShown) {
  auto out = verify_attestation(gpu_report(), gpu_opts());
  ASSERT_TRUE(out.report.gpus.has_value());
  EXPECT_EQ(out.report.gpus->verified, 4);
  EXPECT_EQ(out.report.gpus->evidence_items, 4);
  EXPECT_EQ(out.report.gpus->architectures, (std::vector<std::string>{"HOPPER", "HOPPER", "HOPPER", "HOPPER"}));
  auto text = render_text(out.report, "attestation");
  EXPECT_NE(text.find("summary: GPUs verified: 4 (HOPPER, HOPPER, HOPPER, HOPPER) of 4 evidence item(s)"),
            std::string::npos)
      << text;
  auto j = render_json(out.report, "attestation");
  EXPECT_EQ(j.at("gpus").at("verified"), 4);
  EXPECT_EQ(j.at("gpus").at("architectures").as_array().size(), 4u);
  EXPECT_TRUE(j.at("gpus").at("required").is_null());
}

TEST(VerifyStrictGpu, ZeroGpusIsVisibleNotSilent) {
  auto out = verify_attestation(verifying_report(), opts());
  EXPECT_TRUE(out.report.ok());  // nothing requires GPUs here
  ASSERT_TRUE(out.report.gpus.has_value());
  EXPECT_EQ(out.report.gpus->verified, 0);
  auto text = render_text(out.report, "attestation");
  EXPECT_NE(text.find("summary: GPUs verified: 0 -- no GPU evidence: no GPU in this recording"), std::string::npos)
      << text;
  auto j = render_json(out.report, "attestation");
  EXPECT_EQ(j.at("gpus").at("verified"), 0);
  EXPECT_EQ(j.at("gpus").at("evidence_items"), 0);
}

TEST(VerifyStrictGpu, DeletedPayloadFailsWhenGpusAreRequired) {
  auto o = opts();
  o.require_gpus = 1;
  auto out = verify_attestation(verifying_report(), o);
  EXPECT_EQ(status(out.report, "gpu.required"), Status::Fail);
  EXPECT_NE(detail(out.report, "gpu.required").find("0 GPU(s) verified; at least 1 required"), std::string::npos)
      << detail(out.report, "gpu.required");
  EXPECT_FALSE(out.report.ok());
  EXPECT_EQ(exit_code(out.report), 1);
}

TEST(VerifyStrictGpu, DeletedEvidenceItemFailsTheCount) {
  auto o = gpu_opts();
  o.require_gpus = 4;
  EXPECT_EQ(status(verify_attestation(gpu_report(4), o).report, "gpu.required"), Status::Pass);
  auto out = verify_attestation(gpu_report(3), o);
  EXPECT_EQ(out.report.gpus->verified, 3);
  EXPECT_EQ(status(out.report, "gpu.required"), Status::Fail);
  EXPECT_NE(detail(out.report, "gpu.required").find("3 GPU(s) verified"), std::string::npos);
}

TEST(VerifyStrictGpu, AGpuThatDoesNotVerifyIsNotCounted) {
  auto rep = gpu_report(2);
  auto o = gpu_opts();
  o.require_gpus = 2;
  // Another nonce: both items fail their nonce check, nothing counts.
  o.expected_nonce_hex = std::string(64, 'a');
  auto out = verify_attestation(rep, o);
  EXPECT_EQ(out.report.gpus->verified, 0);
  EXPECT_EQ(status(out.report, "gpu.required"), Status::Fail);
}

TEST(VerifyStrictGpu, PolicyMinCountAndArchitectures) {
  auto pol = parse_policy_json(R"({"gpu": {"min_count": 2, "allowed_architectures": ["blackwell"]}})");
  EXPECT_EQ(pol.gpu_min_count, 2);
  ASSERT_TRUE(pol.gpu_allowed_architectures);
  EXPECT_EQ(*pol.gpu_allowed_architectures, std::vector<std::string>{"BLACKWELL"});
  auto o = gpu_opts();
  o.policy = pol;
  auto out = verify_attestation(gpu_report(1), o);
  EXPECT_EQ(status(out.report, "gpu.required"), Status::Fail);
  EXPECT_EQ(status(out.report, "gpu.architectures"), Status::Fail);
  EXPECT_NE(detail(out.report, "gpu.architectures").find("HOPPER, not in the policy"), std::string::npos)
      << detail(out.report, "gpu.architectures");
  o.policy = parse_policy_json(R"({"gpu": {"min_count": 1, "allowed_architectures": ["HOPPER", "BLACKWELL"]}})");
  out = verify_attestation(gpu_report(1), o);
  EXPECT_EQ(status(out.report, "gpu.required"), Status::Pass);
  EXPECT_EQ(status(out.report, "gpu.architectures"), Status::Pass);
  // --require-gpu and the policy: the larger wins.
  o.require_gpus = 3;
  EXPECT_EQ(verify_attestation(gpu_report(2), o).report.gpus->required, 3);
}

TEST(VerifyStrictGpu, BadGpuPolicyIsAClearError) {
  for (const char* p : {R"({"gpu": 1})", R"({"gpu": {"min": 1}})", R"({"gpu": {"min_count": -1}})",
                        R"({"gpu": {"min_count": "2"}})", R"({"gpu": {"allowed_architectures": "HOPPER"}})"})
    EXPECT_THROW(parse_policy_json(p), std::runtime_error) << p;
  try {
    parse_policy_json(R"({"gpu": {"allowed_architectures": [1]}})");
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("policy.gpu.allowed_architectures"), std::string::npos) << e.what();
  }
}

TEST(VerifyStrictGpu, GpuEvidenceArrayIsReadWhenNvidiaPayloadIsDeleted) {
  auto rep = gpu_report(2);
  auto payload = json::parse(rep["nvidia_payload"].as_string()).as_object();
  json::array items;
  for (auto& it : payload["evidence_list"].as_array()) {
    auto o = it.as_object();
    o["nonce"] = kNvatNonce;
    items.push_back(o);
  }
  rep["gpu_evidence"] = items;
  rep["nvidia_payload"] = nullptr;
  auto out = verify_attestation(rep, gpu_opts());
  EXPECT_EQ(out.report.gpus->verified, 2);
}

TEST(VerifyStrictGpu, NvidiaPayloadAndGpuEvidenceMustAgree) {
  auto rep = gpu_report(2);
  auto all = json::parse(testsupport::nvidia_fixture("nvat_multi_gpu_hopper.json")).as_array();
  rep["gpu_evidence"] = json::array{all[0], all[2]};  // not the items of nvidia_payload
  auto out = verify_attestation(rep, gpu_opts());
  EXPECT_EQ(status(out.report, "gpu.evidence_consistent"), Status::Fail);
  EXPECT_EQ(out.report.gpus->verified, 0);
  rep["gpu_evidence"] = json::array{all[0], all[1]};
  out = verify_attestation(rep, gpu_opts());
  EXPECT_EQ(status(out.report, "gpu.evidence_consistent"), Status::Pass);
  EXPECT_EQ(out.report.gpus->verified, 2);
}

// ------------------------------------------------------------------------------ 2. bytes after the quote

TEST(VerifyStrictQuote, RecordedZeroPaddingIsAcceptedAndNoted) {
  auto out = verify_attestation(verifying_report(), opts());
  EXPECT_EQ(status(out.report, "tdx.quote_format"), Status::Pass);
  EXPECT_NE(detail(out.report, "tdx.quote_format").find("70 of them zero padding"), std::string::npos);
  bool noted = false;
  for (const auto& [k, v] : out.report.facts) noted = noted || (k == "tdx.quote_padding" && v.find("70 zero") == 0);
  EXPECT_TRUE(noted);
  EXPECT_TRUE(out.report.ok());
}

TEST(VerifyStrictQuote, NonZeroTrailingBytesAreRejected) {
  auto rep = verifying_report();
  std::string q(rep["intel_quote"].as_string());
  rep["intel_quote"] = q + "00";  // more zero padding: still fine
  EXPECT_EQ(status(verify_attestation(rep, opts()).report, "tdx.quote_format"), Status::Pass);
  for (std::string tail : {std::string("01"), std::string("0000ff00"), std::string("deadbeef")}) {
    rep["intel_quote"] = q + tail;
    auto out = verify_attestation(rep, opts());
    EXPECT_EQ(status(out.report, "tdx.quote_format"), Status::Fail) << tail;
    EXPECT_NE(detail(out.report, "tdx.quote_format").find("not zero padding"), std::string::npos)
        << detail(out.report, "tdx.quote_format");
    EXPECT_FALSE(out.report.ok());
  }
  // The one byte of padding inside the recorded 70 that is changed fails too.
  auto raw = *from_hex(q);
  raw[raw.size() - 35] = 0x80;
  rep["intel_quote"] = to_hex(raw);
  EXPECT_EQ(status(verify_attestation(rep, opts()).report, "tdx.quote_format"), Status::Fail);
}

TEST(VerifyStrictQuote, TrailingBytesRuleInTheLayout) {
  auto raw = *from_hex(verifying_report()["intel_quote"].as_string());
  auto q = protocol::tdx::parse_quote(raw);
  auto t = protocol::tdx::trailing_bytes(raw, q);
  EXPECT_EQ(t.count, 70u);
  EXPECT_TRUE(t.all_zero);
  EXPECT_EQ(protocol::tdx::check_trailing_bytes(raw, q), 70u);
  raw.push_back(7);
  t = protocol::tdx::trailing_bytes(raw, q);
  EXPECT_FALSE(t.all_zero);
  EXPECT_EQ(t.first_nonzero_offset, raw.size() - 1);
  EXPECT_THROW(protocol::tdx::check_trailing_bytes(raw, q), protocol::tdx::QuoteParseError);
  raw.resize(q.length);
  EXPECT_EQ(protocol::tdx::check_trailing_bytes(raw, q), 0u);
}

// --------------------------------------------------------------------------------- 3. all_attestations

json::object with_all(json::object top, json::array entries) {
  top["all_attestations"] = std::move(entries);
  return top;
}

TEST(VerifyStrictInstances, TopLevelCopyPasses) {
  auto top = verifying_report();
  auto out = verify_attestation(with_all(top, {top}), opts());
  EXPECT_EQ(status(out.report, "all_attestations.0"), Status::Pass);
  EXPECT_EQ(status(out.report, "all_attestations.top_level"), Status::Pass);
  EXPECT_TRUE(out.report.ok());
  EXPECT_TRUE(out.report.complete());
}

TEST(VerifyStrictInstances, EveryOtherEntryIsVerifiedLikeTheTopLevel) {
  auto top = verifying_report();
  auto other = top;
  other["vm_config"] = "{}";  // differs: verified on its own, and it verifies
  auto bad = top;
  std::string q(bad["intel_quote"].as_string());
  q[1200] = q[1200] == '0' ? '1' : '0';  // inside the TD report: the quote signature breaks
  bad["intel_quote"] = q;
  auto stale = top;
  stale["request_nonce"] = std::string(64, 'b');  // another nonce: a replayed instance
  auto out = verify_attestation(with_all(top, {top, other, bad, stale}), opts());
  const Report& r = out.report;
  EXPECT_EQ(status(r, "all_attestations.0"), Status::Pass);
  EXPECT_EQ(status(r, "all_attestations.1"), Status::Pass) << detail(r, "all_attestations.1");
  EXPECT_NE(detail(r, "all_attestations.1").find("VERIFIED"), std::string::npos);
  EXPECT_EQ(status(r, "all_attestations.2"), Status::Fail);
  EXPECT_NE(detail(r, "all_attestations.2").find("tdx.quote_signature"), std::string::npos)
      << detail(r, "all_attestations.2");
  EXPECT_EQ(status(r, "all_attestations.3"), Status::Fail);
  EXPECT_NE(detail(r, "all_attestations.3").find("binding.request_nonce"), std::string::npos)
      << detail(r, "all_attestations.3");
  EXPECT_EQ(status(r, "all_attestations.top_level"), Status::Pass);
  EXPECT_FALSE(r.ok());
  for (const auto& c : r.checks)
    if (c.id.rfind("all_attestations", 0) == 0) {
      EXPECT_EQ(c.group, Group::Instances) << c.id;
    }
  // each entry is listed in the facts
  std::set<std::string> keys;
  for (const auto& [k, v] : r.facts) keys.insert(k);
  EXPECT_TRUE(keys.count("all_attestations.1.signing_address"));
  EXPECT_TRUE(keys.count("all_attestations.1.gpus_verified"));
}

TEST(VerifyStrictInstances, TopLevelMissingFromTheListFails) {
  auto top = verifying_report();
  auto other = top;
  other["vm_config"] = "{}";
  auto out = verify_attestation(with_all(top, {other}), opts());
  EXPECT_EQ(status(out.report, "all_attestations.top_level"), Status::Fail);
  EXPECT_FALSE(out.report.ok());
  out = verify_attestation(with_all(top, {}), opts());
  EXPECT_EQ(status(out.report, "all_attestations.top_level"), Status::Fail);
}

TEST(VerifyStrictInstances, MemberOrderDoesNotMatterButNestingAndGarbageFail) {
  auto top = verifying_report();
  json::object reordered;
  std::vector<std::string> keys;
  for (const auto& kv : top) keys.emplace_back(kv.key());
  for (auto it = keys.rbegin(); it != keys.rend(); ++it) reordered[*it] = top[*it];
  auto nested = with_all(top, {top});
  auto out = verify_attestation(with_all(top, {reordered, nested, json::value(5)}), opts());
  EXPECT_EQ(status(out.report, "all_attestations.0"), Status::Pass);
  EXPECT_NE(detail(out.report, "all_attestations.0").find("identical"), std::string::npos);
  EXPECT_EQ(status(out.report, "all_attestations.1"), Status::Fail);
  EXPECT_EQ(status(out.report, "all_attestations.2"), Status::Fail);
}

// ------------------------------------------------------------------------------------ 4. ECDSA encoding

const std::string kRequest = R"({"model":"m"})";
const std::string kResponse = R"({"id":"chatcmpl-1"})";

// secp256k1 group order n, big-endian.
constexpr std::uint8_t kOrder[32] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                     0xff, 0xff, 0xff, 0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48,
                                     0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41};

// The same signature with s replaced by n - s and the recovery id flipped: recovers the same key.
Bytes high_s(Bytes sig) {
  int borrow = 0;
  for (int i = 31; i >= 0; --i) {
    int d = kOrder[i] - sig[32 + i] - borrow;
    borrow = d < 0;
    sig[32 + i] = static_cast<std::uint8_t>(d + (borrow ? 256 : 0));
  }
  sig[64] = sig[64] == 27 ? 28 : 27;
  return sig;
}

json::object ecdsa_record(const protocol::SigningIdentity& id, const std::string& sig_hex) {
  auto rec = id.sign(crypto::sha256(kRequest), crypto::sha256(kResponse));
  return {{"text", rec.text()},
          {"request_hash", to_hex(rec.request_hash)},
          {"response_hash", to_hex(rec.response_hash)},
          {"signing_algo", "ecdsa"},
          {"signature", sig_hex},
          {"signing_address", id.signing_address(protocol::SigningAlgo::Ecdsa)}};
}

AttestationOutcome bound(const std::string& address) {
  AttestationOutcome a;
  a.signing_address = address;
  a.bound = true;
  return a;
}

Report check(const protocol::SigningIdentity& id, const Bytes& sig, ResponseOptions o = {}) {
  Report r;
  check_response(kRequest, kResponse, ecdsa_record(id, "0x" + to_hex(sig)), "ecdsa",
                 bound(id.signing_address(protocol::SigningAlgo::Ecdsa)), o, r);
  return r;
}

TEST(VerifyStrictEcdsa, OurSignerEmitsLowSAndV27Or28) {
  for (int i = 0; i < 32; ++i) {
    auto id = protocol::SigningIdentity::random();
    auto rec = id.sign(crypto::sha256(std::to_string(i)), crypto::sha256(kResponse));
    Bytes sig(rec.ecdsa_signature.begin(), rec.ecdsa_signature.end());
    EXPECT_EQ(ecdsa_signature_form_problem(sig, {}), "");
    EXPECT_TRUE(sig[64] == 27 || sig[64] == 28);
  }
}

TEST(VerifyStrictEcdsa, HighSIsRejectedEvenThoughItRecoversTheKey) {
  auto id = protocol::SigningIdentity::random();
  auto rec = id.sign(crypto::sha256(kRequest), crypto::sha256(kResponse));
  Bytes sig(rec.ecdsa_signature.begin(), rec.ecdsa_signature.end());
  EXPECT_EQ(status(check(id, sig), "response.signature"), Status::Pass);
  Bytes twin = high_s(sig);
  // The twin is a valid signature by the same key (libsecp256k1's recovery accepts it) ...
  EXPECT_EQ(crypto::personal_recover(rec.text(), twin), id.ecdsa().address());
  // ... but not one our signer can have produced.
  for (bool compat : {false, true}) {
    ResponseOptions o;
    o.accept_ecdsa_v01 = compat;
    auto r = check(id, twin, o);
    EXPECT_EQ(status(r, "response.signature"), Status::Fail);
    EXPECT_NE(detail(r, "response.signature").find("high-s"), std::string::npos) << detail(r, "response.signature");
    EXPECT_EQ(status(r, "response.key_bound"), Status::Fail);
  }
}

TEST(VerifyStrictEcdsa, V0Or1NeedsTheCompatibilityOption) {
  auto id = protocol::SigningIdentity::random();
  auto rec = id.sign(crypto::sha256(kRequest), crypto::sha256(kResponse));
  Bytes sig(rec.ecdsa_signature.begin(), rec.ecdsa_signature.end());
  sig[64] = static_cast<std::uint8_t>(sig[64] - 27);
  auto r = check(id, sig);
  EXPECT_EQ(status(r, "response.signature"), Status::Fail);
  EXPECT_NE(detail(r, "response.signature").find("--accept-ecdsa-v01"), std::string::npos);
  ResponseOptions o;
  o.accept_ecdsa_v01 = true;
  EXPECT_EQ(status(check(id, sig, o), "response.signature"), Status::Pass);
  for (std::uint8_t v : {2, 3, 29, 30, 35, 255}) {
    sig[64] = v;
    EXPECT_EQ(status(check(id, sig, o), "response.signature"), Status::Fail) << int(v);
  }
}

TEST(VerifyStrictEcdsa, SpecVectorsOfAcceptedAndRejectedForms) {
  std::ifstream f(std::string(PI_VECTORS_DIR) + "/ecdsa_forms.json");
  std::stringstream ss;
  ss << f.rdbuf();
  auto doc = json::parse(ss.str()).as_object();
  const std::string text(doc.at("text").as_string());
  const std::string address(doc.at("signing_address").as_string());
  ASSERT_EQ(text, protocol::signed_text(to_hex(crypto::sha256("{}")), to_hex(crypto::sha256("{}"))));
  ASSERT_EQ(doc.at("forms").as_array().size(), 4u);
  for (const auto& fv : doc.at("forms").as_array()) {
    const auto& form = fv.as_object();
    json::object rec{{"text", text},
                     {"request_hash", to_hex(crypto::sha256("{}"))},
                     {"response_hash", to_hex(crypto::sha256("{}"))},
                     {"signing_algo", "ecdsa"},
                     {"signature", form.at("signature")},
                     {"signing_address", address}};
    for (bool compat : {false, true}) {
      ResponseOptions o;
      o.accept_ecdsa_v01 = compat;
      Report r;
      check_response("{}", "{}", rec, "ecdsa", bound(address), o, r);
      bool want = form.at(compat ? "accept_with_v01_compat" : "accept").as_bool();
      EXPECT_EQ(status(r, "response.signature"), want ? Status::Pass : Status::Fail)
          << form.at("name").as_string() << " compat=" << compat << ": " << detail(r, "response.signature");
    }
  }
}

// ------------------------------------------------------------------------- 5. every fact has a status

void expect_every_fact_has_a_status(const Report& r, const char* scenario) {
  auto j = render_json(r, "attestation");
  const auto& facts = j.at("facts").as_object();
  const auto& st = j.at("fact_status").as_object();
  EXPECT_FALSE(facts.empty()) << scenario;
  for (const auto& kv : facts) {
    ASSERT_TRUE(st.contains(kv.key())) << scenario << ": fact " << kv.key() << " has no status";
    const auto& s = st.at(kv.key()).as_object();
    std::string status(s.at("status").as_string());
    EXPECT_TRUE(status == "checked" || status == "not checked" || status == "note")
        << scenario << ": " << kv.key() << " " << status;
    if (status == "checked") {
      EXPECT_FALSE(s.at("by").as_array().empty()) << kv.key();
    }
    if (status == "not checked") {
      EXPECT_FALSE(s.at("why").as_string().empty()) << kv.key();
      // every fact the verifier emits is classified: "no check covers" would be a field nobody decided about
      EXPECT_EQ(std::string(s.at("why").as_string()).find("no check covers"), std::string::npos)
          << scenario << ": fact " << kv.key() << " is unclassified";
    }
  }
  // the text output labels every fact line too
  auto text = render_text(r, "attestation");
  auto at = text.find("== facts ==\n");
  ASSERT_NE(at, std::string::npos);
  std::istringstream lines(text.substr(at + 12));
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("summary: ", 0) == 0) break;
    if (line.rfind("    ", 0) == 0) continue;  // continuation of a multi-line value
    EXPECT_TRUE(line.find(" [checked]: ") != std::string::npos || line.find(" [note]: ") != std::string::npos ||
                line.find(" [not checked: ") != std::string::npos)
        << scenario << ": " << line;
  }
}

TEST(VerifyStrictFacts, EveryShownFactIsCheckedOrLabelled) {
  auto top = verifying_report();
  auto out = verify_attestation(with_all(top, {top}), opts());
  expect_every_fact_has_a_status(out.report, "verifying report");
  auto j = render_json(out.report, "attestation");
  for (const char* k : {"mrtd", "rtmr3", "report_data", "signing_address", "compose_hash", "app_id",
                        "docker_compose_file", "tdx.tcb_status", "tdx.fmspc"})
    EXPECT_EQ(j.at("fact_status").at(k).at("status"), "checked") << k;
  EXPECT_EQ(j.at("fact_status").at("encoding.quote").at("status"), "note");

  expect_every_fact_has_a_status(verify_attestation(gpu_report(2), gpu_opts()).report, "GPU report");
  auto g = render_json(verify_attestation(gpu_report(2), gpu_opts()).report, "attestation");
  EXPECT_EQ(g.at("fact_status").at("gpu.0.driver_version").at("status"), "checked");
  EXPECT_EQ(g.at("fact_status").at("gpu.1.arch").at("status"), "checked");
  // the binding fails for this report (another nonce), so the signing address is shown as not checked
  EXPECT_EQ(g.at("fact_status").at("signing_address").at("status"), "not checked");

  auto other = top;
  other["vm_config"] = "{}";
  expect_every_fact_has_a_status(verify_attestation(with_all(top, {top, other}), opts()).report, "two instances");

  auto sim = top;
  sim["simulated"] = true;
  auto s = render_json(verify_attestation(sim, opts()).report, "attestation");
  EXPECT_EQ(s.at("fact_status").at("simulated").at("status"), "not checked");
}

TEST(VerifyStrictFacts, OfflineMeasurementsAreNotChecked) {
  auto o = opts();
  o.collateral.reset();
  auto out = verify_attestation(verifying_report(), o);
  expect_every_fact_has_a_status(out.report, "offline");
  auto j = render_json(out.report, "attestation");
  EXPECT_EQ(j.at("fact_status").at("mrtd").at("status"), "not checked");
  EXPECT_NE(std::string(j.at("fact_status").at("mrtd").at("why").as_string()).find("tdx.pck_chain skipped"),
            std::string::npos);
}

TEST(VerifyStrictFacts, ResponseFactsAreNotes) {
  auto id = protocol::SigningIdentity::random();
  auto rec = id.sign(crypto::sha256(kRequest), crypto::sha256(kResponse));
  Report r;
  check_response(kRequest, kResponse, ecdsa_record(id, protocol::ecdsa_signature_hex(rec)), "ecdsa",
                 bound(id.signing_address(protocol::SigningAlgo::Ecdsa)), r);
  expect_every_fact_has_a_status(r, "response");
  EXPECT_EQ(fact_status(r, "response.request_sha256", "").status, "note");
  EXPECT_EQ(fact_status(r, "something.new", "").status, "not checked");
}

}  // namespace
}  // namespace pi::verify
