#pragma once
// Rendering of a verifier Report: one text line per check (grouped hardware → binding → code →
// GPU → response) plus facts and a summary line, or the stable JSON document of docs/verifier.md.
#include <boost/json.hpp>
#include <string>

#include "verify/report.hpp"

namespace pi::verify {

// Exit status for a report: 0 verified, 1 an enforced check failed, 3 nothing failed but an
// enforced check was skipped (incomplete, e.g. offline without collateral).
int exit_code(const Report& r);

std::string render_text(const Report& r, std::string_view command);
boost::json::object render_json(const Report& r, std::string_view command);

}  // namespace pi::verify
