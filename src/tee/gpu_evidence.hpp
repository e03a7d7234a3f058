#pragma once
// GPU evidence collector used by the proxy's /v1/attestation/report (issue 4). See docs/gpu-evidence.md.
//
// * NVML (tee/nvml.hpp, loaded with dlopen) is called from ONE dedicated thread: calls are never concurrent.
// * Concurrent requests for the same nonce share one collection.
// * A pool bounds the fresh-nonce collections queued or running at once; beyond it a request gets status Busy
//   immediately (the proxy answers 429 + Retry-After: result.retry_after_s).
// * Every request is bounded by a timeout (queue wait + NVML time); past it the request gets status Timeout while
//   the NVML call finishes in the background (its result still completes the other waiters that have not timed out).
// * Reports without a client nonce use a cached collection (own random nonce), refreshed in the background.
// * A missing library, CC off, GPUs not ready or no GPU → a clear `error`, never fabricated evidence.
//
// ---------------------------------------------------------------------------------------------------------------
// Wiring into the proxy (the lead owns src/server/proxy.cpp):
//
//   // start-up (flags: --nvml-lib PATH, env NVML_LIB; --gpu-evidence off|auto|required)
//   std::unique_ptr<pi::tee::GpuEvidenceCollector> gpu;
//   if (mode != "off") {
//     pi::tee::GpuEvidenceOptions o;
//     o.library_path = nvml_lib_flag.empty() ? env_or("NVML_LIB", "") : nvml_lib_flag;  // "" → libnvidia-ml.so.1
//     o.max_fresh = cfg.max_concurrent_attestations;   // pool for fresh-nonce collections
//     gpu = std::make_unique<pi::tee::GpuEvidenceCollector>(o);  // never throws for a missing library
//     if (mode == "required" && !gpu->available()) throw std::runtime_error(gpu->load_error());
//   }
//
//   // in the attestation coroutine (any executor; the completion is posted back to the caller's executor):
//   pi::tee::GpuEvidenceResult g = co_await gpu->collect(nonce);          // client gave ?nonce=
//   // or, when the client gave no nonce: take the cached evidence and use ITS nonce for the TDX quote too
//   //   g = co_await gpu->collect_cached();  nonce = *protocol::parse_nonce(g.nonce_hex);  (when g.ok())
//   if (g.status == pi::tee::GpuEvidenceStatus::Busy) → 429, header Retry-After: g.retry_after_s
//   g.apply_to(report);   // protocol::AttestationReport: report.gpu = g.to_protocol() (nvidia_payload,
//                         // gpu_evidence, gpu_evidence_error, _info, _simulated); without a collector:
//                         // report.gpu = protocol::GpuEvidence::disabled()
//   report.simulated = tee_simulated || g.simulated;
//   if (mode == "required" && !g.ok()) → 503 with g.error
//
//   // /metrics: gpu->render_metrics(body);
// ---------------------------------------------------------------------------------------------------------------
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>

#include "protocol/report.hpp"
#include "protocol/signing.hpp"
#include "tee/gpu_source.hpp"
#include "tee/nvml.hpp"

namespace pi::tee {

struct GpuEvidenceOptions {
  std::string library_path;                                      // "" → NvmlLibrary::kDefaultPath (libnvidia-ml.so.1)
  std::chrono::milliseconds timeout{std::chrono::seconds(15)};   // per request: queue wait + NVML time
  std::size_t max_fresh = 4;                                     // fresh-nonce collections queued or running
  std::chrono::milliseconds cache_ttl{std::chrono::minutes(5)};  // age at which the no-nonce result is refreshed
  std::chrono::milliseconds error_retry{std::chrono::seconds(5)};  // a cached failure is retried after this
  unsigned retry_after_s = 1;                                      // advised Retry-After for Busy
};

enum class GpuEvidenceStatus {
  Ok,           // evidence for every GPU
  Unavailable,  // no usable NVML library (load_error())
  Error,        // NVML answered with an error: CC off, GPUs not ready, no GPU, a device call failed
  Timeout,      // not collected within options.timeout
  Busy,         // pool full: answer 429 with Retry-After
};
const char* to_string(GpuEvidenceStatus s);

struct GpuEvidenceResult {
  GpuEvidenceStatus status = GpuEvidenceStatus::Error;
  NvmlErrorKind error_kind = NvmlErrorKind::None;
  std::string error;      // gpu_evidence_error text (empty when ok)
  std::string nonce_hex;  // the nonce the evidence is bound to (lowercase hex)
  // vllm-proxy's nvidia_payload: JSON text {"nonce": ..., "evidence_list": [{"certificate", "evidence", "arch"}],
  // "arch": ...} serialised like Python's json.dumps (", " and ": " separators).
  // Built with protocol::NvidiaPayload::to_text().
  std::string nvidia_payload;
  std::vector<protocol::GpuEvidenceItem> gpu_evidence;  // {arch, certificate: base64(PEM chain), evidence, nonce}
  boost::json::object info;    // {driver_version, ppcie, multi_gpu_mode, gpus: [{index, uuid, name, arch}]}
  std::string arch;            // of the first GPU
  bool simulated = false;      // produced by the project's simulated NVML
  bool cached = false;         // served from the no-nonce cache
  bool shared = false;         // joined a collection already running for the same nonce
  unsigned retry_after_s = 0;  // for Busy
  double age_s = 0;            // for cached results: seconds since collection

  bool ok() const { return status == GpuEvidenceStatus::Ok; }
  // The report's GPU part: nvidia_payload (the text, or null), gpu_evidence (items, or null), gpu_evidence_error
  // (nullopt when ok, else `error` or kGpuUnavailableError), gpu_evidence_info (when collected), and when simulated
  // gpu_evidence_simulated = true plus kGpuSimulatedNotice.
  protocol::GpuEvidence to_protocol() const;
  void apply_to(protocol::AttestationReport& report) const { report.gpu = to_protocol(); }
  // The same written into a JSON report object (to_protocol().write_to(report)).
  void apply_to(boost::json::object& report) const;
};

struct GpuEvidenceStats {
  std::uint64_t collections = 0;  // NVML collections run (fresh + cache)
  std::uint64_t cache_collections = 0;
  std::uint64_t failures = 0;  // collections that returned an NVML error
  std::uint64_t timeouts = 0;  // requests answered Timeout
  std::uint64_t cache_hits = 0;
  std::uint64_t rejections = 0;  // requests answered Busy
  std::uint64_t shared = 0;      // requests that joined an in-flight collection
  std::uint64_t requests = 0;
  std::size_t max_fresh_inflight = 0;  // high-water mark of fresh collections queued or running
};

class GpuEvidenceCollector final : public GpuEvidenceSource {
 public:
  // Loads NVML (never throws for a missing/broken library: available() is false and every request answers
  // Unavailable with load_error()). Starts the NVML thread only when the library loaded.
  explicit GpuEvidenceCollector(GpuEvidenceOptions opts);
  // Calls shutdown().
  ~GpuEvidenceCollector() override;
  // Stops the NVML thread: waits up to `grace` for a running NVML call, then completes every waiting request with
  // Error ("shutting down"), async ones by posting to their executors. Call it BEFORE the io_contexts that awaited
  // collect() are destroyed (the proxy: when its io_contexts have stopped, before destroying them). If NVML hangs past
  // `grace`, its thread is detached and the requests it holds are leaked untouched (never completed on a destroyed
  // executor). Idempotent; later requests answer Error.
  void shutdown(std::chrono::milliseconds grace);
  void shutdown() override { shutdown(std::chrono::seconds(5)); }
  GpuEvidenceCollector(const GpuEvidenceCollector&) = delete;
  GpuEvidenceCollector& operator=(const GpuEvidenceCollector&) = delete;

  bool available() const override { return available_; }
  const std::string& load_error() const override { return load_error_; }
  bool simulated() const override { return simulated_; }  // the loaded library says it is the simulated NVML
  const GpuEvidenceOptions& options() const { return opts_; }

  // Async: evidence bound to `nonce`. Completion is posted to the awaiting coroutine's executor.
  boost::asio::awaitable<GpuEvidenceResult> collect(const protocol::Nonce& nonce) override;
  // Async: the cached no-nonce evidence (collected on first use with a random nonce, then refreshed in the
  // background every cache_ttl). result.nonce_hex is the nonce it is bound to.
  boost::asio::awaitable<GpuEvidenceResult> collect_cached() override;

  // Blocking versions (tests, CLI).
  GpuEvidenceResult collect_blocking(const protocol::Nonce& nonce);
  GpuEvidenceResult collect_cached_blocking();

  // Appends Prometheus text (pi_gpu_evidence_*) for /metrics.
  void render_metrics(std::string& out) const override;
  GpuEvidenceStats stats() const;

  // Builds the result (items, nvidia_payload, info) from one NVML collection. Public for tests.
  static GpuEvidenceResult build_result(const NvmlCollection& c, const protocol::Nonce& nonce);

  struct Impl;

 private:
  GpuEvidenceOptions opts_;
  bool available_ = false;
  bool simulated_ = false;
  std::string load_error_;
  std::shared_ptr<Impl> impl_;  // shared with the NVML thread (which may outlive us if NVML hangs at shutdown)
};

}  // namespace pi::tee
