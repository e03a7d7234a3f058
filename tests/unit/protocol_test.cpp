#include <gtest/gtest.h>

#include "crypto/eth.hpp"
#include "crypto/hash.hpp"
#include "protocol/signing.hpp"
#include "protocol/sse.hpp"
#include "protocol/wire.hpp"

using namespace pi;
using namespace pi::protocol;

TEST(Hex, RoundTripAndPrefix) {
  auto b = from_hex("0xDEADbeef");
  ASSERT_TRUE(b);
  EXPECT_EQ(to_hex(*b), "deadbeef");
  EXPECT_FALSE(from_hex("abc"));
  EXPECT_FALSE(from_hex("zz"));
}

TEST(Hash, KnownVectors) {
  // FIPS 180-2 "abc" and Ethereum's keccak256("") test vectors.
  EXPECT_EQ(to_hex(crypto::sha256(std::string_view("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(to_hex(crypto::keccak256(std::string_view(""))),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
  crypto::Sha256 inc;
  inc.update(std::string_view("a"));
  inc.update(std::string_view("bc"));
  EXPECT_EQ(inc.finish(), crypto::sha256(std::string_view("abc")));
}

TEST(Eth, ChecksumAddressOfKnownKey) {
  // Private key 1 → address 0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf (widely published).
  Bytes k(32, 0);
  k[31] = 1;
  auto s = crypto::EthSigner::from_secret(k);
  ASSERT_TRUE(s);
  EXPECT_EQ(crypto::eth_checksum_address(s->address()), "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf");
}

TEST(Eth, PersonalSignRecovers) {
  auto s = crypto::EthSigner::random();
  auto sig = s.personal_sign("hello");
  EXPECT_TRUE(sig[64] == 27 || sig[64] == 28);
  auto rec = crypto::personal_recover("hello", sig);
  ASSERT_TRUE(rec);
  EXPECT_EQ(*rec, s.address());
  auto other = crypto::personal_recover("hellO", sig);
  EXPECT_TRUE(!other || *other != s.address());
}

TEST(Eth, ZeroSecretRejected) { EXPECT_FALSE(crypto::EthSigner::from_secret(Bytes(32, 0))); }

TEST(Protocol, SignedTextAndRecord) {
  auto id = SigningIdentity::random();
  auto rq = crypto::sha256(std::string_view("req"));
  auto rs = crypto::sha256(std::string_view("resp"));
  auto rec = id.sign(rq, rs);
  EXPECT_EQ(rec.text(), to_hex(rq) + ":" + to_hex(rs));
  auto addr = recover_ecdsa_signer(rec.text(), ecdsa_signature_hex(rec));
  ASSERT_TRUE(addr);
  EXPECT_EQ(crypto::eth_checksum_address(*addr), id.signing_address(SigningAlgo::Ecdsa));
  EXPECT_TRUE(verify_ed25519(rec.text(), ed25519_signature_hex(rec), id.signing_address(SigningAlgo::Ed25519)));
  EXPECT_FALSE(verify_ed25519(rec.text() + "x", ed25519_signature_hex(rec), id.signing_address(SigningAlgo::Ed25519)));
}

TEST(Protocol, ReportDataLayout) {
  auto nonce = parse_nonce(std::string(64, 'a'));
  ASSERT_TRUE(nonce);
  Bytes addr(20, 0x11);
  auto rd = make_report_data(addr, *nonce);
  EXPECT_EQ(to_hex(rd), std::string(40, '1') + std::string(24, '0') + std::string(64, 'a'));
  EXPECT_FALSE(parse_nonce(std::string(63, 'a')));
  EXPECT_FALSE(parse_nonce("0x" + std::string(62, 'a')));
  EXPECT_FALSE(parse_nonce(std::string(64, 'g')));
  EXPECT_THROW(make_report_data(Bytes(33, 1), *nonce), std::invalid_argument);
}

TEST(Sse, ChatStreamCompletes) {
  SseScanner s;
  std::string stream =
      "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
      "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"delta\":{\"content\":\" there\"}}]}\n\n"
      "data: [DONE]\n\n";
  // Feed one byte at a time: framing must not depend on chunk boundaries.
  for (char c : stream) s.feed(std::string_view(&c, 1));
  EXPECT_EQ(s.id(), "chatcmpl-1");
  EXPECT_TRUE(s.completed());
  EXPECT_TRUE(s.signable());
}

TEST(Sse, TruncatedOrErroredStreamsAreNotSignable) {
  SseScanner a;
  a.feed("data: {\"id\":\"x\",\"choices\":[]}\n\n");
  EXPECT_FALSE(a.signable());
  SseScanner b;
  b.feed("data: {\"id\":\"x\",\"choices\":[]}\n\ndata: {\"error\":{\"message\":\"boom\"}}\n\ndata: [DONE]\n\n");
  EXPECT_TRUE(b.completed());
  EXPECT_TRUE(b.error());
  EXPECT_FALSE(b.signable());
  SseScanner c;  // content that merely contains the word "error" is fine
  c.feed("data: {\"id\":\"y\",\"choices\":[{\"delta\":{\"content\":\"\\\"error\\\"\"}}]}\r\n\r\ndata: [DONE]\r\n\r\n");
  EXPECT_FALSE(c.error());
  EXPECT_TRUE(c.signable());
}

TEST(Sse, ResponsesApiLifecycle) {
  SseScanner s;
  s.feed("event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\"}}\n\n");
  s.feed("event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\"}}\n\n");
  EXPECT_EQ(s.id(), "resp_1");
  EXPECT_TRUE(s.signable());
}

TEST(Sse, OverlongLineMarksOverflow) {
  SseScanner s(16);
  s.feed("data: " + std::string(100, 'x') + "\n\ndata: [DONE]\n\n");
  EXPECT_TRUE(s.overflow());
  EXPECT_FALSE(s.signable());
}

TEST(Wire, ErrorEnvelopeShape) {
  EXPECT_EQ(error_envelope("bad", "invalid_request_error", "nonce", "invalid_nonce"),
            R"({"error":{"message":"bad","type":"invalid_request_error","param":"nonce","code":"invalid_nonce"}})");
  EXPECT_EQ(error_envelope("x", "t"), R"({"error":{"message":"x","type":"t","param":null,"code":null}})");
}

TEST(Wire, ResponseId) {
  EXPECT_EQ(response_id(R"({"id":"abc","x":1})").value(), "abc");
  EXPECT_FALSE(response_id("not json"));
  EXPECT_FALSE(response_id(R"({"data":[]})"));
}
