#pragma once
// Verification of one attestation report (vllm-proxy / NEAR shape, as served by
// GET /v1/attestation/report): hardware (TDX quote + DCAP), binding (report_data = signing key ‖
// our nonce), code (event-log replay → RTMRs, compose hash, policy pins) and GPU evidence.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <boost/json.hpp>

#include "verify/dcap.hpp"
#include "verify/gpu.hpp"
#include "verify/policy.hpp"
#include "verify/report.hpp"

namespace pi::verify {

struct AttestationOptions {
  // The nonce we sent (64 hex). Without it the replay check is skipped and report_data is
  // compared against the report's own request_nonce.
  std::optional<std::string> expected_nonce_hex;
  std::optional<std::string> expected_signing_algo;  // "ecdsa" | "ed25519"
  std::int64_t now = 0;                              // unix seconds
  std::optional<Collateral> collateral;              // offline collateral
  // Fetches collateral for a parsed quote (network); returns nullopt and sets `why` when it cannot.
  // Absent: offline, collateral-dependent checks are skipped (and say so).
  std::function<std::optional<Collateral>(const Quote&, std::string& why)> fetch_collateral;
  std::optional<Policy> policy;
  GpuOptions gpu;
  // verify --require-gpu N: at least N GPUs must verify (the larger of this and the policy's gpu.min_count).
  std::optional<int> require_gpus;
};

struct AttestationOutcome {
  Report report;
  std::string signing_algo;     // as the report states it
  std::string signing_address;  // as the report states it
  bool bound = false;           // report_data binds signing_address (and our nonce, when we sent one)
};

// Never throws on bad input: malformed fields become failed checks. Report::gpus is always set (0 GPUs included).
// When the report has all_attestations, every entry that is not identical to the top level is verified like it
// (same options: nonce, algorithm, policy, GPU requirement) and gets one Group::Instances check
// "all_attestations.<k>"; "all_attestations.top_level" checks that the top level is one of the entries.
AttestationOutcome verify_attestation(const boost::json::value& attestation, const AttestationOptions& opts);

}  // namespace pi::verify
