#pragma once
// Internals of the simulated NVML (build/libnvidia-ml-sim.so). Everything it produces is SIMULATED:
//  * testpki: SPDM GET_MEASUREMENTS reports over the caller's nonce, signed (ECDSA P-384) by per-GPU test device
//    keys whose chains end in a generated TEST root (PI_NVML_SIM_PKI_DIR/root.cert.pem) — never NVIDIA's root;
//  * replay: recorded real evidence from a fixture, returned whatever the nonce (so the verifier sees a mismatch).
// See docs/gpu-evidence.md for the environment variables.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "crypto/bytes.hpp"

namespace pi::nvml_sim {

struct SimGpu {
  std::string uuid;
  std::string name;
  unsigned arch_code = 9;  // nvmlDeviceArchitecture_t
  std::string cert_chain_pem;
  // testpki
  std::string leaf_key_pem;  // PKCS#8 PEM of the device's P-384 key
  pi::Bytes fwid;            // 48 bytes, stable per device
  // replay
  pi::Bytes replay_report;
};

struct SimConfig {
  enum class Mode { TestPki, Replay } mode = Mode::TestPki;
  unsigned gpus = 1;
  bool ppcie = false;
  bool cc_on = true;
  bool ready = true;
  unsigned delay_ms = 0;
  std::string arch = "HOPPER";  // HOPPER | BLACKWELL (testpki)
  std::string pki_dir;
  std::string replay_path;
  std::string driver_version = "550.90.07";
};

// Reads PI_NVML_SIM_* (throws std::runtime_error with a clear message on a bad value).
SimConfig config_from_env();

// Builds the device list for `cfg` (testpki: loads or generates the PKI under cfg.pki_dir, under a file lock;
// replay: parses the fixture). Throws std::runtime_error.
std::vector<SimGpu> make_gpus(const SimConfig& cfg);

// testpki: request(nonce) ‖ response signed by the GPU's leaf key. Throws std::runtime_error.
pi::Bytes make_report(const SimConfig& cfg, const SimGpu& gpu, const std::uint8_t nonce[32]);

}  // namespace pi::nvml_sim
