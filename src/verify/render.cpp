#include "verify/render.hpp"

#include <algorithm>
#include <cctype>

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

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// "gpu.<digits>." prefix: returns the index text, else empty.
std::string gpu_index(std::string_view key) {
  if (!starts_with(key, "gpu.")) return {};
  std::size_t i = 4;
  while (i < key.size() && std::isdigit(static_cast<unsigned char>(key[i]))) ++i;
  if (i == 4 || i >= key.size() || key[i] != '.') return {};
  return std::string(key.substr(4, i - 4));
}

// The quote is genuine Intel hardware evidence only when its signature, the QE and the PCK chain all verified.
const std::vector<std::string> kQuoteGenuine = {"tdx.quote_signature", "tdx.qe_report_data", "tdx.qe_report_signature",
                                                "tdx.pck_chain"};
std::vector<std::string> with_quote(std::vector<std::string> ids) {
  ids.insert(ids.begin(), kQuoteGenuine.begin(), kQuoteGenuine.end());
  return ids;
}

// Which checks vouch for a fact; empty `by` + note=true: the verifier's own observation.
struct Basis {
  std::vector<std::string> by;
  bool note = false;
  std::string why;  // when neither: why nothing checks it
};

Basis basis_of(std::string_view key, std::string_view value) {
  auto note = [] { return Basis{{}, true, {}}; };
  auto by = [](std::vector<std::string> ids) { return Basis{std::move(ids), false, {}}; };
  if (starts_with(key, "encoding.") || key == "event_log.format" || key == "network" || key == "tdx.collateral" ||
      key == "tdx.quote_padding" || starts_with(key, "response.") || key == "gpu.verified")
    return note();
  if (key == "simulated")
    return starts_with(value, "simulated hardware") ? note()
                                                    : Basis{{}, false, "the server's own statement about itself"};
  if (key == "signing_address" || key == "signing_algo" || key == "tls_cert_fingerprint")
    return by(with_quote({"binding.report_data"}));
  if (key == "report_data" || key == "mrtd" || key == "mr_config_id" || (starts_with(key, "rtmr") && key.size() == 5))
    return by(kQuoteGenuine);
  if (key == "tdx.tcb_status" || key == "tdx.advisory_ids") return by({"tdx.tcb_status"});
  if (key == "tdx.fmspc") return by({"tdx.pck_chain"});
  if (key == "app_id" || key == "compose_hash" || key == "os_image_hash" || key == "instance_id" ||
      key == "key_provider")
    return by(with_quote({"code.event_log", "code.rtmr"}));
  if (key == "docker_compose_file" || key == "app_compose")
    return by(with_quote({"code.event_log", "code.rtmr", "code.compose_hash"}));
  if (key == "gpu.count") return by({"gpu.payload"});
  if (key == "gpu.nras.overall_result") return by({"gpu.nras.signature", "gpu.nras.eat_nonce"});
  if (starts_with(key, "gpu.nras.")) {
    // gpu.nras.<GPU-n>.<claim>: vouched for by that detached token's signature and nonce
    std::string_view rest = key.substr(9);
    auto dot = rest.find('.');
    if (dot != std::string_view::npos) {
      std::string name(rest.substr(0, dot));
      return by({"gpu.nras." + name + ".signature", "gpu.nras." + name + ".eat_nonce"});
    }
  }
  if (auto n = gpu_index(key); !n.empty()) {
    std::string p = "gpu." + n + ".";
    if (key == p + "leaf_subject") return by({p + "cert_chain"});
    if (key == p + "arch") return by({p + "spdm_signature", p + "cert_chain", p + "nonce", p + "arch"});
    return by({p + "spdm_signature", p + "cert_chain", p + "nonce"});
  }
  if (starts_with(key, "all_attestations.")) {
    // all_attestations.<k>.<fact>: vouched for by the entry's own check all_attestations.<k>
    std::string_view rest = key.substr(17);
    auto dot = rest.find('.');
    if (dot != std::string_view::npos) return by({"all_attestations." + std::string(rest.substr(0, dot))});
  }
  return Basis{{}, false, "no check covers this field"};
}

// Text form: the ids that vouch are in the JSON (fact_status.<key>.by); the text says only whether they passed.
std::string label(const FactStatus& s) {
  if (s.status == "note" || s.status == "checked") return s.status;
  return "not checked: " + s.why;
}

std::string gpu_summary_text(const GpuSummary& g) {
  std::string s = fmt::format("GPUs verified: {}", g.verified);
  if (!g.architectures.empty()) {
    std::string a;
    for (const auto& x : g.architectures) a += (a.empty() ? "" : ", ") + x;
    s += " (" + a + ")";
  }
  if (g.evidence_items == 0)
    s += " -- no GPU evidence" + (g.why_none.empty() ? std::string() : ": " + g.why_none);
  else
    s += fmt::format(" of {} evidence item(s)", g.evidence_items);
  if (g.simulated) s += " [simulated]";
  s += g.required ? fmt::format("; required: at least {}", *g.required) : "; required: none";
  return s;
}

}  // namespace

FactStatus fact_status(const Report& r, std::string_view key, std::string_view value) {
  Basis b = basis_of(key, value);
  FactStatus s;
  if (b.note) {
    s.status = "note";
    return s;
  }
  s.by = b.by;
  if (b.by.empty()) {
    s.status = "not checked";
    s.why = b.why;
    return s;
  }
  std::vector<std::string> problems;
  for (const auto& id : b.by) {
    const Check* c = r.find(id);
    if (!c)
      problems.push_back(id + " did not run");
    else if (c->status == Status::Fail)
      problems.push_back(id + " failed");
    else if (c->status == Status::Skipped)
      problems.push_back(id + " skipped");
  }
  s.status = problems.empty() ? "checked" : "not checked";
  for (const auto& p : problems) s.why += (s.why.empty() ? "" : ", ") + p;
  return s;
}

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
      out += fmt::format("{} [{}]: {}\n", k, label(fact_status(r, k, v)), val);
    }
  }
  if (r.gpus) out += "summary: " + gpu_summary_text(*r.gpus) + "\n";
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
  boost::json::object facts, statuses;
  for (const auto& [k, v] : r.facts) {
    facts[k] = v;
    auto s = fact_status(r, k, v);
    boost::json::object j;
    j["status"] = s.status;
    boost::json::array by;
    for (const auto& id : s.by) by.emplace_back(id);
    j["by"] = std::move(by);
    if (!s.why.empty()) j["why"] = s.why;
    statuses[k] = std::move(j);
  }
  o["facts"] = std::move(facts);
  o["fact_status"] = std::move(statuses);
  if (r.gpus) {
    const auto& g = *r.gpus;
    boost::json::array arch;
    for (const auto& a : g.architectures) arch.emplace_back(a);
    boost::json::object j{{"verified", g.verified},
                          {"evidence_items", g.evidence_items},
                          {"architectures", std::move(arch)},
                          {"simulated", g.simulated}};
    j["required"] = g.required ? boost::json::value(*g.required) : boost::json::value(nullptr);
    if (!g.why_none.empty()) j["why_none"] = g.why_none;
    o["gpus"] = std::move(j);
  }
  return o;
}

}  // namespace pi::verify
