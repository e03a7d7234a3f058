#include "verify/render.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace pi::verify {
namespace {

std::vector<const Check*> ordered(const Report& r) {
  std::vector<const Check*> v;
  for (const auto& c : r.checks) v.push_back(&c);
  std::stable_sort(v.begin(), v.end(), [](const Check* a, const Check* b) { return a->group < b->group; });
  return v;
}

struct Counts {
  int passed = 0, failed = 0, failed_enforced = 0, skipped = 0, skipped_enforced = 0;
};
Counts count(const Report& r) {
  Counts c;
  for (const auto& k : r.checks) {
    if (k.status == Status::Pass) ++c.passed;
    if (k.status == Status::Fail) {
      ++c.failed;
      if (k.enforced) ++c.failed_enforced;
    }
    if (k.status == Status::Skipped) {
      ++c.skipped;
      if (k.enforced) ++c.skipped_enforced;
    }
  }
  return c;
}

const char* verdict(const Report& r) {
  if (!r.ok()) return "FAILED";
  if (!r.complete()) return "INCOMPLETE";
  return "VERIFIED";
}

}  // namespace

int exit_code(const Report& r) {
  if (!r.ok()) return 1;
  if (!r.complete()) return 3;
  return 0;
}

std::string render_text(const Report& r, std::string_view command) {
  std::string out;
  Group last = Group::Response;
  bool first = true;
  for (const Check* c : ordered(r)) {
    if (first || c->group != last) {
      out += fmt::format("== {} ==\n", to_string(c->group));
      last = c->group;
      first = false;
    }
    std::string flags;
    if (!c->enforced) flags += " [not enforced]";
    if (c->simulated) flags += " [simulated]";
    out += fmt::format("{} {}{}: {}", to_string(c->status), c->id, flags, c->title);
    if (!c->detail.empty()) out += " -- " + c->detail;
    out += '\n';
  }
  if (!r.facts.empty()) {
    out += "== facts ==\n";
    for (const auto& [k, v] : r.facts) {
      std::string val = v;
      // multi-line facts (the docker compose file) are indented under their key
      std::string::size_type pos = 0;
      while ((pos = val.find('\n', pos)) != std::string::npos) {
        val.replace(pos, 1, "\n    ");
        pos += 5;
      }
      out += fmt::format("{}: {}\n", k, val);
    }
  }
  Counts n = count(r);
  out += fmt::format("summary: {} {}: {} passed, {} failed ({} enforced), {} skipped ({} enforced)\n", command,
                     verdict(r), n.passed, n.failed, n.failed_enforced, n.skipped, n.skipped_enforced);
  return out;
}

boost::json::object render_json(const Report& r, std::string_view command) {
  boost::json::object o;
  o["schema"] = "private-inference.verify/1";
  o["command"] = command;
  o["verdict"] = verdict(r);
  o["ok"] = r.ok();
  o["complete"] = r.complete();
  o["exit_code"] = exit_code(r);
  Counts n = count(r);
  o["summary"] = {{"passed", n.passed},
                  {"failed", n.failed},
                  {"failed_enforced", n.failed_enforced},
                  {"skipped", n.skipped},
                  {"skipped_enforced", n.skipped_enforced}};
  boost::json::array checks;
  for (const Check* c : ordered(r)) {
    boost::json::object j;
    j["group"] = to_string(c->group);
    j["id"] = c->id;
    j["title"] = c->title;
    j["status"] = c->status == Status::Pass ? "pass" : c->status == Status::Fail ? "fail" : "skip";
    j["detail"] = c->detail;
    j["enforced"] = c->enforced;
    j["simulated"] = c->simulated;
    checks.push_back(std::move(j));
  }
  o["checks"] = std::move(checks);
  boost::json::object facts;
  for (const auto& [k, v] : r.facts) facts[k] = v;
  o["facts"] = std::move(facts);
  return o;
}

}  // namespace pi::verify
