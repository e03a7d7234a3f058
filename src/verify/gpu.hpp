#pragma once
// Verifier checks for NVIDIA GPU attestation evidence (issue 3, item 4).
//
// `nvidia_payload` is what vllm-proxy publishes: a JSON *string* (or an already-parsed object)
// `{"nonce", "evidence_list": [{certificate: base64(PEM chain), evidence: base64(SPDM report), arch[, nonce]}],
// "arch"}`. A bare array of items (NVIDIA attestation-sdk serialized evidence) is accepted too. For every GPU N this
// adds Group::Gpu checks "gpu.N.*" and facts "gpu.N.arch", "gpu.N.driver_version", "gpu.N.vbios_version",
// "gpu.N.ppcie", ... See docs/verifier-gpu.md.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "verify/report.hpp"

namespace pi::verify {

struct GpuOptions {
  std::optional<std::int64_t> now;           // unix seconds; default: current time
  std::vector<std::string> extra_root_pems;  // additional trusted roots (test roots): such checks are marked simulated
  bool nras = false;                         // submit to NRAS (network)
  std::string nras_url;                      // default NVIDIA's NRAS v4 GPU endpoint
  std::string jwks_path;                     // offline JWKS file for NRAS token verification
  std::string nras_response_path;            // offline: a recorded NRAS answer to verify instead of submitting
  std::string nras_tls_ca_pem;               // extra CA trusted for NRAS/JWKS TLS (tests, private mirrors)
  int timeout_s = 30;                        // NRAS and JWKS requests (verify --timeout)
};

// Default NRAS v4 GPU attestation endpoint.
inline constexpr std::string_view kDefaultNrasUrl = "https://nras.attestation.nvidia.com/v4/attest/gpu";
// Default NVIDIA JWKS endpoint for NRAS tokens.
inline constexpr std::string_view kDefaultNrasJwksUrl = "https://nras.attestation.nvidia.com/.well-known/jwks.json";

// Adds Group::Gpu checks + facts. Never throws on bad input: malformed evidence becomes a failed check.
void check_gpu_evidence(const boost::json::value& nvidia_payload, std::string_view expected_nonce_hex,
                        const GpuOptions& opts, Report& report);

// How many GPUs the Group::Gpu checks in `report` proved (GpuSummary::required and why_none are left unset):
// GPU N counts when gpu.N.evidence, nonce, spdm_signature, cert_chain, cert_validity and arch all passed and no
// enforced evidence-wide check (gpu.payload, gpu.payload_nonce, gpu.distinct_devices, gpu.evidence_consistent)
// failed. evidence_items is the fact gpu.count.
GpuSummary summarize_gpus(const Report& report);

// The bundled NVIDIA Device Identity root CA (PEM), source named in gpu_roots.cpp.
std::string_view nvidia_device_identity_root_pem();

}  // namespace pi::verify
