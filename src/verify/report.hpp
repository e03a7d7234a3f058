#pragma once
// The verifier's result model, shared by every check (TDX, binding, event log, GPU, response).
// Rendered as text (one line per check) or as the stable JSON documented in docs/verifier.md.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pi::verify {

// Order of groups follows the chain of trust: hardware → binding → code → GPU → the other instances of a
// multi-instance report (all_attestations) → response.
enum class Group { Hardware, Binding, Code, Gpu, Instances, Response };
enum class Status { Pass, Fail, Skipped };

struct Check {
  Group group;
  std::string id;     // stable machine name, e.g. "tdx.quote_signature", "gpu.0.spdm_signature"
  std::string title;  // one human sentence of what was checked
  Status status;
  std::string detail;      // reason / values seen (never secrets)
  bool enforced = true;    // false: reported only (policy does not require it)
  bool simulated = false;  // the evidence chains to a test root, not a real vendor root
};

// How many GPUs an attestation proved (docs/verifier-gpu.md "GPU count"): shown in every summary, 0 included.
struct GpuSummary {
  int evidence_items = 0;                  // items in the evidence list (0: the report carries none)
  int verified = 0;                        // GPUs whose every enforced local check passed
  std::vector<std::string> architectures;  // of the verified GPUs, in order
  bool simulated = false;                  // some verified GPU chains to a test root
  std::optional<int> required;             // --require-gpu / policy gpu.min_count
  std::string why_none;                    // when evidence_items == 0: why (the report's gpu_evidence_error, …)
};

struct Report {
  std::vector<Check> checks;
  std::vector<std::pair<std::string, std::string>> facts;  // e.g. ("app_id", "…"), ("gpu.0.arch", "HOPPER")
  std::optional<GpuSummary> gpus;                          // set by verify_attestation

  void add(Check c) { checks.push_back(std::move(c)); }
  // True when no enforced check failed.
  bool ok() const {
    for (const auto& c : checks)
      if (c.enforced && c.status == Status::Fail) return false;
    return true;
  }
  // True when no enforced check was skipped (e.g. for lack of network or collateral).
  bool complete() const {
    for (const auto& c : checks)
      if (c.enforced && c.status == Status::Skipped) return false;
    return true;
  }
  void fact(std::string key, std::string value) { facts.emplace_back(std::move(key), std::move(value)); }
  const Check* find(std::string_view id) const {
    for (const auto& c : checks)
      if (c.id == id) return &c;
    return nullptr;
  }
};

inline const char* to_string(Group g) {
  switch (g) {
    case Group::Hardware:
      return "hardware";
    case Group::Binding:
      return "binding";
    case Group::Code:
      return "code";
    case Group::Gpu:
      return "gpu";
    case Group::Instances:
      return "instances";
    case Group::Response:
      return "response";
  }
  return "?";
}
inline const char* to_string(Status s) {
  switch (s) {
    case Status::Pass:
      return "PASS";
    case Status::Fail:
      return "FAIL";
    case Status::Skipped:
      return "SKIP";
  }
  return "?";
}

}  // namespace pi::verify
