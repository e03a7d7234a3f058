// The simulated NVML's exported C functions: the same names, prototypes and struct layouts as NVIDIA's
// libnvidia-ml.so.1 (declared in tee/nvml.hpp), so the proxy's real dlopen/dlsym path is what the tests exercise.
//
// No global constructors or destructors: all state lives in a function-local heap object created on first use and
// never destroyed (dlclose cannot run a destructor that touches freed OpenSSL state). Internally serialised by a
// mutex; a call counter and a concurrency detector (entered before the mutex) let tests prove the caller never
// runs NVML calls concurrently.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "nvml_sim/sim.hpp"
#include "tee/nvml.hpp"

using namespace pi::tee::nvml_abi;

namespace {

struct State {
  std::mutex mu;
  int init_count = 0;
  pi::nvml_sim::SimConfig cfg;
  std::vector<pi::nvml_sim::SimGpu> gpus;
  char last_error[512] = {};
  std::atomic<int> active{0};
  std::atomic<int> max_active{0};
  std::atomic<unsigned long long> calls{0};
};

State& st() {
  static State* s = new State();  // intentionally never destroyed
  return *s;
}

// Counts every exported NVML call and records the highest number running at the same time.
class CallGuard {
 public:
  CallGuard() {
    State& s = st();
    s.calls++;
    int now = ++s.active;
    int prev = s.max_active.load();
    while (now > prev && !s.max_active.compare_exchange_weak(prev, now)) {
    }
    // Widen the window in which an overlapping call would be seen (a real NVML call takes milliseconds).
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  ~CallGuard() { --st().active; }
  CallGuard(const CallGuard&) = delete;
  CallGuard& operator=(const CallGuard&) = delete;
};

constexpr std::uintptr_t kHandleBase = 0x51A0000;

int device_index(nvmlDevice_t d) {
  auto v = reinterpret_cast<std::uintptr_t>(d);
  if (v < kHandleBase || v >= kHandleBase + st().gpus.size()) return -1;
  return static_cast<int>(v - kHandleBase);
}

nvmlReturn_t copy_string(const std::string& s, char* buf, unsigned int len) {
  if (!buf) return NVML_ERROR_INVALID_ARGUMENT;
  if (s.size() + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
  std::memcpy(buf, s.c_str(), s.size() + 1);
  return NVML_SUCCESS;
}

void set_error(State& s, const std::string& msg) {
  std::snprintf(s.last_error, sizeof s.last_error, "%s", msg.c_str());
  std::fprintf(stderr, "[libnvidia-ml-sim] %s\n", msg.c_str());
}

}  // namespace

#define PI_EXPORT extern "C" __attribute__((visibility("default")))

PI_EXPORT nvmlReturn_t nvmlInit_v2() {
  CallGuard g;
  State& s = st();
  std::lock_guard lk(s.mu);
  if (s.init_count > 0) {
    s.init_count++;
    return NVML_SUCCESS;
  }
  try {
    s.cfg = pi::nvml_sim::config_from_env();
    s.gpus = pi::nvml_sim::make_gpus(s.cfg);
  } catch (const std::exception& e) {
    set_error(s, std::string("simulated NVML cannot start: ") + e.what());
    s.gpus.clear();
    return NVML_ERROR_UNKNOWN;
  }
  s.last_error[0] = '\0';
  s.init_count = 1;
  return NVML_SUCCESS;
}

PI_EXPORT nvmlReturn_t nvmlShutdown() {
  CallGuard g;
  State& s = st();
  std::lock_guard lk(s.mu);
  if (s.init_count == 0) return NVML_ERROR_UNINITIALIZED;
  if (--s.init_count == 0) s.gpus.clear();
  return NVML_SUCCESS;
}

PI_EXPORT const char* nvmlErrorString(nvmlReturn_t rc) {
  switch (rc) {
    case NVML_SUCCESS:
      return "Success";
    case NVML_ERROR_UNINITIALIZED:
      return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT:
      return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED:
      return "Not Supported";
    case NVML_ERROR_INSUFFICIENT_SIZE:
      return "Insufficient Size";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH:
      return "Argument Version Mismatch";
    case NVML_ERROR_UNKNOWN: {
      State& s = st();
      return s.last_error[0] ? s.last_error : "Unknown Error";
    }
    default:
      return "Unknown Error";
  }
}

PI_EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char* version, unsigned int length) {
  CallGuard g;
  State& s = st();
  std::lock_guard lk(s.mu);
  if (s.init_count == 0) return NVML_ERROR_UNINITIALIZED;
  return copy_string(s.cfg.driver_version, version, length);
}

PI_EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* count) {
  CallGuard g;
  State& s = st();
  std::lock_guard lk(s.mu);
  if (s.init_count == 0) return NVML_ERROR_UNINITIALIZED;
  if (!count) return NVML_ERROR_INVALID_ARGUMENT;
  *count = static_cast<unsigned>(s.gpus.size());
  return NVML_SUCCESS;
}

PI_EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t* device) {
  CallGuard g;
  State& s = st();
  std::lock_guard lk(s.mu);
  if (s.init_count == 0) return NVML_ERROR_UNINITIALIZED;
  if (!device || index >= s.gpus.size()) return NVML_ERROR_INVALID_ARGUMENT;
  *device = reinterpret_cast<nvmlDevice_t>(kHandleBase + index);
  return NVML_SUCCESS;
}

PI_EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char* uuid, unsigned int length) {
  CallGuard g;
  State& s = st();
  std::lock_guard lk(s.mu);
  if (s.init_count == 0) return NVML_ERROR_UNINITIALIZED;
  int i = device_index(device);
  if (i < 0) return NVML_ERROR_INVALID_ARGUMENT;
  return copy_string(s.gpus[static_cast<std::size_t>(i)].uuid, uuid, length);
}

PI_EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char* name, unsigned int length) {
  CallGuard g;
  State& s = st();
  std::lock_guard lk(s.mu);
  if (s.init_count == 0) return NVML_ERROR_UNINITIALIZED;
  int i = device_index(device);
  if (i < 0) return NVML_ERROR_INVALID_ARGUMENT;
  return copy_string(s.gpus[static_cast<std::size_t>(i)].name, name, length);
}

PI_EXPORT nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t device, unsigned int* arch) {
  CallGuard g;
  State& s = st();
  std::lock_guard lk(s.mu);
  if (s.init_count == 0) return NVML_ERROR_UNINITIALIZED;
  int i = device_index(device);
  if (i < 0 || !arch) return NVML_ERROR_INVALID_ARGUMENT;
  *arch = s.gpus[static_cast<std::size_t>(i)].arch_code;
  return NVML_SUCCESS;
}

PI_EXPORT nvmlReturn_t nvmlSystemGetConfComputeState(nvmlConfComputeSystemState_t* state) {
  CallGuard g;
  State& s = st();
  std::lock_guard lk(s.mu);
  if (s.init_count == 0) return NVML_ERROR_UNINITIALIZED;
  if (!state) return NVML_ERROR_INVALID_ARGUMENT;
  state->environment = NVML_CC_SYSTEM_ENVIRONMENT_SIM;  // NVIDIA's own value for a simulated CC environment
  state->ccFeature = s.cfg.cc_on ? NVML_CC_SYSTEM_FEATURE_ENABLED : NVML_CC_SYSTEM_FEATURE_DISABLED;
  state->devToolsMode = 0;
  return NVML_SUCCESS;
}

PI_EXPORT nvmlReturn_t nvmlSystemGetConfComputeGpusReadyState(unsigned int* is_accepting_work) {
  CallGuard g;
  State& s = st();
  std::lock_guard lk(s.mu);
  if (s.init_count == 0) return NVML_ERROR_UNINITIALIZED;
  if (!is_accepting_work) return NVML_ERROR_INVALID_ARGUMENT;
  *is_accepting_work = s.cfg.ready ? NVML_CC_ACCEPTING_CLIENT_REQUESTS_TRUE : NVML_CC_ACCEPTING_CLIENT_REQUESTS_FALSE;
  return NVML_SUCCESS;
}

PI_EXPORT nvmlReturn_t nvmlSystemGetConfComputeSettings(nvmlSystemConfComputeSettings_v1_t* settings) {
  CallGuard g;
  State& s = st();
  std::lock_guard lk(s.mu);
  if (s.init_count == 0) return NVML_ERROR_UNINITIALIZED;
  if (!settings) return NVML_ERROR_INVALID_ARGUMENT;
  if (settings->version != nvmlSystemConfComputeSettings_v1) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
  settings->environment = NVML_CC_SYSTEM_ENVIRONMENT_SIM;
  settings->ccFeature = s.cfg.cc_on ? NVML_CC_SYSTEM_FEATURE_ENABLED : NVML_CC_SYSTEM_FEATURE_DISABLED;
  settings->devToolsMode = 0;
  settings->multiGpuMode = s.cfg.ppcie ? NVML_CC_SYSTEM_MULTIGPU_PROTECTED_PCIE : NVML_CC_SYSTEM_MULTIGPU_NONE;
  return NVML_SUCCESS;
}

PI_EXPORT nvmlReturn_t nvmlDeviceGetConfComputeGpuAttestationReport(nvmlDevice_t device,
                                                                    nvmlConfComputeGpuAttestationReport_t* report) {
  CallGuard g;
  State& s = st();
  std::lock_guard lk(s.mu);
  if (s.init_count == 0) return NVML_ERROR_UNINITIALIZED;
  int i = device_index(device);
  if (i < 0 || !report) return NVML_ERROR_INVALID_ARGUMENT;
  if (!s.cfg.cc_on) return NVML_ERROR_NOT_SUPPORTED;
  if (s.cfg.delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(s.cfg.delay_ms));
  const auto& gpu = s.gpus[static_cast<std::size_t>(i)];
  pi::Bytes rep;
  if (s.cfg.mode == pi::nvml_sim::SimConfig::Mode::Replay) {
    rep = gpu.replay_report;  // recorded: the caller's nonce is NOT in it
  } else {
    try {
      rep = pi::nvml_sim::make_report(s.cfg, gpu, report->nonce);
    } catch (const std::exception& e) {
      set_error(s, std::string("simulated NVML cannot build a report: ") + e.what());
      return NVML_ERROR_UNKNOWN;
    }
  }
  if (rep.size() > sizeof report->attestationReport) return NVML_ERROR_INSUFFICIENT_SIZE;
  report->isCecAttestationReportPresent = 0;
  report->cecAttestationReportSize = 0;
  report->attestationReportSize = static_cast<unsigned>(rep.size());
  std::memcpy(report->attestationReport, rep.data(), rep.size());
  return NVML_SUCCESS;
}

PI_EXPORT nvmlReturn_t nvmlDeviceGetConfComputeGpuCertificate(nvmlDevice_t device,
                                                              nvmlConfComputeGpuCertificate_t* cert) {
  CallGuard g;
  State& s = st();
  std::lock_guard lk(s.mu);
  if (s.init_count == 0) return NVML_ERROR_UNINITIALIZED;
  int i = device_index(device);
  if (i < 0 || !cert) return NVML_ERROR_INVALID_ARGUMENT;
  if (!s.cfg.cc_on) return NVML_ERROR_NOT_SUPPORTED;
  const std::string& pem = s.gpus[static_cast<std::size_t>(i)].cert_chain_pem;
  if (pem.size() > sizeof cert->attestationCertChain) return NVML_ERROR_INSUFFICIENT_SIZE;
  cert->certChainSize = 0;  // the simulated device has no separate (non-attestation) chain
  cert->attestationCertChainSize = static_cast<unsigned>(pem.size());
  std::memcpy(cert->attestationCertChain, pem.data(), pem.size());
  return NVML_SUCCESS;
}

// ---- project-specific exports (not part of NVML) ----

// Marker: the loader (tee/nvml.cpp) labels everything from this library as simulated.
PI_EXPORT int pi_nvml_sim_is_simulated() { return 1; }
// Highest number of NVML calls that ever ran at the same time in this process (1 = always serialised).
PI_EXPORT int pi_nvml_sim_max_concurrent_calls() { return st().max_active.load(); }
// NVML calls made so far.
PI_EXPORT unsigned long long pi_nvml_sim_call_count() { return st().calls.load(); }
// NVML calls running right now, and how many nvmlInit_v2 are not yet matched by nvmlShutdown (tests wait for 0/0).
PI_EXPORT int pi_nvml_sim_active_calls() { return st().active.load(); }
PI_EXPORT int pi_nvml_sim_init_count() {
  State& s = st();
  std::lock_guard lk(s.mu);
  return s.init_count;
}
PI_EXPORT void pi_nvml_sim_reset_counters() {
  st().max_active = 0;
  st().calls = 0;
}
