// NVML through dlopen/dlsym: see nvml.hpp.
#include "tee/nvml.hpp"

#include <dlfcn.h>

#include <cstring>

#include "protocol/gpu_spdm.hpp"

namespace pi::tee {

using namespace nvml_abi;

struct NvmlLibrary::Fns {
  nvmlInit_v2_fn init = nullptr;
  nvmlShutdown_fn shutdown = nullptr;
  nvmlErrorString_fn error_string = nullptr;
  nvmlSystemGetDriverVersion_fn driver_version = nullptr;
  nvmlDeviceGetCount_v2_fn count = nullptr;
  nvmlDeviceGetHandleByIndex_v2_fn handle = nullptr;
  nvmlDeviceGetUUID_fn uuid = nullptr;
  nvmlDeviceGetName_fn name = nullptr;
  nvmlDeviceGetArchitecture_fn arch = nullptr;  // optional (older drivers)
  nvmlSystemGetConfComputeState_fn cc_state = nullptr;
  nvmlSystemGetConfComputeGpusReadyState_fn cc_ready = nullptr;
  nvmlSystemGetConfComputeSettings_fn cc_settings = nullptr;  // optional (added after the first CC drivers)
  nvmlDeviceGetConfComputeGpuAttestationReport_fn report = nullptr;
  nvmlDeviceGetConfComputeGpuCertificate_fn cert = nullptr;
};

const char* to_string(NvmlErrorKind k) {
  switch (k) {
    case NvmlErrorKind::None:
      return "none";
    case NvmlErrorKind::LibraryMissing:
      return "library_missing";
    case NvmlErrorKind::SymbolMissing:
      return "symbol_missing";
    case NvmlErrorKind::InitFailed:
      return "init_failed";
    case NvmlErrorKind::CcOff:
      return "cc_off";
    case NvmlErrorKind::NotReady:
      return "gpus_not_ready";
    case NvmlErrorKind::NoDevices:
      return "no_devices";
    case NvmlErrorKind::DeviceError:
      return "device_error";
  }
  return "unknown";
}

std::optional<std::string> nvml_arch_name(unsigned code) {
  switch (code) {
    case NVML_DEVICE_ARCH_AMPERE:
      return "AMPERE";
    case NVML_DEVICE_ARCH_ADA:
      return "ADA";
    case NVML_DEVICE_ARCH_HOPPER:
      return "HOPPER";
    case NVML_DEVICE_ARCH_BLACKWELL:
      return "BLACKWELL";
    default:
      return std::nullopt;
  }
}

std::optional<std::string> arch_from_report(ByteView r) {
  try {
    const auto report = protocol::gpu::parse_spdm_report(r);
    if (auto id = protocol::gpu::gpu_arch_id(report)) return protocol::gpu::arch_from_id(*id);
  } catch (const protocol::gpu::ParseError&) {  // not a report we can read: no architecture from it
  }
  return std::nullopt;
}

namespace {

template <typename F>
F sym(void* h, const char* name) {
  return reinterpret_cast<F>(dlsym(h, name));
}

std::string c_string(const char* buf, std::size_t cap) { return std::string(buf, strnlen(buf, cap)); }

}  // namespace

std::string NvmlLibrary::err(nvmlReturn_t rc) const {
  std::string s = "NVML error " + std::to_string(rc);
  if (fns_ && fns_->error_string) {
    if (const char* m = fns_->error_string(rc)) s += " (" + std::string(m) + ")";
  }
  return s;
}

std::unique_ptr<NvmlLibrary> NvmlLibrary::open(const std::string& path) {
  std::unique_ptr<NvmlLibrary> lib(new NvmlLibrary());
  lib->path_ = path.empty() ? kDefaultPath : path;
  dlerror();
  // RTLD_NODELETE: NVIDIA's library is not meant to be unloaded and reloaded within a process (nor is the simulated
  // one, whose state must outlive a collector); dlclose then only drops our reference.
  lib->handle_ = dlopen(lib->path_.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!lib->handle_) {
    const char* e = dlerror();
    throw NvmlError(NvmlErrorKind::LibraryMissing,
                    "cannot load NVML library " + lib->path_ + ": " + (e ? e : "dlopen failed") +
                        " (no NVIDIA driver on this machine? set --nvml-lib / NVML_LIB)");
  }
  auto f = std::make_unique<Fns>();
  void* h = lib->handle_;
  f->init = sym<nvmlInit_v2_fn>(h, "nvmlInit_v2");
  f->shutdown = sym<nvmlShutdown_fn>(h, "nvmlShutdown");
  f->error_string = sym<nvmlErrorString_fn>(h, "nvmlErrorString");
  f->driver_version = sym<nvmlSystemGetDriverVersion_fn>(h, "nvmlSystemGetDriverVersion");
  f->count = sym<nvmlDeviceGetCount_v2_fn>(h, "nvmlDeviceGetCount_v2");
  f->handle = sym<nvmlDeviceGetHandleByIndex_v2_fn>(h, "nvmlDeviceGetHandleByIndex_v2");
  f->uuid = sym<nvmlDeviceGetUUID_fn>(h, "nvmlDeviceGetUUID");
  f->name = sym<nvmlDeviceGetName_fn>(h, "nvmlDeviceGetName");
  f->arch = sym<nvmlDeviceGetArchitecture_fn>(h, "nvmlDeviceGetArchitecture");
  f->cc_state = sym<nvmlSystemGetConfComputeState_fn>(h, "nvmlSystemGetConfComputeState");
  f->cc_ready = sym<nvmlSystemGetConfComputeGpusReadyState_fn>(h, "nvmlSystemGetConfComputeGpusReadyState");
  f->cc_settings = sym<nvmlSystemGetConfComputeSettings_fn>(h, "nvmlSystemGetConfComputeSettings");
  f->report = sym<nvmlDeviceGetConfComputeGpuAttestationReport_fn>(h, "nvmlDeviceGetConfComputeGpuAttestationReport");
  f->cert = sym<nvmlDeviceGetConfComputeGpuCertificate_fn>(h, "nvmlDeviceGetConfComputeGpuCertificate");
  using SimFlag = int (*)();
  if (auto marker = sym<SimFlag>(h, "pi_nvml_sim_is_simulated")) lib->simulated_ = marker() != 0;

  // The core functions must exist; the CC functions are checked in collect() so that an old driver gives a clear
  // per-request error naming the missing call.
  std::string missing;
  auto need = [&](bool present, const char* name) {
    if (!present) missing += std::string(missing.empty() ? "" : ", ") + name;
  };
  need(f->init, "nvmlInit_v2");
  need(f->shutdown, "nvmlShutdown");
  need(f->error_string, "nvmlErrorString");
  need(f->driver_version, "nvmlSystemGetDriverVersion");
  need(f->count, "nvmlDeviceGetCount_v2");
  need(f->handle, "nvmlDeviceGetHandleByIndex_v2");
  need(f->uuid, "nvmlDeviceGetUUID");
  need(f->name, "nvmlDeviceGetName");
  lib->fns_ = std::move(f);
  if (!missing.empty()) {
    throw NvmlError(NvmlErrorKind::SymbolMissing, "NVML library " + lib->path_ + " lacks " + missing);
  }
  nvmlReturn_t rc = lib->fns_->init();
  if (rc != NVML_SUCCESS) {
    throw NvmlError(NvmlErrorKind::InitFailed, "nvmlInit_v2 failed in " + lib->path_ + ": " + lib->err(rc));
  }
  lib->initialized_ = true;
  return lib;
}

NvmlLibrary::~NvmlLibrary() {
  if (initialized_ && fns_ && fns_->shutdown) fns_->shutdown();
  if (handle_) dlclose(handle_);
}

NvmlCollection NvmlLibrary::collect(const protocol::Nonce& nonce) {
  NvmlCollection out;
  out.simulated = simulated_;
  auto fail = [&](NvmlErrorKind k, std::string msg) {
    out.error_kind = k;
    out.error = std::move(msg);
    out.gpus.clear();
    return out;
  };
  const Fns& f = *fns_;

  {
    char buf[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE] = {};
    if (f.driver_version(buf, sizeof buf) == NVML_SUCCESS) out.driver_version = c_string(buf, sizeof buf);
  }

  std::string missing;
  if (!f.cc_state) missing += " nvmlSystemGetConfComputeState";
  if (!f.cc_ready) missing += " nvmlSystemGetConfComputeGpusReadyState";
  if (!f.report) missing += " nvmlDeviceGetConfComputeGpuAttestationReport";
  if (!f.cert) missing += " nvmlDeviceGetConfComputeGpuCertificate";
  if (!missing.empty()) {
    return fail(NvmlErrorKind::SymbolMissing, "NVML library " + path_ + " (driver " + out.driver_version +
                                                  ") lacks the confidential computing calls:" + missing);
  }

  nvmlConfComputeSystemState_t st{};
  if (auto rc = f.cc_state(&st); rc != NVML_SUCCESS) {
    return fail(NvmlErrorKind::CcOff, "cannot read the confidential computing state: " + err(rc));
  }
  out.cc.environment = st.environment;
  out.cc.cc_enabled = st.ccFeature == NVML_CC_SYSTEM_FEATURE_ENABLED;
  out.cc.dev_tools_mode = st.devToolsMode != 0;
  if (f.cc_settings) {
    nvmlSystemConfComputeSettings_v1_t s{};
    s.version = nvmlSystemConfComputeSettings_v1;
    if (f.cc_settings(&s) == NVML_SUCCESS) {
      out.cc.settings_known = true;
      out.cc.multi_gpu_mode = s.multiGpuMode;
      out.cc.ppcie = s.multiGpuMode == NVML_CC_SYSTEM_MULTIGPU_PROTECTED_PCIE;
    }
  }
  if (!out.cc.cc_enabled) {
    return fail(NvmlErrorKind::CcOff, "confidential computing is not enabled on this system (NVML CC feature " +
                                          std::to_string(st.ccFeature) + ", environment " +
                                          std::to_string(st.environment) +
                                          "): the GPUs cannot produce attestation evidence");
  }
  unsigned ready = 0;
  if (auto rc = f.cc_ready(&ready); rc != NVML_SUCCESS) {
    return fail(NvmlErrorKind::NotReady, "cannot read the confidential computing GPUs-ready state: " + err(rc));
  }
  out.cc.gpus_ready = ready == NVML_CC_ACCEPTING_CLIENT_REQUESTS_TRUE;
  if (!out.cc.gpus_ready) {
    return fail(NvmlErrorKind::NotReady,
                "confidential computing is on but the GPUs are not ready to accept work (GPUs-ready state " +
                    std::to_string(ready) + ")");
  }

  unsigned count = 0;
  if (auto rc = f.count(&count); rc != NVML_SUCCESS) {
    return fail(NvmlErrorKind::DeviceError, "nvmlDeviceGetCount_v2 failed: " + err(rc));
  }
  if (count == 0) return fail(NvmlErrorKind::NoDevices, "NVML reports no GPU on this system");

  // The structs are large (12 KiB + 9 KiB): heap, not stack.
  auto rep = std::make_unique<nvmlConfComputeGpuAttestationReport_t>();
  auto cert = std::make_unique<nvmlConfComputeGpuCertificate_t>();
  for (unsigned i = 0; i < count; ++i) {
    const std::string gpu = "GPU " + std::to_string(i);
    nvmlDevice_t dev = nullptr;
    if (auto rc = f.handle(i, &dev); rc != NVML_SUCCESS) {
      return fail(NvmlErrorKind::DeviceError, gpu + ": nvmlDeviceGetHandleByIndex_v2 failed: " + err(rc));
    }
    NvmlGpu g;
    g.index = i;
    {
      char buf[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = {};
      if (auto rc = f.uuid(dev, buf, sizeof buf); rc != NVML_SUCCESS) {
        return fail(NvmlErrorKind::DeviceError, gpu + ": nvmlDeviceGetUUID failed: " + err(rc));
      }
      g.uuid = c_string(buf, sizeof buf);
    }
    {
      char buf[NVML_DEVICE_NAME_V2_BUFFER_SIZE] = {};
      if (auto rc = f.name(dev, buf, sizeof buf); rc != NVML_SUCCESS) {
        return fail(NvmlErrorKind::DeviceError, gpu + ": nvmlDeviceGetName failed: " + err(rc));
      }
      g.name = c_string(buf, sizeof buf);
      if (g.name.find("SIMULATED") != std::string::npos) out.simulated = true;
    }
    if (f.arch) {
      unsigned a = 0;
      if (f.arch(dev, &a) == NVML_SUCCESS) g.arch_code = a;
    }

    std::memset(rep.get(), 0, sizeof *rep);
    std::memcpy(rep->nonce, nonce.data(), nonce.size());
    if (auto rc = f.report(dev, rep.get()); rc != NVML_SUCCESS) {
      return fail(NvmlErrorKind::DeviceError,
                  gpu + " (" + g.uuid + "): nvmlDeviceGetConfComputeGpuAttestationReport failed: " + err(rc));
    }
    if (rep->attestationReportSize == 0 || rep->attestationReportSize > sizeof rep->attestationReport) {
      return fail(NvmlErrorKind::DeviceError, gpu + " (" + g.uuid + "): attestation report size " +
                                                  std::to_string(rep->attestationReportSize) + " is out of range");
    }
    g.report.assign(rep->attestationReport, rep->attestationReport + rep->attestationReportSize);

    std::memset(cert.get(), 0, sizeof *cert);
    if (auto rc = f.cert(dev, cert.get()); rc != NVML_SUCCESS) {
      return fail(NvmlErrorKind::DeviceError,
                  gpu + " (" + g.uuid + "): nvmlDeviceGetConfComputeGpuCertificate failed: " + err(rc));
    }
    if (cert->attestationCertChainSize == 0 || cert->attestationCertChainSize > sizeof cert->attestationCertChain) {
      return fail(NvmlErrorKind::DeviceError, gpu + " (" + g.uuid + "): attestation certificate chain size " +
                                                  std::to_string(cert->attestationCertChainSize) + " is out of range");
    }
    g.cert_chain_pem.assign(reinterpret_cast<const char*>(cert->attestationCertChain), cert->attestationCertChainSize);
    while (!g.cert_chain_pem.empty() && g.cert_chain_pem.back() == '\0') g.cert_chain_pem.pop_back();

    auto from_dev = nvml_arch_name(g.arch_code);
    auto from_ev = arch_from_report(g.report);
    g.arch = from_dev ? *from_dev : from_ev ? *from_ev : "UNKNOWN";
    out.gpus.push_back(std::move(g));
  }
  return out;
}

}  // namespace pi::tee
