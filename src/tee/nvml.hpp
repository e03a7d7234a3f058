#pragma once
// NVML (libnvidia-ml.so.1) loaded at run time with dlopen: the proxy builds and runs on machines without NVIDIA
// libraries, and the same code path talks to a real H100/B200 driver or to the project's simulated NVML
// (build/libnvidia-ml-sim.so, see src/nvml_sim/ and docs/gpu-evidence.md).
//
// We declare the few NVML types and functions we use ourselves (namespace pi::tee::nvml_abi), with the layouts and
// values of NVIDIA's nvml.h (CUDA 12.x / driver R550+ headers): sizes are pinned by static_asserts.
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "crypto/bytes.hpp"
#include "protocol/signing.hpp"

namespace pi::tee {

namespace nvml_abi {

using nvmlReturn_t = int;  // enum nvmlReturn_enum (int-sized)
struct nvmlDevice_st;
using nvmlDevice_t = nvmlDevice_st*;

inline constexpr nvmlReturn_t NVML_SUCCESS = 0;
inline constexpr nvmlReturn_t NVML_ERROR_UNINITIALIZED = 1;
inline constexpr nvmlReturn_t NVML_ERROR_INVALID_ARGUMENT = 2;
inline constexpr nvmlReturn_t NVML_ERROR_NOT_SUPPORTED = 3;
inline constexpr nvmlReturn_t NVML_ERROR_NOT_FOUND = 6;
inline constexpr nvmlReturn_t NVML_ERROR_INSUFFICIENT_SIZE = 7;
inline constexpr nvmlReturn_t NVML_ERROR_DRIVER_NOT_LOADED = 9;
inline constexpr nvmlReturn_t NVML_ERROR_TIMEOUT = 10;
inline constexpr nvmlReturn_t NVML_ERROR_FUNCTION_NOT_FOUND = 13;
inline constexpr nvmlReturn_t NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25;
inline constexpr nvmlReturn_t NVML_ERROR_NOT_READY = 27;
inline constexpr nvmlReturn_t NVML_ERROR_UNKNOWN = 999;

// nvmlDeviceArchitecture_t values
inline constexpr unsigned NVML_DEVICE_ARCH_AMPERE = 7;
inline constexpr unsigned NVML_DEVICE_ARCH_ADA = 8;
inline constexpr unsigned NVML_DEVICE_ARCH_HOPPER = 9;
inline constexpr unsigned NVML_DEVICE_ARCH_BLACKWELL = 10;

inline constexpr unsigned NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE = 80;
inline constexpr unsigned NVML_DEVICE_UUID_V2_BUFFER_SIZE = 96;
inline constexpr unsigned NVML_DEVICE_NAME_V2_BUFFER_SIZE = 96;

// Confidential computing
inline constexpr unsigned NVML_CC_SYSTEM_ENVIRONMENT_UNAVAILABLE = 0;
inline constexpr unsigned NVML_CC_SYSTEM_ENVIRONMENT_SIM = 1;
inline constexpr unsigned NVML_CC_SYSTEM_ENVIRONMENT_PROD = 2;
inline constexpr unsigned NVML_CC_SYSTEM_FEATURE_DISABLED = 0;
inline constexpr unsigned NVML_CC_SYSTEM_FEATURE_ENABLED = 1;
inline constexpr unsigned NVML_CC_SYSTEM_MULTIGPU_NONE = 0;
inline constexpr unsigned NVML_CC_SYSTEM_MULTIGPU_PROTECTED_PCIE = 1;
inline constexpr unsigned NVML_CC_ACCEPTING_CLIENT_REQUESTS_FALSE = 0;
inline constexpr unsigned NVML_CC_ACCEPTING_CLIENT_REQUESTS_TRUE = 1;

inline constexpr unsigned NVML_GPU_CERT_CHAIN_SIZE = 0x1000;
inline constexpr unsigned NVML_GPU_ATTESTATION_CERT_CHAIN_SIZE = 0x1400;
inline constexpr unsigned NVML_CC_GPU_CEC_NONCE_SIZE = 0x20;
inline constexpr unsigned NVML_CC_GPU_ATTESTATION_REPORT_SIZE = 0x2000;
inline constexpr unsigned NVML_CC_GPU_CEC_ATTESTATION_REPORT_SIZE = 0x1000;

struct nvmlConfComputeSystemState_t {
  unsigned int environment;
  unsigned int ccFeature;
  unsigned int devToolsMode;
};

struct nvmlSystemConfComputeSettings_v1_t {
  unsigned int version;  // nvmlSystemConfComputeSettings_v1 (see below)
  unsigned int environment;
  unsigned int ccFeature;
  unsigned int devToolsMode;
  unsigned int multiGpuMode;
};
// NVML_STRUCT_VERSION(SystemConfComputeSettings, 1) = sizeof(struct) | (1 << 24)
inline constexpr unsigned int nvmlSystemConfComputeSettings_v1 =
    static_cast<unsigned int>(sizeof(nvmlSystemConfComputeSettings_v1_t)) | (1u << 24);

struct nvmlConfComputeGpuCertificate_t {
  unsigned int certChainSize;
  unsigned int attestationCertChainSize;
  unsigned char certChain[NVML_GPU_CERT_CHAIN_SIZE];
  unsigned char attestationCertChain[NVML_GPU_ATTESTATION_CERT_CHAIN_SIZE];
};

struct nvmlConfComputeGpuAttestationReport_t {
  unsigned int isCecAttestationReportPresent;
  unsigned int attestationReportSize;
  unsigned int cecAttestationReportSize;
  unsigned char nonce[NVML_CC_GPU_CEC_NONCE_SIZE];  // in: the verifier's nonce
  unsigned char attestationReport[NVML_CC_GPU_ATTESTATION_REPORT_SIZE];
  unsigned char cecAttestationReport[NVML_CC_GPU_CEC_ATTESTATION_REPORT_SIZE];
};

static_assert(sizeof(nvmlConfComputeSystemState_t) == 12);
static_assert(sizeof(nvmlSystemConfComputeSettings_v1_t) == 20);
static_assert(nvmlSystemConfComputeSettings_v1 == 0x01000014u);
static_assert(sizeof(nvmlConfComputeGpuCertificate_t) == 8 + 0x1000 + 0x1400);
static_assert(sizeof(nvmlConfComputeGpuAttestationReport_t) == 12 + 0x20 + 0x2000 + 0x1000);

// Function types, exactly as nvml.h prototypes them.
using nvmlInit_v2_fn = nvmlReturn_t (*)();
using nvmlShutdown_fn = nvmlReturn_t (*)();
using nvmlErrorString_fn = const char* (*)(nvmlReturn_t);
using nvmlSystemGetDriverVersion_fn = nvmlReturn_t (*)(char* version, unsigned int length);
using nvmlDeviceGetCount_v2_fn = nvmlReturn_t (*)(unsigned int* deviceCount);
using nvmlDeviceGetHandleByIndex_v2_fn = nvmlReturn_t (*)(unsigned int index, nvmlDevice_t* device);
using nvmlDeviceGetUUID_fn = nvmlReturn_t (*)(nvmlDevice_t device, char* uuid, unsigned int length);
using nvmlDeviceGetName_fn = nvmlReturn_t (*)(nvmlDevice_t device, char* name, unsigned int length);
using nvmlDeviceGetArchitecture_fn = nvmlReturn_t (*)(nvmlDevice_t device, unsigned int* arch);
using nvmlSystemGetConfComputeState_fn = nvmlReturn_t (*)(nvmlConfComputeSystemState_t* state);
using nvmlSystemGetConfComputeGpusReadyState_fn = nvmlReturn_t (*)(unsigned int* isAcceptingWork);
using nvmlSystemGetConfComputeSettings_fn = nvmlReturn_t (*)(nvmlSystemConfComputeSettings_v1_t* settings);
using nvmlDeviceGetConfComputeGpuAttestationReport_fn = nvmlReturn_t (*)(nvmlDevice_t device,
                                                                         nvmlConfComputeGpuAttestationReport_t* report);
using nvmlDeviceGetConfComputeGpuCertificate_fn = nvmlReturn_t (*)(nvmlDevice_t device,
                                                                   nvmlConfComputeGpuCertificate_t* cert);

}  // namespace nvml_abi

// Why a collection failed (the proxy turns every kind into a clear gpu_evidence_error, never into evidence).
enum class NvmlErrorKind {
  None,
  LibraryMissing,  // dlopen failed (no NVIDIA driver on this machine, or a wrong --nvml-lib path)
  SymbolMissing,   // the library lacks a function we need (driver too old for confidential computing)
  InitFailed,      // nvmlInit_v2 failed (driver not loaded, no permission, ...)
  CcOff,           // confidential computing is not enabled on this system
  NotReady,        // CC is on but the GPUs do not accept work yet (nvidia-smi conf-compute -srs 1 not done)
  NoDevices,       // CC on, zero GPUs
  DeviceError,     // a per-device call failed
};
const char* to_string(NvmlErrorKind k);

struct NvmlCcState {
  unsigned environment = 0;  // NVML_CC_SYSTEM_ENVIRONMENT_*
  bool cc_enabled = false;
  bool dev_tools_mode = false;
  bool gpus_ready = false;
  bool settings_known = false;  // nvmlSystemGetConfComputeSettings answered
  unsigned multi_gpu_mode = 0;  // NVML_CC_SYSTEM_MULTIGPU_*
  bool ppcie = false;           // multi_gpu_mode == PROTECTED_PCIE
};

struct NvmlGpu {
  unsigned index = 0;
  std::string uuid;            // "GPU-..."
  std::string name;            // "NVIDIA H100 80GB HBM3"
  unsigned arch_code = 0;      // nvmlDeviceArchitecture_t (0 when the call is unsupported)
  std::string arch;            // "HOPPER", "BLACKWELL", ... ("UNKNOWN" if neither the device nor the evidence says)
  Bytes report;                // SPDM GET_MEASUREMENTS request ‖ signed response
  std::string cert_chain_pem;  // attestation certificate chain, PEM, leaf first, trailing NULs removed
};

struct NvmlCollection {
  NvmlErrorKind error_kind = NvmlErrorKind::None;
  std::string error;  // human-readable; empty when ok()
  std::string driver_version;
  NvmlCcState cc;
  std::vector<NvmlGpu> gpus;
  bool simulated = false;  // the library is the project's simulated NVML
  bool ok() const { return error_kind == NvmlErrorKind::None; }
};

// Architecture name from an nvmlDeviceArchitecture_t code; nullopt for codes we do not name.
std::optional<std::string> nvml_arch_name(unsigned code);
// Architecture from the GPU_INFO opaque field of an SPDM report (0x180 HOPPER, 0x1A0/0x1B0 BLACKWELL, 0x170
// AMPERE), read with the shared parser (protocol/gpu_spdm.hpp); nullopt when the report does not parse or
// the id is unknown.
std::optional<std::string> arch_from_report(ByteView report);

class NvmlError : public std::runtime_error {
 public:
  NvmlError(NvmlErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  NvmlErrorKind kind() const { return kind_; }

 private:
  NvmlErrorKind kind_;
};

// One loaded NVML. NOT thread-safe: call collect() from one thread at a time (GpuEvidenceCollector does so from its
// single NVML thread). nvmlInit_v2 runs in open(), nvmlShutdown + dlclose in the destructor.
class NvmlLibrary {
 public:
  static constexpr const char* kDefaultPath = "libnvidia-ml.so.1";

  // dlopen(path) (a bare soname searches the usual library path), dlsym of the core functions, nvmlInit_v2.
  // Throws NvmlError (LibraryMissing / SymbolMissing / InitFailed) with a message naming the path and dlerror().
  static std::unique_ptr<NvmlLibrary> open(const std::string& path = kDefaultPath);
  ~NvmlLibrary();
  NvmlLibrary(const NvmlLibrary&) = delete;
  NvmlLibrary& operator=(const NvmlLibrary&) = delete;

  // Blocking: CC state, GPUs-ready state, CC settings, then per device UUID, name, architecture, attestation
  // report over `nonce` and certificate chain. Never throws for NVML failures: they come back as error_kind/error.
  NvmlCollection collect(const protocol::Nonce& nonce);

  const std::string& path() const { return path_; }
  // True when the library exports pi_nvml_sim_is_simulated() returning non-zero (the project's simulated NVML).
  bool simulated() const { return simulated_; }

 private:
  struct Fns;
  NvmlLibrary() = default;
  std::string err(nvml_abi::nvmlReturn_t rc) const;

  void* handle_ = nullptr;
  bool initialized_ = false;
  bool simulated_ = false;
  std::string path_;
  std::unique_ptr<Fns> fns_;
};

}  // namespace pi::tee
