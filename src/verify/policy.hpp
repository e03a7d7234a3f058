#pragma once
// Verifier policy file (JSON). Every key is optional; a key that is present pins that value.
// {
//   "allowed_tcb_statuses": ["UpToDate", "SWHardeningNeeded"],   // others FAIL (Revoked always fails)
//   "allowed_advisory_ids": ["INTEL-SA-00615"],                   // any other advisory FAILs
//   "compose_hashes":  ["<64 hex>", ...],   // sha256(app_compose) allowed
//   "os_image_hashes": ["<64 hex>", ...],
//   "mrtd":   ["<96 hex>", ...],
//   "rtmr0":  ["<96 hex>", ...], "rtmr1": [...], "rtmr2": [...],
//   "allow_debug_td": false,                                      // default false: a debug TD fails
//   "gpu": {"min_count": 1,                                        // at least this many GPUs verified
//           "allowed_architectures": ["HOPPER", "BLACKWELL"]}      // every verified GPU is one of these
// }
// Without a policy: non-UpToDate statuses and advisories are reported (not enforced), and the
// measurements are shown as facts for the user to compare.
#include <optional>
#include <string>
#include <vector>

namespace pi::verify {

struct Policy {
  std::optional<std::vector<std::string>> allowed_tcb_statuses;
  std::optional<std::vector<std::string>> allowed_advisory_ids;
  std::optional<std::vector<std::string>> compose_hashes;
  std::optional<std::vector<std::string>> os_image_hashes;
  std::optional<std::vector<std::string>> mrtd;
  std::optional<std::vector<std::string>> rtmr0, rtmr1, rtmr2;
  bool allow_debug_td = false;
  std::optional<int> gpu_min_count;                                   // gpu.min_count (>= 0)
  std::optional<std::vector<std::string>> gpu_allowed_architectures;  // gpu.allowed_architectures (upper case)
};

// Throws std::runtime_error with the offending key. Hex values are normalised to lowercase, no 0x.
Policy parse_policy_json(std::string_view text);

}  // namespace pi::verify
