// NVML through the real dlopen path, against the project's simulated NVML (build/libnvidia-ml-sim.so):
// test-PKI evidence for 1 and 8 GPUs verifies with the verifier's GPU checks when the generated test root is trusted
// and carries our nonce; replayed recordings are reported as a nonce mismatch; a missing library and CC/readiness
// problems are clear errors.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "crypto/random.hpp"
#include "nvml_sim_support.hpp"
#include "tee/gpu_evidence.hpp"
#include "tee/nvml.hpp"
#include "verify/gpu.hpp"

namespace {

using pi::tee::GpuEvidenceCollector;
using pi::tee::GpuEvidenceResult;
using pi::tee::NvmlErrorKind;
using pi::tee::NvmlLibrary;
using pi::verify::Status;

using pi::testsupport::random_nonce;
using pi::testsupport::read_text;
using pi::testsupport::sim_lib_path;

class NvmlSim : public pi::testsupport::SimNvmlTest {
 protected:
  pi::verify::Report verify(const GpuEvidenceResult& r, const pi::protocol::Nonce& nonce, bool trust_test_root) {
    pi::verify::GpuOptions o;
    if (trust_test_root) o.extra_root_pems.push_back(test_root());
    pi::verify::Report rep;
    pi::verify::check_gpu_evidence(boost::json::value(r.nvidia_payload), pi::to_hex(nonce), o, rep);
    return rep;
  }

  static void expect_all_gpu_checks_pass(const pi::verify::Report& rep, std::size_t gpus) {
    for (const auto& c : rep.checks) {
      if (c.enforced) {
        EXPECT_EQ(c.status, Status::Pass) << c.id << ": " << c.detail;
      }
    }
    for (std::size_t i = 0; i < gpus; ++i) {
      const std::string p = "gpu." + std::to_string(i) + ".";
      for (const char* id : {"nonce", "spdm_signature", "cert_chain", "cert_validity", "arch"}) {
        const auto* c = rep.find(p + id);
        ASSERT_NE(c, nullptr) << p << id;
        EXPECT_EQ(c->status, Status::Pass) << c->id << ": " << c->detail;
      }
      // Trusted only because of the test root: the verifier labels the chain simulated.
      EXPECT_TRUE(rep.find(p + "cert_chain")->simulated);
    }
    EXPECT_TRUE(rep.ok());
  }
};

TEST_F(NvmlSim, MissingLibraryIsAClearError) {
  try {
    NvmlLibrary::open("/nonexistent/libnvidia-ml.so.1");
    FAIL() << "open must throw";
  } catch (const pi::tee::NvmlError& e) {
    EXPECT_EQ(e.kind(), NvmlErrorKind::LibraryMissing);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/libnvidia-ml.so.1"), std::string::npos) << e.what();
  }
  pi::tee::GpuEvidenceOptions o;
  o.library_path = "/nonexistent/libnvidia-ml.so.1";
  GpuEvidenceCollector c(o);
  EXPECT_FALSE(c.available());
  auto r = c.collect_blocking(random_nonce());
  EXPECT_EQ(r.status, pi::tee::GpuEvidenceStatus::Unavailable);
  EXPECT_NE(r.error.find("cannot load NVML library"), std::string::npos) << r.error;
  boost::json::object report;
  r.apply_to(report);
  EXPECT_TRUE(report.at("nvidia_payload").is_null());
  EXPECT_TRUE(report.at("gpu_evidence").is_null());
  EXPECT_EQ(report.at("gpu_evidence_error").as_string(), r.error);
}

TEST_F(NvmlSim, LibraryWithoutNvmlSymbolsIsAClearError) {
  // Any shared library that is not NVML: libc.
  try {
    NvmlLibrary::open("libc.so.6");
    FAIL() << "open must throw";
  } catch (const pi::tee::NvmlError& e) {
    EXPECT_EQ(e.kind(), NvmlErrorKind::SymbolMissing);
    EXPECT_NE(std::string(e.what()).find("nvmlInit_v2"), std::string::npos) << e.what();
  }
}

TEST_F(NvmlSim, OneGpuTestPkiEvidenceVerifiesAndCarriesOurNonce) {
  auto lib = NvmlLibrary::open(sim_lib_path());
  EXPECT_TRUE(lib->simulated());
  auto nonce = random_nonce();
  auto c = lib->collect(nonce);
  ASSERT_TRUE(c.ok()) << c.error;
  ASSERT_EQ(c.gpus.size(), 1u);
  EXPECT_TRUE(c.simulated);
  EXPECT_TRUE(c.cc.cc_enabled);
  EXPECT_TRUE(c.cc.gpus_ready);
  EXPECT_TRUE(c.cc.settings_known);
  EXPECT_FALSE(c.cc.ppcie);
  EXPECT_EQ(c.gpus[0].arch, "HOPPER");
  EXPECT_EQ(c.gpus[0].arch_code, 9u);
  EXPECT_NE(c.gpus[0].name.find("SIMULATED"), std::string::npos);
  EXPECT_EQ(c.gpus[0].uuid.rfind("GPU-", 0), 0u);
  EXPECT_EQ(c.driver_version, "550.90.07");
  // The SPDM request inside the report carries our nonce at bytes 4..36.
  ASSERT_GT(c.gpus[0].report.size(), 37u);
  EXPECT_TRUE(std::equal(nonce.begin(), nonce.end(), c.gpus[0].report.begin() + 4));
  EXPECT_EQ(pi::tee::arch_from_report(c.gpus[0].report), "HOPPER");

  auto r = GpuEvidenceCollector::build_result(c, nonce);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.simulated);
  EXPECT_EQ(r.nonce_hex, pi::to_hex(nonce));
  expect_all_gpu_checks_pass(verify(r, nonce, true), 1);

  // The 4-key item form (gpu_evidence) verifies the same way.
  pi::verify::GpuOptions o;
  o.extra_root_pems.push_back(test_root());
  pi::verify::Report rep;
  boost::json::array items;
  for (const auto& it : r.gpu_evidence) items.push_back(it.to_json());
  pi::verify::check_gpu_evidence(boost::json::value(items), pi::to_hex(nonce), o, rep);
  expect_all_gpu_checks_pass(rep, 1);
}

TEST_F(NvmlSim, WithoutTheTestRootTheChainDoesNotVerify) {
  auto lib = NvmlLibrary::open(sim_lib_path());
  auto nonce = random_nonce();
  auto r = GpuEvidenceCollector::build_result(lib->collect(nonce), nonce);
  ASSERT_TRUE(r.ok()) << r.error;
  auto rep = verify(r, nonce, false);
  EXPECT_FALSE(rep.ok());
  ASSERT_NE(rep.find("gpu.0.cert_chain"), nullptr);
  EXPECT_EQ(rep.find("gpu.0.cert_chain")->status, Status::Fail);
  EXPECT_EQ(rep.find("gpu.0.spdm_signature")->status, Status::Pass);  // signed by the leaf, just not NVIDIA's
}

TEST_F(NvmlSim, EightGpusInPpcieModeVerifyAsDistinctDevices) {
  setenv("PI_NVML_SIM_GPUS", "8", 1);
  setenv("PI_NVML_SIM_PPCIE", "1", 1);
  auto lib = NvmlLibrary::open(sim_lib_path());
  auto nonce = random_nonce();
  auto c = lib->collect(nonce);
  ASSERT_TRUE(c.ok()) << c.error;
  ASSERT_EQ(c.gpus.size(), 8u);
  EXPECT_TRUE(c.cc.ppcie);
  auto r = GpuEvidenceCollector::build_result(c, nonce);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.gpu_evidence.size(), 8u);
  EXPECT_TRUE(r.info.at("ppcie").as_bool());
  auto rep = verify(r, nonce, true);
  expect_all_gpu_checks_pass(rep, 8);
  ASSERT_NE(rep.find("gpu.distinct_devices"), nullptr);
  EXPECT_EQ(rep.find("gpu.distinct_devices")->status, Status::Pass);
  int ppcie_facts = 0;
  for (const auto& [k, v] : rep.facts)
    if (k.size() > 6 && k.substr(k.size() - 6) == ".ppcie" && v == "true") ++ppcie_facts;
  EXPECT_EQ(ppcie_facts, 8);
}

TEST_F(NvmlSim, BlackwellIsDetectedNotHardCoded) {
  setenv("PI_NVML_SIM_ARCH", "blackwell", 1);
  auto lib = NvmlLibrary::open(sim_lib_path());
  auto nonce = random_nonce();
  auto c = lib->collect(nonce);
  ASSERT_TRUE(c.ok()) << c.error;
  EXPECT_EQ(c.gpus.at(0).arch, "BLACKWELL");
  auto r = GpuEvidenceCollector::build_result(c, nonce);
  EXPECT_EQ(r.arch, "BLACKWELL");
  EXPECT_NE(r.nvidia_payload.find("\"arch\": \"BLACKWELL\""), std::string::npos);
  auto rep = verify(r, nonce, true);
  expect_all_gpu_checks_pass(rep, 1);
}

TEST_F(NvmlSim, TamperedReportFailsTheSignatureCheck) {
  auto lib = NvmlLibrary::open(sim_lib_path());
  auto nonce = random_nonce();
  auto c = lib->collect(nonce);
  ASSERT_TRUE(c.ok()) << c.error;
  c.gpus[0].report[60] ^= 0x01;  // inside the first measurement block
  auto rep = verify(GpuEvidenceCollector::build_result(c, nonce), nonce, true);
  EXPECT_EQ(rep.find("gpu.0.spdm_signature")->status, Status::Fail);
  EXPECT_FALSE(rep.ok());
}

TEST_F(NvmlSim, ReplayedRecordingIsANonceMismatch) {
  setenv("PI_NVML_SIM_MODE", "replay", 1);
  setenv("PI_NVML_SIM_REPLAY", PI_FIXTURES_DIR "/nvidia/nvat_multi_gpu_hopper.json", 1);
  auto lib = NvmlLibrary::open(sim_lib_path());
  auto nonce = random_nonce();
  auto c = lib->collect(nonce);
  ASSERT_TRUE(c.ok()) << c.error;
  ASSERT_EQ(c.gpus.size(), 4u);
  EXPECT_TRUE(c.simulated);
  auto r = GpuEvidenceCollector::build_result(c, nonce);
  auto rep = verify(r, nonce, false);
  EXPECT_FALSE(rep.ok());
  for (int i = 0; i < 4; ++i) {
    const std::string p = "gpu." + std::to_string(i) + ".";
    ASSERT_NE(rep.find(p + "nonce"), nullptr);
    EXPECT_EQ(rep.find(p + "nonce")->status, Status::Fail);
    EXPECT_NE(rep.find(p + "nonce")->detail.find("differs from our nonce"), std::string::npos);
    // The recording itself is genuine NVIDIA evidence: signature and chain still verify.
    EXPECT_EQ(rep.find(p + "spdm_signature")->status, Status::Pass) << rep.find(p + "spdm_signature")->detail;
    EXPECT_EQ(rep.find(p + "cert_chain")->status, Status::Pass) << rep.find(p + "cert_chain")->detail;
  }
}

TEST_F(NvmlSim, CcOffNotReadyAndNoGpuAreClearErrors) {
  {
    setenv("PI_NVML_SIM_CC", "off", 1);
    auto lib = NvmlLibrary::open(sim_lib_path());
    auto c = lib->collect(random_nonce());
    EXPECT_EQ(c.error_kind, NvmlErrorKind::CcOff);
    EXPECT_NE(c.error.find("not enabled"), std::string::npos) << c.error;
    EXPECT_TRUE(c.gpus.empty());
    unsetenv("PI_NVML_SIM_CC");
  }
  {
    setenv("PI_NVML_SIM_READY", "0", 1);
    auto lib = NvmlLibrary::open(sim_lib_path());
    auto c = lib->collect(random_nonce());
    EXPECT_EQ(c.error_kind, NvmlErrorKind::NotReady);
    EXPECT_NE(c.error.find("not ready"), std::string::npos) << c.error;
    unsetenv("PI_NVML_SIM_READY");
  }
  {
    setenv("PI_NVML_SIM_GPUS", "0", 1);
    auto lib = NvmlLibrary::open(sim_lib_path());
    auto c = lib->collect(random_nonce());
    EXPECT_EQ(c.error_kind, NvmlErrorKind::NoDevices);
    auto r = GpuEvidenceCollector::build_result(c, random_nonce());
    boost::json::object report;
    r.apply_to(report);
    EXPECT_TRUE(report.at("nvidia_payload").is_null());
    EXPECT_NE(report.at("gpu_evidence_error").as_string().find("no GPU"), std::string::npos);
  }
}

TEST_F(NvmlSim, BadSimulatorConfigurationFailsInitWithTheReason) {
  setenv("PI_NVML_SIM_GPUS", "9", 1);
  try {
    NvmlLibrary::open(sim_lib_path());
    FAIL() << "open must throw";
  } catch (const pi::tee::NvmlError& e) {
    EXPECT_EQ(e.kind(), NvmlErrorKind::InitFailed);
    EXPECT_NE(std::string(e.what()).find("PI_NVML_SIM_GPUS"), std::string::npos) << e.what();
  }
  setenv("PI_NVML_SIM_GPUS", "1", 1);
  setenv("PI_NVML_SIM_MODE", "replay", 1);  // without PI_NVML_SIM_REPLAY
  EXPECT_THROW(NvmlLibrary::open(sim_lib_path()), pi::tee::NvmlError);
}

TEST_F(NvmlSim, NvidiaPayloadIsVllmProxyShaped) {
  auto lib = NvmlLibrary::open(sim_lib_path());
  auto nonce = random_nonce();
  auto r = GpuEvidenceCollector::build_result(lib->collect(nonce), nonce);
  ASSERT_TRUE(r.ok()) << r.error;
  // json.dumps({"nonce", "evidence_list": [{"certificate", "evidence", "arch"}], "arch"}) with default separators.
  EXPECT_EQ(
      r.nvidia_payload.rfind("{\"nonce\": \"" + pi::to_hex(nonce) + "\", \"evidence_list\": [{\"certificate\": \"", 0),
      0u);
  auto v = boost::json::parse(r.nvidia_payload);
  const auto& o = v.as_object();
  EXPECT_EQ(o.at("arch").as_string(), "HOPPER");
  const auto& item = o.at("evidence_list").as_array().at(0).as_object();
  EXPECT_EQ(item.size(), 3u);
  const auto ge = r.gpu_evidence.at(0).to_json();
  EXPECT_EQ(ge.at("nonce").as_string(), pi::to_hex(nonce));
  EXPECT_EQ(ge.at("certificate"), item.at("certificate"));
  EXPECT_EQ(ge.at("evidence"), item.at("evidence"));
  EXPECT_EQ(ge.at("arch").as_string(), "HOPPER");
}

TEST(NvmlAbi, StructLayoutsMatchNvidiaHeader) {
  using namespace pi::tee::nvml_abi;
  EXPECT_EQ(offsetof(nvmlConfComputeGpuAttestationReport_t, nonce), 12u);
  EXPECT_EQ(offsetof(nvmlConfComputeGpuAttestationReport_t, attestationReport), 44u);
  EXPECT_EQ(offsetof(nvmlConfComputeGpuAttestationReport_t, cecAttestationReport), 44u + 0x2000);
  EXPECT_EQ(offsetof(nvmlConfComputeGpuCertificate_t, certChain), 8u);
  EXPECT_EQ(offsetof(nvmlConfComputeGpuCertificate_t, attestationCertChain), 8u + 0x1000);
  EXPECT_EQ(offsetof(nvmlSystemConfComputeSettings_v1_t, multiGpuMode), 16u);
}

TEST(NvmlArch, FromReportAndCode) {
  EXPECT_EQ(pi::tee::nvml_arch_name(9), "HOPPER");
  EXPECT_EQ(pi::tee::nvml_arch_name(10), "BLACKWELL");
  EXPECT_EQ(pi::tee::nvml_arch_name(1234), std::nullopt);
  auto hex = read_text(PI_FIXTURES_DIR "/nvidia/nvat_gpu_blackwellAttestationReport.txt");
  while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r')) hex.pop_back();
  auto bw = pi::from_hex(hex);
  ASSERT_TRUE(bw);
  EXPECT_EQ(pi::tee::arch_from_report(*bw), "BLACKWELL");
  EXPECT_EQ(pi::tee::arch_from_report(pi::Bytes(10, 0)), std::nullopt);
  pi::Bytes junk(500, 0xff);
  EXPECT_EQ(pi::tee::arch_from_report(junk), std::nullopt);
}

}  // namespace
