// `verify response` checks on signature records made by the project's real signer
// (protocol::SigningIdentity), in the exact shape GET /v1/signature/{id} serves.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cctype>

#include "crypto/hash.hpp"
#include "protocol/signing.hpp"
#include "verify/response.hpp"

namespace pi::verify {
namespace {

namespace json = boost::json;

const std::string kRequest = R"({"model":"m","messages":[{"role":"user","content":"hi"}]})";
const std::string kResponse = R"({"id":"chatcmpl-1","choices":[{"message":{"content":"hello"}}]})";

json::object record(const protocol::SigningIdentity& id, protocol::SigningAlgo algo) {
  auto rec = id.sign(crypto::sha256(kRequest), crypto::sha256(kResponse));
  json::object o;
  o["text"] = rec.text();
  o["request_hash"] = to_hex(rec.request_hash);
  o["response_hash"] = to_hex(rec.response_hash);
  o["ecdsa_signature"] = protocol::ecdsa_signature_hex(rec);
  o["ed25519_signature"] = protocol::ed25519_signature_hex(rec);
  o["ecdsa_signing_address"] = id.signing_address(protocol::SigningAlgo::Ecdsa);
  o["ed25519_signing_address"] = id.signing_address(protocol::SigningAlgo::Ed25519);
  o["signing_algo"] = protocol::to_string(algo);
  o["signing_address"] = id.signing_address(algo);
  o["signature"] = algo == protocol::SigningAlgo::Ecdsa ? o["ecdsa_signature"] : o["ed25519_signature"];
  return o;
}

// An attestation outcome that verified and bound `address` (the attestation checks themselves are
// tested in verify_attestation_test.cpp).
AttestationOutcome bound_to(const std::string& address, bool ok = true) {
  AttestationOutcome a;
  a.signing_address = address;
  a.bound = ok;
  a.report.add(Check{Group::Hardware, "tdx.quote_signature", "t", ok ? Status::Pass : Status::Fail, ""});
  return a;
}

Status st(const Report& r, std::string_view id) {
  const Check* c = r.find(id);
  EXPECT_NE(c, nullptr) << id;
  return c ? c->status : Status::Skipped;
}

class VerifyResponse : public ::testing::TestWithParam<protocol::SigningAlgo> {};

TEST_P(VerifyResponse, GenuineExchangePasses) {
  auto id = protocol::SigningIdentity::random();
  auto algo = GetParam();
  Report r;
  check_response(kRequest, kResponse, record(id, algo), protocol::to_string(algo), bound_to(id.signing_address(algo)),
                 r);
  for (const auto& c : r.checks) EXPECT_EQ(c.status, Status::Pass) << c.id << ": " << c.detail;
  EXPECT_EQ(r.checks.size(), 5u);
  EXPECT_TRUE(r.ok());
}

TEST_P(VerifyResponse, TamperedResponseByteFailsOnlyTheResponseHash) {
  auto id = protocol::SigningIdentity::random();
  auto algo = GetParam();
  std::string tampered = kResponse;
  tampered[tampered.find("hello")] = 'H';
  Report r;
  check_response(kRequest, tampered, record(id, algo), protocol::to_string(algo), bound_to(id.signing_address(algo)),
                 r);
  EXPECT_EQ(st(r, "response.response_hash"), Status::Fail);
  EXPECT_EQ(st(r, "response.request_hash"), Status::Pass);
  EXPECT_EQ(st(r, "response.signature"), Status::Pass);
  EXPECT_FALSE(r.ok());
}

TEST_P(VerifyResponse, KeyNotTheAttestedOneFails) {
  auto id = protocol::SigningIdentity::random();
  auto other = protocol::SigningIdentity::random();
  auto algo = GetParam();
  Report r;
  check_response(kRequest, kResponse, record(id, algo), protocol::to_string(algo),
                 bound_to(other.signing_address(algo)), r);
  EXPECT_EQ(st(r, "response.signature"), Status::Pass);
  EXPECT_EQ(st(r, "response.key_bound"), Status::Fail);
}

TEST_P(VerifyResponse, UnverifiedAttestationDoesNotBindTheKey) {
  auto id = protocol::SigningIdentity::random();
  auto algo = GetParam();
  Report r;
  check_response(kRequest, kResponse, record(id, algo), protocol::to_string(algo),
                 bound_to(id.signing_address(algo), false), r);
  EXPECT_EQ(st(r, "response.key_bound"), Status::Fail);
  EXPECT_NE(r.find("response.key_bound")->detail.find("did not verify"), std::string::npos);
  Report r2;
  check_response(kRequest, kResponse, record(id, algo), protocol::to_string(algo), std::nullopt, r2);
  EXPECT_EQ(st(r2, "response.key_bound"), Status::Fail);
}

TEST_P(VerifyResponse, SignatureByAnotherKeyFails) {
  auto id = protocol::SigningIdentity::random();
  auto other = protocol::SigningIdentity::random();
  auto algo = GetParam();
  auto rec = record(id, algo);
  auto forged = record(other, algo);
  rec["ecdsa_signature"] = forged["ecdsa_signature"];
  rec["ed25519_signature"] = forged["ed25519_signature"];
  rec["signature"] = forged["signature"];  // a consistent record: the signature itself is wrong
  Report r;
  check_response(kRequest, kResponse, rec, protocol::to_string(algo), bound_to(id.signing_address(algo)), r);
  EXPECT_EQ(st(r, "response.signature"), Status::Fail);
  EXPECT_EQ(r.find("response.signature")->detail.find("the record's"), std::string::npos);
  EXPECT_EQ(st(r, "response.key_bound"), Status::Fail);
}

TEST_P(VerifyResponse, SigningAddressThatDisagreesWithTheAlgorithmsAddressIsRejected) {
  // Every signature verifies for the algorithm-specific key, but signing_address names another key: a client
  // reading signing_address would attribute the response to the wrong signer.
  auto id = protocol::SigningIdentity::random();
  auto other = protocol::SigningIdentity::random();
  auto algo = GetParam();
  auto rec = record(id, algo);
  rec["signing_address"] = other.signing_address(algo);
  Report r;
  check_response(kRequest, kResponse, rec, protocol::to_string(algo), bound_to(id.signing_address(algo)), r);
  EXPECT_EQ(st(r, "response.signature"), Status::Fail);
  const std::string specific =
      algo == protocol::SigningAlgo::Ecdsa ? "ecdsa_signing_address" : "ed25519_signing_address";
  EXPECT_NE(r.find("response.signature")->detail.find(specific), std::string::npos)
      << r.find("response.signature")->detail;
  EXPECT_EQ(st(r, "response.key_bound"), Status::Fail);
  EXPECT_FALSE(r.ok());
  // The same address in another letter case is the same address.
  auto same = record(id, algo);
  std::string lowered = id.signing_address(algo);
  for (auto& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  same["signing_address"] = lowered;
  Report r2;
  check_response(kRequest, kResponse, same, protocol::to_string(algo), bound_to(id.signing_address(algo)), r2);
  EXPECT_TRUE(r2.ok()) << r2.find("response.signature")->detail;
}

TEST_P(VerifyResponse, GenericSignatureThatDisagreesWithTheAlgorithmsSignatureIsRejected) {
  auto id = protocol::SigningIdentity::random();
  auto other = protocol::SigningIdentity::random();
  auto algo = GetParam();
  auto rec = record(id, algo);
  rec["signature"] = record(other, algo)["signature"];
  Report r;
  check_response(kRequest, kResponse, rec, protocol::to_string(algo), bound_to(id.signing_address(algo)), r);
  EXPECT_EQ(st(r, "response.signature"), Status::Fail);
  EXPECT_NE(r.find("response.signature")->detail.find("signature is not its"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Algos, VerifyResponse,
                         ::testing::Values(protocol::SigningAlgo::Ecdsa, protocol::SigningAlgo::Ed25519));

TEST(VerifyResponseInput, GarbageRecordFailsCleanly) {
  for (const char* doc : {"{}", "[]", "null", R"({"text": 5, "ecdsa_signature": "0x12"})"}) {
    Report r;
    check_response(kRequest, kResponse, json::parse(doc), "ecdsa", std::nullopt, r);
    EXPECT_FALSE(r.ok()) << doc;
  }
  Report r;
  check_response(kRequest, kResponse, json::parse("{}"), "rsa", std::nullopt, r);
  EXPECT_EQ(st(r, "response.signature"), Status::Fail);
}

TEST(VerifyResponseInput, AFieldOfTheWrongTypeIsNamedNotSkipped) {
  auto id = protocol::SigningIdentity::random();
  for (const char* field : {"text", "request_hash", "signature", "signing_address", "ecdsa_signing_address"}) {
    auto rec = record(id, protocol::SigningAlgo::Ecdsa);
    rec[field] = 7;
    Report r;
    check_response(kRequest, kResponse, rec, "ecdsa", bound_to(id.signing_address(protocol::SigningAlgo::Ecdsa)), r);
    EXPECT_EQ(st(r, "response.record"), Status::Fail) << field;
    EXPECT_NE(r.find("response.record")->detail.find(field), std::string::npos) << r.find("response.record")->detail;
    EXPECT_FALSE(r.ok());
  }
}

}  // namespace
}  // namespace pi::verify
