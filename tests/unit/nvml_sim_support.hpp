#pragma once
// Shared by the tests that load the simulated NVML (build/libnvidia-ml-sim.so) through dlopen.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "crypto/random.hpp"
#include "protocol/signing.hpp"

namespace pi::testsupport {

// The simulated library next to the test binary (or $PI_NVML_SIM_LIB).
inline std::string sim_lib_path() {
  if (const char* p = std::getenv("PI_NVML_SIM_LIB")) return p;
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "libnvidia-ml-sim.so").string();
}

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline protocol::Nonce random_nonce() {
  protocol::Nonce n{};
  crypto::random_fill(n);
  return n;
}

// Every environment variable the simulated library reads (tests reset them between cases).
inline constexpr const char* kSimVars[] = {"PI_NVML_SIM_MODE", "PI_NVML_SIM_GPUS",    "PI_NVML_SIM_PPCIE",
                                           "PI_NVML_SIM_CC",   "PI_NVML_SIM_READY",   "PI_NVML_SIM_DELAY_MS",
                                           "PI_NVML_SIM_ARCH", "PI_NVML_SIM_PKI_DIR", "PI_NVML_SIM_REPLAY"};

// Base fixture for tests that load the simulated library: one test-PKI directory per suite, and every
// simulator variable reset around each case (the library reads them at nvmlInit).
class SimNvmlTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/pi-nvml-sim-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    pki_dir_ = tmpl;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    std::filesystem::remove_all(pki_dir_, ec);
  }
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(sim_lib_path()))
        << sim_lib_path() << " is missing: build the nvidia-ml-sim target (ninja -C <build> nvidia-ml-sim)";
    for (const char* v : kSimVars) unsetenv(v);
    setenv("PI_NVML_SIM_PKI_DIR", pki_dir_.c_str(), 1);
  }
  void TearDown() override {
    for (const char* v : kSimVars) unsetenv(v);
  }
  // The simulated test root (written by the library into the PKI directory).
  static std::string test_root() { return read_text(pki_dir_ + "/root.cert.pem"); }

  static inline std::string pki_dir_;
};

}  // namespace pi::testsupport
