// NRAS token checks. NVIDIA's NRAS signing key is not available offline, so a throwaway ES384 key made here signs
// the real NRAS claim sets recorded in nvtrust (tests/fixtures/nvidia/nvtrust_claims_*.json); the JWKS file for it
// is written at run time. The real recorded NRAS answers are checked for shape, submods digests and eat_nonce, and
// their signatures must be reported as "key not in JWKS" (never pass).
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "crypto/hash.hpp"
#include "verify/gpu.hpp"
#include "verify/nras.hpp"

#include "test_support.hpp"

namespace pi::verify {
namespace {

using Signer = pi::testsupport::NrasTestSigner;
using pi::testsupport::TempDir;

constexpr std::int64_t kNow = 1735689600;  // 2025-01-01T00:00:00Z (see verify_gpu_test.cpp)
constexpr const char* kNonce = pi::testsupport::kNvtrustNonce;
using pi::testsupport::nvtrust_payload;

std::string fixture(const std::string& name) { return pi::testsupport::nvidia_fixture(name); }

boost::json::object json_fixture(const std::string& name) {
  boost::system::error_code ec;
  auto v = boost::json::parse(fixture(name), ec);
  EXPECT_FALSE(ec) << name;
  return v.is_object() ? v.as_object() : boost::json::object{};
}

std::string b64u(std::string_view s) { return pi::base64url_encode(pi::as_bytes(s)); }

std::string digest_of(const std::string& token) { return pi::to_hex(pi::crypto::sha256(token)); }

// [["JWT", overall], {"GPU-0": detached}] built from nvtrust's recorded NRAS claim sets.
boost::json::value make_answer(const Signer& s, const std::string& detached_token,
                               const std::optional<std::string>& digest_override = std::nullopt,
                               std::optional<std::string> overall_nonce = std::nullopt) {
  auto overall = json_fixture("nvtrust_claims_overall_claims_remote.json");
  overall["submods"] = boost::json::object{
      {"GPU-0", boost::json::array{
                    "DIGEST", boost::json::array{"SHA-256", digest_override.value_or(digest_of(detached_token))}}}};
  if (overall_nonce) overall["eat_nonce"] = *overall_nonce;
  return boost::json::array{boost::json::array{"JWT", s.sign(overall)}, boost::json::object{{"GPU-0", detached_token}}};
}

const Check* find(const Report& r, const std::string& id) {
  for (const auto& c : r.checks)
    if (c.id == id) return &c;
  return nullptr;
}
std::vector<std::string> failed(const Report& r) {
  std::vector<std::string> out;
  for (const auto& c : r.checks)
    if (c.status == Status::Fail && c.enforced) out.push_back(c.id);
  return out;
}

Report check(const boost::json::value& answer_json, const nras::Jwks* jwks, const std::string& nonce = kNonce) {
  Report r;
  nras::check_answer(nras::parse_answer(answer_json), jwks, "test JWKS", nonce, kNow, r);
  return r;
}

TEST(VerifyGpuNras, ValidTokensPass) {
  Signer s("test-nras-key");
  auto jwks = nras::Jwks::parse(s.jwks());
  std::string detached = s.sign(json_fixture("nvtrust_claims_detached_claims_remote.json"));
  auto r = check(make_answer(s, detached), &jwks);
  EXPECT_TRUE(failed(r).empty()) << ::testing::PrintToString(failed(r));
  for (const char* id : {"gpu.nras.signature", "gpu.nras.eat_nonce", "gpu.nras.overall_result", "gpu.nras.submods",
                         "gpu.nras.GPU-0.signature", "gpu.nras.GPU-0.eat_nonce", "gpu.nras.GPU-0.measres"}) {
    ASSERT_NE(find(r, id), nullptr) << id;
    EXPECT_EQ(find(r, id)->status, Status::Pass) << id << ": " << find(r, id)->detail;
  }
  EXPECT_TRUE(r.ok());
}

TEST(VerifyGpuNras, GranularClaimsV3Pass) {
  Signer s("test-nras-key-v3");
  auto jwks = nras::Jwks::parse(s.jwks());
  std::string detached = s.sign(json_fixture("nvtrust_claims_detached_granular_claims_remote.json"));
  auto r = check(make_answer(s, detached), &jwks);
  EXPECT_TRUE(failed(r).empty()) << ::testing::PrintToString(failed(r));
}

TEST(VerifyGpuNras, TamperedTokenFailsTheSignatureCheck) {
  Signer s("test-nras-key");
  auto jwks = nras::Jwks::parse(s.jwks());
  std::string detached = s.sign(json_fixture("nvtrust_claims_detached_claims_remote.json"));
  auto answer = make_answer(s, detached);
  // Flip x-nvidia-overall-att-result inside the signed payload of the overall token, keep the signature.
  std::string overall(answer.as_array()[0].as_array()[1].as_string());
  auto dot1 = overall.find('.'), dot2 = overall.rfind('.');
  auto payload = pi::base64_decode(overall.substr(dot1 + 1, dot2 - dot1 - 1)).value();
  std::string text(payload.begin(), payload.end());
  auto pos = text.find("\"x-nvidia-overall-att-result\":true");
  ASSERT_NE(pos, std::string::npos);
  text.replace(pos, 34, "\"x-nvidia-overall-att-result\":1   ");
  std::string forged = overall.substr(0, dot1 + 1) + b64u(text) + overall.substr(dot2);
  answer.as_array()[0].as_array()[1] = forged;
  auto r = check(answer, &jwks);
  EXPECT_EQ(find(r, "gpu.nras.signature")->status, Status::Fail);
  EXPECT_NE(find(r, "gpu.nras.signature")->detail.find("does NOT verify"), std::string::npos);
  EXPECT_EQ(find(r, "gpu.nras.GPU-0.signature")->status, Status::Pass);
}

TEST(VerifyGpuNras, WrongEatNonceFails) {
  Signer s("test-nras-key");
  auto jwks = nras::Jwks::parse(s.jwks());
  std::string detached = s.sign(json_fixture("nvtrust_claims_detached_claims_remote.json"));
  const std::string other = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  // Signed tokens for another nonce: both eat_nonce checks fail, nothing else.
  auto r = check(make_answer(s, detached), &jwks, other);
  EXPECT_EQ(failed(r), (std::vector<std::string>{"gpu.nras.eat_nonce", "gpu.nras.GPU-0.eat_nonce"}));
  EXPECT_NE(find(r, "gpu.nras.eat_nonce")->detail.find("differs from our nonce " + other), std::string::npos);
  // Overall token signed with another nonce than its detached token.
  auto r2 = check(make_answer(s, detached, std::nullopt, other), &jwks);
  EXPECT_EQ(failed(r2), std::vector<std::string>{"gpu.nras.eat_nonce"});
}

TEST(VerifyGpuNras, SubmodDigestMismatchFails) {
  Signer s("test-nras-key");
  auto jwks = nras::Jwks::parse(s.jwks());
  std::string detached = s.sign(json_fixture("nvtrust_claims_detached_claims_remote.json"));
  std::string other_detached = s.sign(json_fixture("nvtrust_claims_detached_claims_local.json"));
  // The overall token commits to a different detached token than the one delivered.
  auto r = check(make_answer(s, detached, digest_of(other_detached)), &jwks);
  EXPECT_EQ(failed(r), std::vector<std::string>{"gpu.nras.submods"});
  EXPECT_NE(find(r, "gpu.nras.submods")->detail.find("does not match SHA-256 of its detached token"),
            std::string::npos);
}

TEST(VerifyGpuNras, MissingDetachedTokenFailsSubmods) {
  Signer s("test-nras-key");
  auto jwks = nras::Jwks::parse(s.jwks());
  std::string detached = s.sign(json_fixture("nvtrust_claims_detached_claims_remote.json"));
  auto answer = make_answer(s, detached);
  answer.as_array()[1].as_object().clear();
  auto r = check(answer, &jwks);
  EXPECT_EQ(failed(r), std::vector<std::string>{"gpu.nras.submods"});
}

TEST(VerifyGpuNras, NoJwksNeverPasses) {
  Signer s("test-nras-key");
  std::string detached = s.sign(json_fixture("nvtrust_claims_detached_claims_remote.json"));
  auto r = check(make_answer(s, detached), nullptr);
  EXPECT_EQ(failed(r), (std::vector<std::string>{"gpu.nras.signature", "gpu.nras.GPU-0.signature"}));
  EXPECT_NE(find(r, "gpu.nras.signature")->detail.find("no JWKS available"), std::string::npos);
}

TEST(VerifyGpuNras, RecordedNrasAnswerParsesButItsKeyIsNotInTheJwks) {
  // A real NRAS v4 answer (claims 3.0) for the nvtrust sample evidence. NVIDIA's JWKS is not available here.
  boost::system::error_code ec;
  auto v = boost::json::parse(fixture("nvat_hopperClaimsv3_detached_eat.json"), ec);
  ASSERT_FALSE(ec);
  auto answer = nras::parse_answer(v);
  EXPECT_EQ(answer.overall.alg, "ES384");
  EXPECT_EQ(answer.overall.kid.rfind("nv-eat-kid-prod-", 0), 0u);
  ASSERT_EQ(answer.detached.size(), 1u);
  EXPECT_EQ(answer.detached[0].first, "GPU-0");
  // The decoded claims match the recorded decoded copy.
  auto decoded = json_fixture("nvat_hopperClaimsv3_decoded.json");
  EXPECT_EQ(answer.detached[0].second.claims, decoded["GPU-0"].as_object());

  Signer s("test-nras-key");
  auto jwks = nras::Jwks::parse(s.jwks());
  Report r;
  nras::check_answer(answer, &jwks, "test JWKS", kNonce, kNow, r);
  EXPECT_EQ(failed(r), (std::vector<std::string>{"gpu.nras.signature", "gpu.nras.GPU-0.signature"}));
  EXPECT_NE(find(r, "gpu.nras.signature")->detail.find("key not in JWKS"), std::string::npos);
  EXPECT_NE(find(r, "gpu.nras.GPU-0.signature")->detail.find("key not in JWKS"), std::string::npos);
  EXPECT_EQ(find(r, "gpu.nras.submods")->status, Status::Pass);  // real digests over the real detached token
  EXPECT_EQ(find(r, "gpu.nras.eat_nonce")->status, Status::Pass);
  EXPECT_EQ(find(r, "gpu.nras.overall_result")->status, Status::Pass);
  // Reported only: kNow (2025-01-01) lies before the token's nbf (2025-06-11).
  EXPECT_EQ(find(r, "gpu.nras.token_time")->status, Status::Fail);
  EXPECT_FALSE(find(r, "gpu.nras.token_time")->enforced);
}

TEST(VerifyGpuNras, RecordedVllmProxyPpcieAnswerHasEightMatchingSubmods) {
  boost::system::error_code ec;
  auto v = boost::json::parse(fixture("vllm_proxy_nras_sample_ppcie_response.json"), ec);
  ASSERT_FALSE(ec);
  auto answer = nras::parse_answer(v);
  EXPECT_EQ(answer.detached.size(), 8u);
  auto sub = nras::check_submods(answer);
  EXPECT_TRUE(sub.ok) << sub.detail;
  EXPECT_NE(sub.detail.find("8 submod digest(s) match"), std::string::npos);
}

TEST(VerifyGpuNras, MalformedInputsAreClearErrors) {
  EXPECT_THROW(nras::parse_jwt("abc"), nras::Error);
  EXPECT_THROW(nras::parse_jwt("a.b.c"), nras::Error);
  EXPECT_THROW(nras::parse_jwt(b64u("[]") + "." + b64u("{}") + ".AA"), nras::Error);
  EXPECT_THROW(nras::parse_answer(boost::json::value(1)), nras::Error);
  EXPECT_THROW(nras::parse_answer(boost::json::array{boost::json::array{"JWS", "x"}, boost::json::object{}}),
               nras::Error);
  EXPECT_THROW(nras::Jwks::parse("{}"), nras::Error);
  EXPECT_THROW(nras::Jwks::parse("not json"), nras::Error);
  EXPECT_THROW(nras::Jwks::parse(R"({"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"AA","y":"AA"}]})"), nras::Error);
  EXPECT_THROW(nras::Jwks::load("/nonexistent/jwks.json"), nras::Error);
  // A token with alg none is refused, whatever the JWKS.
  Signer s("k");
  auto jwks = nras::Jwks::parse(s.jwks());
  auto t = nras::parse_jwt(b64u(R"({"alg":"none","kid":"k"})") + "." + b64u("{}") + ".");
  EXPECT_EQ(nras::verify_jwt(t, &jwks).status, nras::SigStatus::UnsupportedAlg);
}

// --- through check_gpu_evidence with files, as the CLI uses it ---

TEST(VerifyGpuNras, EndToEndWithRecordedAnswerAndJwksFiles) {
  TempDir dir;
  Signer s("test-nras-key");
  // NRAS's real per-GPU claims for the nvtrust sample evidence, re-signed with the test key.
  std::string detached = s.sign(json_fixture("nvat_hopperClaimsv3_decoded.json")["GPU-0"].as_object());
  GpuOptions opts;
  opts.now = kNow;
  opts.jwks_path = dir.write("jwks.json", s.jwks());
  opts.nras_response_path = dir.write("answer.json", boost::json::serialize(make_answer(s, detached)));
  Report r;
  check_gpu_evidence(nvtrust_payload(), kNonce, opts, r);
  EXPECT_TRUE(failed(r).empty()) << ::testing::PrintToString(failed(r));
  EXPECT_EQ(find(r, "gpu.nras")->status, Status::Pass);
  EXPECT_EQ(find(r, "gpu.nras.signature")->status, Status::Pass);
  EXPECT_EQ(find(r, "gpu.0.spdm_signature")->status, Status::Pass);
  ASSERT_NE(find(r, "gpu.nras.GPU-0.evidence_match"), nullptr);
  EXPECT_EQ(find(r, "gpu.nras.GPU-0.evidence_match")->status, Status::Pass);
  EXPECT_NE(find(r, "gpu.nras.GPU-0.evidence_match")->detail.find("driver 550.90.07, VBIOS 96.00.9F.00.01"),
            std::string::npos)
      << find(r, "gpu.nras.GPU-0.evidence_match")->detail;
  EXPECT_TRUE(r.ok());

  // The real recorded NRAS answer for the same evidence: everything but the signatures verifies.
  opts.nras_response_path = std::string(PI_FIXTURES_DIR) + "/nvidia/nvat_hopperClaimsv3_detached_eat.json";
  Report r2;
  check_gpu_evidence(nvtrust_payload(), kNonce, opts, r2);
  EXPECT_EQ(failed(r2), (std::vector<std::string>{"gpu.nras.signature", "gpu.nras.GPU-0.signature"}));
}

TEST(VerifyGpuNras, AnswerAboutOtherEvidenceFailsTheEvidenceMatch) {
  // A validly signed, right-nonce answer whose claims describe another GPU (driver 570.00, not 550.90.07).
  TempDir dir;
  Signer s("test-nras-key");
  std::string detached = s.sign(json_fixture("nvtrust_claims_detached_claims_remote.json"));
  GpuOptions opts;
  opts.now = kNow;
  opts.jwks_path = dir.write("jwks.json", s.jwks());
  opts.nras_response_path = dir.write("answer.json", boost::json::serialize(make_answer(s, detached)));
  Report r;
  check_gpu_evidence(nvtrust_payload(), kNonce, opts, r);
  EXPECT_EQ(failed(r), std::vector<std::string>{"gpu.nras.GPU-0.evidence_match"});
  EXPECT_NE(find(r, "gpu.nras.GPU-0.evidence_match")->detail.find("driver NRAS 570.00 vs evidence 550.90.07"),
            std::string::npos)
      << find(r, "gpu.nras.GPU-0.evidence_match")->detail;
}

TEST(VerifyGpuNras, UnreachableNrasIsReportedAsSkippedForLackOfNetwork) {
  GpuOptions opts;
  opts.now = kNow;
  opts.nras = true;
  opts.nras_url = "https://127.0.0.1:1/v4/attest/gpu";  // nothing listens there
  Report r;
  check_gpu_evidence(nvtrust_payload(), kNonce, opts, r);
  ASSERT_NE(find(r, "gpu.nras"), nullptr);
  EXPECT_EQ(find(r, "gpu.nras")->status, Status::Skipped);
  EXPECT_NE(find(r, "gpu.nras")->detail.find("network unavailable"), std::string::npos) << find(r, "gpu.nras")->detail;
  EXPECT_TRUE(r.ok());  // local checks all pass
}

TEST(VerifyGpuNras, BadJwksFileIsAFailedCheck) {
  TempDir dir;
  GpuOptions opts;
  opts.now = kNow;
  opts.jwks_path = dir.write("jwks.json", "{not json");
  opts.nras_response_path = std::string(PI_FIXTURES_DIR) + "/nvidia/nvat_hopperClaimsv3_detached_eat.json";
  Report r;
  check_gpu_evidence(nvtrust_payload(), kNonce, opts, r);
  ASSERT_NE(find(r, "gpu.nras.jwks"), nullptr);
  EXPECT_EQ(find(r, "gpu.nras.jwks")->status, Status::Fail);
  EXPECT_EQ(find(r, "gpu.nras.signature")->status, Status::Fail);
}

}  // namespace
}  // namespace pi::verify
