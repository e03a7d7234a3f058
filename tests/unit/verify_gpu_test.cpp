// GPU evidence checks against real recorded NVIDIA evidence (tests/fixtures/nvidia, see its README).
//
// Evaluation time: kNow = 2025-01-01T00:00:00Z. Every certificate in the H100/B200 fixtures is valid from
// 2020-10-17 (H100 leaf) / 2023-06-20 (B200 leaf) to 9999-12-31, so kNow lies inside all their windows.
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <random>
#include <sstream>

#include "crypto/bytes.hpp"
#include "protocol/gpu_spdm.hpp"
#include "verify/gpu.hpp"
#include "verify/gpu_cert.hpp"

#include "test_support.hpp"

namespace pi::verify {
namespace {

using namespace pi::verify::gpu;
using namespace pi::protocol::gpu;

constexpr std::int64_t kNow = 1735689600;  // 2025-01-01T00:00:00Z
using pi::testsupport::kNvtrustNonce;
constexpr const char* kNvatNonce = "e97b23a1718095a0e9e35edca810768c70a6a5a389b705e753b197912bc11576";
constexpr const char* kSdkHopperNonce = "27a328247bf7935c993341cf587be6f05986ccce4fe7ba2c54100bd616a58f66";

std::string fixture(const std::string& name) { return pi::testsupport::nvidia_fixture(name); }

pi::Bytes hex_fixture(const std::string& name) {
  std::string t = fixture(name);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
  auto b = pi::from_hex(t);
  EXPECT_TRUE(b.has_value()) << name;
  return b.value_or(pi::Bytes{});
}

std::string b64(std::string_view s) {
  std::string u = base64url_encode(pi::as_bytes(s));
  for (auto& c : u) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  while (u.size() % 4) u.push_back('=');
  return u;
}
std::string b64(const pi::Bytes& b) { return b64(std::string_view(reinterpret_cast<const char*>(b.data()), b.size())); }

boost::json::object item(const pi::Bytes& report, const std::string& pem, std::optional<std::string> arch = "HOPPER",
                         std::optional<std::string> nonce = std::nullopt) {
  boost::json::object o{{"certificate", b64(pem)}, {"evidence", b64(report)}};
  if (arch) o["arch"] = *arch;
  if (nonce) o["nonce"] = *nonce;
  return o;
}

// vllm-proxy's form: a JSON *string* {"nonce","evidence_list","arch"}.
boost::json::value vllm_payload(boost::json::array items, const std::string& nonce, const std::string& arch) {
  boost::json::object o{{"nonce", nonce}, {"evidence_list", std::move(items)}, {"arch", arch}};
  return boost::json::value(boost::json::serialize(o));
}

const Check* find(const Report& r, const std::string& id) {
  for (const auto& c : r.checks)
    if (c.id == id) return &c;
  return nullptr;
}
std::string fact(const Report& r, const std::string& k) {
  for (const auto& [key, v] : r.facts)
    if (key == k) return v;
  return "<missing>";
}
Status status(const Report& r, const std::string& id) {
  const Check* c = find(r, id);
  EXPECT_NE(c, nullptr) << "no check " << id;
  return c ? c->status : Status::Skipped;
}
std::string detail(const Report& r, const std::string& id) {
  const Check* c = find(r, id);
  return c ? c->detail : "<no check " + id + ">";
}
// The ids of the Gpu checks that failed.
std::vector<std::string> failed(const Report& r) {
  std::vector<std::string> out;
  for (const auto& c : r.checks)
    if (c.status == Status::Fail) out.push_back(c.id);
  return out;
}

GpuOptions offline() {
  GpuOptions o;
  o.now = kNow;
  return o;
}

Report run(const boost::json::value& payload, const std::string& nonce, const GpuOptions& opts = offline()) {
  Report r;
  check_gpu_evidence(payload, nonce, opts, r);
  return r;
}

// ---------------------------------------------------------------- SPDM parsing

TEST(VerifyGpuSpdm, ParsesNvtrustSampleReport) {
  auto rep = parse_spdm_report(hex_fixture("nvtrust_hopper_report.hex"));
  EXPECT_EQ(pi::to_hex(rep.request_nonce), kNvtrustNonce);
  EXPECT_EQ(rep.request_version, 0x11);
  EXPECT_EQ(rep.request_param2, 0xFF);
  EXPECT_EQ(rep.blocks.size(), 64u);
  EXPECT_EQ(rep.blocks.front().index, 1);
  EXPECT_EQ(rep.blocks.front().value.size(), 48u);
  EXPECT_EQ(rep.signature.size(), 96u);
  EXPECT_EQ(rep.signed_data.size() + 96, hex_fixture("nvtrust_hopper_report.hex").size());
  EXPECT_EQ(driver_version(rep).value_or(""), "550.90.07");
  EXPECT_EQ(vbios_version(rep).value_or(""), "96.00.9F.00.01");  // as NRAS reports it for this evidence
  EXPECT_EQ(gpu_arch_id(rep).value_or(0), 0x180u);
  EXPECT_EQ(opaque_string(rep, OpaqueType::Project).value_or(""), "1010");
  EXPECT_EQ(protected_pcie(rep), std::optional<bool>(false));
  EXPECT_FALSE(feature_flag(rep).has_value());
}

TEST(VerifyGpuSpdm, ParsesSdkReportsVersions) {
  auto h = parse_spdm_report(hex_fixture("nvat_gpu_hopperAttestationReport.txt"));
  EXPECT_EQ(pi::to_hex(h.request_nonce), kSdkHopperNonce);
  EXPECT_EQ(driver_version(h).value_or(""), "535.86.09");
  EXPECT_EQ(vbios_version(h).value_or(""), "96.00.5E.00.01");
  auto b = parse_spdm_report(hex_fixture("nvat_gpu_blackwellAttestationReport.txt"));
  EXPECT_EQ(driver_version(b).value_or(""), "575.32");
  EXPECT_EQ(vbios_version(b).value_or(""), "97.00.88.00.0F");
  EXPECT_EQ(gpu_arch_id(b).value_or(0), 0x1A0u);
}

TEST(VerifyGpuSpdm, RejectsMalformedReportsWithClearErrors) {
  auto good = hex_fixture("nvtrust_hopper_report.hex");
  // Every truncation is an error, never a crash (run under ASan/UBSan).
  for (std::size_t n = 0; n < good.size(); n += 13) {
    pi::Bytes cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THROW(parse_spdm_report(cut), ParseError) << n;
  }
  auto extra = good;
  extra.push_back(0);
  try {
    parse_spdm_report(extra);
    ADD_FAILURE() << "trailing byte accepted";
  } catch (const ParseError& e) {
    EXPECT_NE(std::string(e.what()).find("after the 96-byte signature"), std::string::npos) << e.what();
  }
  auto bad_code = good;
  bad_code[1] = 0xE1;
  try {
    parse_spdm_report(bad_code);
    ADD_FAILURE() << "wrong request code accepted";
  } catch (const ParseError& e) {
    EXPECT_NE(std::string(e.what()).find("expected 0xE0"), std::string::npos) << e.what();
  }
  auto bad_len = good;
  bad_len[37 + 5] ^= 0x01;  // MeasurementRecordLength off by one
  EXPECT_THROW(parse_spdm_report(bad_len), ParseError);
}

TEST(VerifyGpuSpdm, RandomMutationsNeverCrash) {
  // Deterministic mutation fuzzing: corrupted reports either parse or throw ParseError, and the decoders cope with
  // whatever parsed (run under ASan/UBSan). Half the mutations hit the header / length / opaque regions.
  auto good = hex_fixture("nvtrust_hopper_report.hex");
  const std::size_t opaque_start = good.size() - 96 - 422 - 2;
  std::mt19937 rng(20261124);
  int parsed = 0, rejected = 0;
  for (int i = 0; i < 3000; ++i) {
    auto m = good;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      std::size_t pos =
          (rng() % 2) ? rng() % m.size() : (rng() % 2 ? rng() % 48 : opaque_start + rng() % (m.size() - opaque_start));
      m[pos] = static_cast<std::uint8_t>(rng());
    }
    if (rng() % 8 == 0) m.resize(rng() % m.size());
    try {
      auto r = parse_spdm_report(m);
      ++parsed;
      (void)driver_version(r);
      (void)vbios_version(r);
      (void)gpu_arch_id(r);
      (void)feature_flag(r);
      (void)protected_pcie(r);
      for (std::uint16_t t = 0; t < 40; ++t) (void)opaque_string(r, static_cast<OpaqueType>(t));
    } catch (const ParseError&) {
      ++rejected;
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}

TEST(VerifyGpu, MutatedEvidenceNeverPassesAndNeverCrashes) {
  auto good = hex_fixture("nvtrust_hopper_report.hex");
  std::string pem = fixture("nvtrust_hopper_certchain.pem");
  std::mt19937 rng(7);
  for (int i = 0; i < 150; ++i) {
    auto m = good;
    std::size_t pos = rng() % m.size();
    std::uint8_t v = static_cast<std::uint8_t>(rng());
    if (m[pos] == v) v ^= 0x01;
    m[pos] = v;
    auto r = run(boost::json::value(boost::json::array{item(m, pem)}), kNvtrustNonce);
    EXPECT_FALSE(r.ok()) << "mutation at byte " << pos << " accepted";
  }
}

TEST(VerifyGpuSpdm, ArchFromChipNames) {
  EXPECT_EQ(arch_from_chip_name("CN=GH100 A01 GSP FMC LF").value_or(""), "HOPPER");
  EXPECT_EQ(arch_from_chip_name("NVIDIA GB100 Identity").value_or(""), "BLACKWELL");
  EXPECT_FALSE(arch_from_chip_name("NVIDIA Device Identity CA, GSP").has_value());
  EXPECT_FALSE(arch_from_chip_name("XGH100").has_value());
  EXPECT_EQ(arch_from_id(0x180).value_or(""), "HOPPER");
  EXPECT_EQ(arch_from_id(0x1A0).value_or(""), "BLACKWELL");
  EXPECT_FALSE(arch_from_id(0x123).has_value());
}

// ---------------------------------------------------------------- certificates and signature (pure pieces)

TEST(VerifyGpuCert, NvtrustSampleSignatureChainAndValidity) {
  auto rep = parse_spdm_report(hex_fixture("nvtrust_hopper_report.hex"));
  auto chain = parse_pem_chain(fixture("nvtrust_hopper_certchain.pem"));
  ASSERT_EQ(chain.size(), 5u);
  auto sig = verify_report_signature(rep, *chain.front());
  EXPECT_TRUE(sig.ok) << sig.detail;
  auto c = verify_chain(chain, {});
  EXPECT_TRUE(c.ok) << c.detail;
  EXPECT_FALSE(c.anchored_in_extra_root);
  EXPECT_EQ(c.root_subject, "NVIDIA Device Identity CA");
  auto v = check_validity(chain, kNow);
  EXPECT_TRUE(v.ok) << v.detail;
  EXPECT_EQ(arch_from_chain(chain).value_or(""), "HOPPER");
}

TEST(VerifyGpuCert, TamperedMeasurementBreaksSignature) {
  auto bytes = hex_fixture("nvtrust_hopper_report.hex");
  bytes[37 + 8 + 10] ^= 0x01;  // a byte inside measurement block 1
  auto rep = parse_spdm_report(bytes);
  auto chain = parse_pem_chain(fixture("nvtrust_hopper_certchain.pem"));
  auto sig = verify_report_signature(rep, *chain.front());
  EXPECT_FALSE(sig.ok);
  EXPECT_NE(sig.detail.find("does NOT verify"), std::string::npos) << sig.detail;
}

TEST(VerifyGpuCert, ChainWithoutNvidiaRootFails) {
  auto chain = parse_pem_chain(fixture("nvtrust_hopper_certchain.pem"));
  chain.pop_back();  // drop the presented root: still anchors in the bundled copy
  EXPECT_TRUE(verify_chain(chain, {}).ok);
  // A chain that stops below the root and misses its intermediates cannot anchor.
  std::vector<X509Ptr> leaf_only;
  leaf_only.push_back(std::move(chain.front()));
  auto r = verify_chain(leaf_only, {});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.detail.find("does not verify to the NVIDIA Device Identity root"), std::string::npos) << r.detail;
}

TEST(VerifyGpuCert, PemParsingErrors) {
  EXPECT_THROW(parse_pem_chain(""), ParseError);
  EXPECT_THROW(parse_pem_chain("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), ParseError);
  EXPECT_THROW(parse_pem_chain("-----BEGIN CERTIFICATE-----\nMIIB"), ParseError);
}

TEST(VerifyGpuCert, BundledRootIsTheFixtureRoot) {
  auto bundled = parse_pem_chain(nvidia_device_identity_root_pem());
  auto fixture_root = parse_pem_chain(fixture("nvidia_device_identity_root.pem"));
  ASSERT_EQ(bundled.size(), 1u);
  EXPECT_EQ(fingerprint_sha256(*bundled[0]), fingerprint_sha256(*fixture_root[0]));
  EXPECT_EQ(fingerprint_sha256(*bundled[0]), "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48");
}

// ---------------------------------------------------------------- check_gpu_evidence, end to end

TEST(VerifyGpu, NvtrustSampleVerifiesWithItsNonce) {
  auto payload = vllm_payload({item(hex_fixture("nvtrust_hopper_report.hex"), fixture("nvtrust_hopper_certchain.pem"))},
                              kNvtrustNonce, "HOPPER");
  auto r = run(payload, kNvtrustNonce);
  EXPECT_TRUE(failed(r).empty()) << ::testing::PrintToString(failed(r));
  EXPECT_TRUE(r.ok());
  for (const char* id : {"gpu.payload", "gpu.payload_nonce", "gpu.0.evidence", "gpu.0.nonce", "gpu.0.spdm_signature",
                         "gpu.0.cert_chain", "gpu.0.cert_validity", "gpu.0.arch"}) {
    EXPECT_EQ(status(r, id), Status::Pass) << id << ": " << detail(r, id);
    EXPECT_FALSE(find(r, id)->simulated) << id;
  }
  EXPECT_EQ(fact(r, "gpu.count"), "1");
  EXPECT_EQ(fact(r, "gpu.0.arch"), "HOPPER");
  EXPECT_EQ(fact(r, "gpu.0.driver_version"), "550.90.07");
  EXPECT_EQ(fact(r, "gpu.0.vbios_version"), "96.00.9F.00.01");
  EXPECT_EQ(fact(r, "gpu.0.ppcie"), "false");
  EXPECT_EQ(status(r, "gpu.nras"), Status::Skipped);
  EXPECT_NE(detail(r, "gpu.nras").find("not requested"), std::string::npos);
}

TEST(VerifyGpu, NvtrustSampleFailsOnlyTheNonceCheckWithAnotherNonce) {
  const std::string other = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  auto payload = boost::json::value(
      boost::json::array{item(hex_fixture("nvtrust_hopper_report.hex"), fixture("nvtrust_hopper_certchain.pem"))});
  auto r = run(payload, other);
  EXPECT_EQ(failed(r), std::vector<std::string>{"gpu.0.nonce"});
  EXPECT_NE(detail(r, "gpu.0.nonce").find("differs from our nonce " + other), std::string::npos);
  EXPECT_FALSE(r.ok());
}

TEST(VerifyGpu, BadExpectedNonceIsAClearFailure) {
  auto payload = boost::json::value(
      boost::json::array{item(hex_fixture("nvtrust_hopper_report.hex"), fixture("nvtrust_hopper_certchain.pem"))});
  auto r = run(payload, "not-a-nonce");
  EXPECT_EQ(failed(r), std::vector<std::string>{"gpu.0.nonce"});
  EXPECT_NE(detail(r, "gpu.0.nonce").find("not 64 hex digits"), std::string::npos);
}

TEST(VerifyGpu, AttestationSdkHopperVerifies) {
  auto payload = boost::json::value(boost::json::array{
      item(hex_fixture("nvat_gpu_hopperAttestationReport.txt"), fixture("nvat_gpu_hopperCertChain.txt"))});
  auto r = run(payload, kSdkHopperNonce);
  EXPECT_TRUE(failed(r).empty()) << ::testing::PrintToString(failed(r));
  EXPECT_EQ(fact(r, "gpu.0.arch"), "HOPPER");
  EXPECT_EQ(fact(r, "gpu.0.driver_version"), "535.86.09");
}

TEST(VerifyGpu, InvalidSignatureFailsAtTheSignatureCheckOnly) {
  // Upstream pairs this report with hopperCertChainExpired.txt
  // (MockGpuEvidenceData::create_invalid_signature_scenario).
  auto payload =
      boost::json::value(boost::json::array{item(hex_fixture("nvat_gpu_hopperAttestationReportInvalidSignature.txt"),
                                                 fixture("nvat_gpu_hopperCertChainExpired.txt"))});
  auto r = run(payload, kNvtrustNonce);
  EXPECT_EQ(failed(r), std::vector<std::string>{"gpu.0.spdm_signature"});
  EXPECT_NE(detail(r, "gpu.0.spdm_signature").find("does NOT verify"), std::string::npos);
  // Also with the otherwise good chain of another device: the leaf key does not match either.
  auto payload2 = boost::json::value(boost::json::array{item(
      hex_fixture("nvat_gpu_hopperAttestationReportInvalidSignature.txt"), fixture("nvtrust_hopper_certchain.pem"))});
  EXPECT_EQ(failed(run(payload2, kNvtrustNonce)), std::vector<std::string>{"gpu.0.spdm_signature"});
}

TEST(VerifyGpu, CertChainExpiredFixtureFailsAtCertificateValidity) {
  // hopperCertChainExpired.txt's certificates carry notBefore 2020-10-17 (leaf/BROM) .. notAfter 9999-12-31, so
  // by the certificates' own dates it is only invalid outside that window: evaluated at 2020-01-01 it fails at
  // cert_validity (and nowhere else: the signature of the nvtrust report is not involved, the chain verifies).
  // A truly past-notAfter chain is exercised by ExpiredLeafFailsAtCertificateValidity below.
  auto chain = parse_pem_chain(fixture("nvat_gpu_hopperCertChainExpired.txt"));
  EXPECT_TRUE(verify_chain(chain, {}).ok);
  auto v = check_validity(chain, 1577836800);  // 2020-01-01
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.detail.find("not yet valid"), std::string::npos) << v.detail;

  GpuOptions opts = offline();
  opts.now = 1577836800;
  auto payload =
      boost::json::value(boost::json::array{item(hex_fixture("nvat_gpu_hopperAttestationReportInvalidSignature.txt"),
                                                 fixture("nvat_gpu_hopperCertChainExpired.txt"))});
  auto r = run(payload, kNvtrustNonce, opts);
  EXPECT_EQ(status(r, "gpu.0.cert_validity"), Status::Fail);
  EXPECT_EQ(status(r, "gpu.0.cert_chain"), Status::Pass);
}

TEST(VerifyGpu, BlackwellDetectedFromEvidence) {
  auto payload = boost::json::value(boost::json::array{item(hex_fixture("nvat_gpu_blackwellAttestationReport.txt"),
                                                            fixture("nvat_gpu_blackwellCertChain.txt"), std::nullopt)});
  auto r = run(payload, kNvtrustNonce);
  EXPECT_TRUE(failed(r).empty()) << ::testing::PrintToString(failed(r));
  EXPECT_EQ(fact(r, "gpu.0.arch"), "BLACKWELL");
  EXPECT_NE(detail(r, "gpu.0.arch").find("GPU_INFO (arch id 0x1a0) and certificate chip name"), std::string::npos)
      << detail(r, "gpu.0.arch");
  EXPECT_EQ(fact(r, "gpu.0.driver_version"), "575.32");
}

TEST(VerifyGpu, ArchClaimThatContradictsTheEvidenceIsReportedNotTrusted) {
  // The payload says HOPPER (vllm-proxy hard-codes it); the evidence is a B200. The detected arch wins; the wrong
  // claim is reported by a non-enforced check.
  auto payload = vllm_payload({item(hex_fixture("nvat_gpu_blackwellAttestationReport.txt"),
                                    fixture("nvat_gpu_blackwellCertChain.txt"), "HOPPER")},
                              kNvtrustNonce, "HOPPER");
  auto r = run(payload, kNvtrustNonce);
  EXPECT_EQ(failed(r), std::vector<std::string>{"gpu.0.arch_claim"});
  EXPECT_FALSE(find(r, "gpu.0.arch_claim")->enforced);
  EXPECT_NE(detail(r, "gpu.0.arch_claim").find("payload claims HOPPER but the evidence is BLACKWELL"),
            std::string::npos);
  EXPECT_EQ(status(r, "gpu.0.arch"), Status::Pass);
  EXPECT_EQ(fact(r, "gpu.0.arch"), "BLACKWELL");
  EXPECT_TRUE(r.ok());
}

TEST(VerifyGpu, ReportAndChainOfDifferentArchitecturesFail) {
  // B200 report signed by a B200 key, presented with an H100 chain: signature and arch both fail.
  auto payload = boost::json::value(boost::json::array{item(hex_fixture("nvat_gpu_blackwellAttestationReport.txt"),
                                                            fixture("nvtrust_hopper_certchain.pem"), std::nullopt)});
  auto r = run(payload, kNvtrustNonce);
  EXPECT_EQ(failed(r), (std::vector<std::string>{"gpu.0.spdm_signature", "gpu.0.arch"}));
  EXPECT_NE(detail(r, "gpu.0.arch").find("GPU_INFO says BLACKWELL but the certificate chain says HOPPER"),
            std::string::npos);
}

TEST(VerifyGpu, NvatHopperEvidenceFourKeyForm) {
  boost::system::error_code ec;
  auto arr = boost::json::parse(fixture("nvat_hopper_evidence.json"), ec);
  ASSERT_FALSE(ec);
  ASSERT_EQ(arr.as_array()[0].as_object().size(), 4u);  // arch, certificate, evidence, nonce
  auto r = run(arr, kNvatNonce);
  EXPECT_TRUE(failed(r).empty()) << ::testing::PrintToString(failed(r));
  EXPECT_EQ(fact(r, "gpu.0.arch"), "HOPPER");
  EXPECT_EQ(fact(r, "gpu.0.driver_version"), "590.12");
  EXPECT_EQ(fact(r, "gpu.0.ppcie"), "true");
  EXPECT_EQ(fact(r, "gpu.0.feature_flag"), "PPCIE");
  // The item's own nonce must agree with ours too.
  auto r2 = run(arr, kNvtrustNonce);
  EXPECT_EQ(failed(r2), std::vector<std::string>{"gpu.0.nonce"});
}

TEST(VerifyGpu, MultiGpuPpcieEvidenceVerifiesPerGpu) {
  boost::system::error_code ec;
  auto arr = boost::json::parse(fixture("nvat_multi_gpu_hopper.json"), ec);
  ASSERT_FALSE(ec);
  // As vllm-proxy would publish it: a JSON string around {"nonce","evidence_list","arch"}.
  auto payload = vllm_payload(arr.as_array(), kNvatNonce, "HOPPER");
  auto r = run(payload, kNvatNonce);
  EXPECT_TRUE(failed(r).empty()) << ::testing::PrintToString(failed(r));
  EXPECT_EQ(fact(r, "gpu.count"), "4");
  for (int n = 0; n < 4; ++n) {
    std::string p = "gpu." + std::to_string(n) + ".";
    for (const char* c : {"nonce", "spdm_signature", "cert_chain", "cert_validity", "arch"})
      EXPECT_EQ(status(r, p + c), Status::Pass) << p << c << ": " << detail(r, p + c);
    EXPECT_EQ(fact(r, p + "arch"), "HOPPER");
    EXPECT_EQ(fact(r, p + "ppcie"), "true");
  }
  EXPECT_EQ(status(r, "gpu.distinct_devices"), Status::Pass);
  EXPECT_NE(detail(r, "gpu.distinct_devices").find("4 distinct"), std::string::npos);
}

TEST(VerifyGpu, SameDeviceTwiceIsNotTwoGpus) {
  boost::system::error_code ec;
  auto arr = boost::json::parse(fixture("nvat_hopper_evidence.json"), ec);
  ASSERT_FALSE(ec);
  boost::json::array twice{arr.as_array()[0], arr.as_array()[0]};
  auto r = run(boost::json::value(twice), kNvatNonce);
  EXPECT_EQ(failed(r), std::vector<std::string>{"gpu.distinct_devices"});
}

TEST(VerifyGpu, NulPaddedPemIsTolerated) {
  std::string pem = fixture("nvtrust_hopper_certchain.pem") + std::string(64, '\0');
  auto payload = vllm_payload({item(hex_fixture("nvtrust_hopper_report.hex"), pem)}, kNvtrustNonce, "HOPPER");
  auto r = run(payload, kNvtrustNonce);
  EXPECT_TRUE(failed(r).empty()) << ::testing::PrintToString(failed(r));
  // NULs inside the base64 text itself are tolerated too.
  auto it = item(hex_fixture("nvtrust_hopper_report.hex"), fixture("nvtrust_hopper_certchain.pem"));
  it["certificate"] = std::string(it["certificate"].as_string()) + std::string(8, '\0');
  auto r2 = run(boost::json::value(boost::json::array{it}), kNvtrustNonce);
  EXPECT_TRUE(failed(r2).empty()) << ::testing::PrintToString(failed(r2));
}

TEST(VerifyGpu, ThreeKeyAndFourKeyItemsMixed) {
  boost::system::error_code ec;
  auto arr = boost::json::parse(fixture("nvat_multi_gpu_hopper.json"), ec);
  ASSERT_FALSE(ec);
  auto three = arr.as_array()[1].as_object();
  three.erase("nonce");
  ASSERT_EQ(three.size(), 3u);
  auto payload = vllm_payload({arr.as_array()[0], three}, kNvatNonce, "HOPPER");
  auto r = run(payload, kNvatNonce);
  EXPECT_TRUE(failed(r).empty()) << ::testing::PrintToString(failed(r));
}

TEST(VerifyGpu, MalformedPayloadsFailClearly) {
  auto r1 = run(boost::json::value("{not json"), kNvtrustNonce);
  EXPECT_EQ(failed(r1), std::vector<std::string>{"gpu.payload"});
  EXPECT_NE(detail(r1, "gpu.payload").find("not JSON"), std::string::npos);
  auto r2 = run(boost::json::value(boost::json::object{{"nonce", kNvtrustNonce}}), kNvtrustNonce);
  EXPECT_NE(detail(r2, "gpu.payload").find("evidence_list"), std::string::npos);
  auto r3 = run(boost::json::value(boost::json::array{}), kNvtrustNonce);
  EXPECT_NE(detail(r3, "gpu.payload").find("empty"), std::string::npos);
  auto r4 = run(boost::json::value(42), kNvtrustNonce);
  EXPECT_EQ(status(r4, "gpu.payload"), Status::Fail);

  auto good = item(hex_fixture("nvtrust_hopper_report.hex"), fixture("nvtrust_hopper_certchain.pem"));
  auto no_cert = good;
  no_cert.erase("certificate");
  auto bad_b64 = good;
  bad_b64["evidence"] = "!!!";
  auto short_rep = good;
  short_rep["evidence"] = b64(std::string("\x11\xe0\x01\xff", 4));
  auto bad_pem = good;
  bad_pem["certificate"] = b64(std::string("hello"));
  auto r5 = run(boost::json::value(boost::json::array{no_cert, bad_b64, short_rep, bad_pem, 7}), kNvtrustNonce);
  EXPECT_NE(detail(r5, "gpu.0.evidence").find("no \"certificate\""), std::string::npos);
  EXPECT_NE(detail(r5, "gpu.1.evidence").find("not base64"), std::string::npos);
  EXPECT_NE(detail(r5, "gpu.2.evidence").find("too short"), std::string::npos);
  EXPECT_NE(detail(r5, "gpu.3.evidence").find("no PEM certificate"), std::string::npos);
  EXPECT_NE(detail(r5, "gpu.4.evidence").find("not a JSON object"), std::string::npos);
  EXPECT_FALSE(r5.ok());
}

TEST(VerifyGpu, PayloadNonceMismatchFails) {
  auto payload = vllm_payload({item(hex_fixture("nvtrust_hopper_report.hex"), fixture("nvtrust_hopper_certchain.pem"))},
                              kNvatNonce, "HOPPER");
  auto r = run(payload, kNvtrustNonce);
  EXPECT_EQ(failed(r), std::vector<std::string>{"gpu.payload_nonce"});
}

// ---------------------------------------------------------------- a throwaway test PKI (simulated root)

struct Pki {
  EVP_PKEY* root_key = EVP_EC_gen("P-384");
  EVP_PKEY* leaf_key = EVP_EC_gen("P-384");
  X509* root = nullptr;
  X509* leaf = nullptr;
  ~Pki() {
    X509_free(root);
    X509_free(leaf);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(leaf_key);
  }
  static X509* make(EVP_PKEY* subject_key, EVP_PKEY* issuer_key, X509* issuer, const char* cn, std::int64_t nb,
                    std::int64_t na, bool ca) {
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), ca ? 1 : 2);
    X509_NAME* name = X509_NAME_new();
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509_NAME_free(name);
    ASN1_TIME_set(X509_getm_notBefore(x), static_cast<time_t>(nb));
    ASN1_TIME_set(X509_getm_notAfter(x), static_cast<time_t>(na));
    X509_set_pubkey(x, subject_key);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, nullptr, nullptr, 0);
    auto ext = [&](int nid, const char* value) {
      X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
      X509_add_ext(x, e, -1);
      X509_EXTENSION_free(e);
    };
    ext(NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    ext(NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    ext(NID_subject_key_identifier, "hash");
    ext(NID_authority_key_identifier, "keyid:always");
    X509_sign(x, issuer_key, EVP_sha384());
    return x;
  }
  static std::string pem(X509* x) {
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char* d = nullptr;
    long n = BIO_get_mem_data(b, &d);
    std::string s(d, static_cast<std::size_t>(n));
    BIO_free(b);
    return s;
  }
  // Re-sign `signed_data` with the leaf key, as a GPU would (raw r‖s, 48 bytes each).
  pi::Bytes sign(const pi::Bytes& data) const {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    std::size_t len = 0;
    EVP_DigestSignInit(ctx, nullptr, EVP_sha384(), nullptr, leaf_key);
    EVP_DigestSign(ctx, nullptr, &len, data.data(), data.size());
    pi::Bytes der(len);
    EVP_DigestSign(ctx, der.data(), &len, data.data(), data.size());
    EVP_MD_CTX_free(ctx);
    const unsigned char* p = der.data();
    ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(len));
    pi::Bytes out(96);
    BN_bn2binpad(ECDSA_SIG_get0_r(sig), out.data(), 48);
    BN_bn2binpad(ECDSA_SIG_get0_s(sig), out.data() + 48, 48);
    ECDSA_SIG_free(sig);
    return out;
  }
};

TEST(VerifyGpu, ExpiredLeafFailsAtCertificateValidity) {
  Pki pki;
  ASSERT_NE(pki.root_key, nullptr);
  pki.root = Pki::make(pki.root_key, pki.root_key, nullptr, "Simulated GPU Test Root", 1577836800, 1893456000, true);
  // Leaf valid during 2020 only: expired at kNow (2025-01-01).
  pki.leaf = Pki::make(pki.leaf_key, pki.root_key, pki.root, "Simulated GPU Test Leaf", 1577836800, 1609459199, false);
  auto original = hex_fixture("nvtrust_hopper_report.hex");
  auto rep = parse_spdm_report(original);
  pi::Bytes resigned = rep.signed_data;
  auto sig = pki.sign(rep.signed_data);
  resigned.insert(resigned.end(), sig.begin(), sig.end());

  GpuOptions opts = offline();
  opts.extra_root_pems = {Pki::pem(pki.root)};
  auto payload = boost::json::value(boost::json::array{item(resigned, Pki::pem(pki.leaf) + Pki::pem(pki.root))});
  auto r = run(payload, kNvtrustNonce, opts);
  EXPECT_EQ(failed(r), std::vector<std::string>{"gpu.0.cert_validity"});
  EXPECT_NE(detail(r, "gpu.0.cert_validity").find("expired before now=1735689600"), std::string::npos)
      << detail(r, "gpu.0.cert_validity");
  // The chain only anchors in the test root: labelled simulated.
  EXPECT_EQ(status(r, "gpu.0.cert_chain"), Status::Pass);
  EXPECT_TRUE(find(r, "gpu.0.cert_chain")->simulated);
  EXPECT_TRUE(find(r, "gpu.0.cert_validity")->simulated);
  EXPECT_FALSE(find(r, "gpu.0.spdm_signature")->simulated);
  // Arch still comes from the signed GPU_INFO (the test certificates name no chip).
  EXPECT_EQ(fact(r, "gpu.0.arch"), "HOPPER");

  // Without the extra root the same chain is rejected: only NVIDIA's root is trusted by default.
  auto r2 = run(payload, kNvtrustNonce);
  EXPECT_EQ(status(r2, "gpu.0.cert_chain"), Status::Fail);
  EXPECT_FALSE(find(r2, "gpu.0.cert_chain")->simulated);
}

TEST(VerifyGpu, PresentedSelfSignedRootIsNotTrustedByItself) {
  // A chain that ends in its own self-signed root must still anchor in a trusted root.
  Pki pki;
  pki.root = Pki::make(pki.root_key, pki.root_key, nullptr, "NVIDIA Device Identity CA", 1577836800, 4102444800, true);
  pki.leaf = Pki::make(pki.leaf_key, pki.root_key, pki.root, "GH100 A01 GSP FMC LF", 1577836800, 4102444800, false);
  auto rep = parse_spdm_report(hex_fixture("nvtrust_hopper_report.hex"));
  pi::Bytes resigned = rep.signed_data;
  auto sig = pki.sign(rep.signed_data);
  resigned.insert(resigned.end(), sig.begin(), sig.end());
  auto payload = boost::json::value(boost::json::array{item(resigned, Pki::pem(pki.leaf) + Pki::pem(pki.root))});
  auto r = run(payload, kNvtrustNonce);
  EXPECT_EQ(failed(r), std::vector<std::string>{"gpu.0.cert_chain"});
  EXPECT_EQ(status(r, "gpu.0.spdm_signature"), Status::Pass);  // signature by the (forged) leaf is consistent
}

}  // namespace
}  // namespace pi::verify
