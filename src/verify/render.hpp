#pragma once
// Rendering of a verifier Report: one text line per check (grouped hardware → binding → code →
// GPU → instances → response) plus facts and summary lines, or the stable JSON document of docs/verifier.md.
//
// Every fact shown carries a status (docs/verifier.md "Facts and their status"): "checked" when the checks that
// vouch for its value all passed, "not checked" otherwise (with why), or "note" for what the verifier itself
// observed or computed (how a field was encoded, the hashes of your own files, offline mode).
#include <boost/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "verify/report.hpp"

namespace pi::verify {

// Exit status for a report: 0 verified, 1 an enforced check failed, 3 nothing failed but an
// enforced check was skipped (incomplete, e.g. offline without collateral).
int exit_code(const Report& r);

struct FactStatus {
  std::string status;           // "checked" | "not checked" | "note"
  std::vector<std::string> by;  // the check ids that vouch for the value (all must pass for "checked")
  std::string why;              // "not checked": the reason
};
// The status of fact `key` (with `value`) in `r`. Facts with no known basis are "not checked".
FactStatus fact_status(const Report& r, std::string_view key, std::string_view value);

std::string render_text(const Report& r, std::string_view command);
boost::json::object render_json(const Report& r, std::string_view command);

}  // namespace pi::verify
