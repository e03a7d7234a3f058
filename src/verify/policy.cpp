#include "verify/policy.hpp"

#include <boost/json.hpp>
#include <cctype>
#include <stdexcept>

#include <fmt/format.h>

#include "crypto/bytes.hpp"

namespace pi::verify {
namespace {
namespace json = boost::json;

std::optional<std::vector<std::string>> list(const json::object& o, std::string_view key, std::size_t hex_bytes,
                                             std::string_view parent = "policy") {
  auto it = o.find(key);
  if (it == o.end()) return std::nullopt;
  if (!it->value().is_array()) throw std::runtime_error(fmt::format("{}.{} must be an array of strings", parent, key));
  std::vector<std::string> out;
  for (const auto& v : it->value().get_array()) {
    if (!v.is_string()) throw std::runtime_error(fmt::format("{}.{} must be an array of strings", parent, key));
    std::string s(v.get_string());
    if (hex_bytes) {
      auto b = from_hex(s);
      if (!b || b->size() != hex_bytes)
        throw std::runtime_error(fmt::format("{}.{}: '{}' is not {} bytes of hex", parent, key, s, hex_bytes));
      s = to_hex(*b);
    }
    out.push_back(std::move(s));
  }
  return out;
}
}  // namespace

Policy parse_policy_json(std::string_view text) {
  json::value v;
  try {
    v = json::parse(text);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("policy is not JSON: ") + e.what());
  }
  if (!v.is_object()) throw std::runtime_error("policy must be a JSON object");
  const auto& o = v.get_object();
  static const char* known[] = {"allowed_tcb_statuses",
                                "allowed_advisory_ids",
                                "compose_hashes",
                                "os_image_hashes",
                                "mrtd",
                                "rtmr0",
                                "rtmr1",
                                "rtmr2",
                                "allow_debug_td",
                                "gpu",
                                "comment"};
  for (const auto& kv : o) {
    bool ok = false;
    for (auto* k : known) ok = ok || kv.key() == k;
    if (!ok) throw std::runtime_error(fmt::format("policy has unknown key '{}'", std::string(kv.key())));
  }
  Policy p;
  p.allowed_tcb_statuses = list(o, "allowed_tcb_statuses", 0);
  p.allowed_advisory_ids = list(o, "allowed_advisory_ids", 0);
  p.compose_hashes = list(o, "compose_hashes", 32);
  p.os_image_hashes = list(o, "os_image_hashes", 32);
  p.mrtd = list(o, "mrtd", 48);
  p.rtmr0 = list(o, "rtmr0", 48);
  p.rtmr1 = list(o, "rtmr1", 48);
  p.rtmr2 = list(o, "rtmr2", 48);
  if (auto it = o.find("allow_debug_td"); it != o.end()) {
    if (!it->value().is_bool()) throw std::runtime_error("policy.allow_debug_td must be true or false");
    p.allow_debug_td = it->value().get_bool();
  }
  if (auto it = o.find("gpu"); it != o.end()) {
    if (!it->value().is_object()) throw std::runtime_error("policy.gpu must be an object");
    const auto& g = it->value().get_object();
    for (const auto& kv : g)
      if (kv.key() != "min_count" && kv.key() != "allowed_architectures")
        throw std::runtime_error(fmt::format("policy.gpu has unknown key '{}'", std::string(kv.key())));
    if (auto m = g.find("min_count"); m != g.end()) {
      const auto& v = m->value();
      if (!v.is_int64() || v.get_int64() < 0 || v.get_int64() > 1024)
        throw std::runtime_error("policy.gpu.min_count must be an integer from 0 to 1024");
      p.gpu_min_count = static_cast<int>(v.get_int64());
    }
    p.gpu_allowed_architectures = list(g, "allowed_architectures", 0, "policy.gpu");
    if (p.gpu_allowed_architectures)
      for (auto& a : *p.gpu_allowed_architectures)
        for (auto& c : a) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return p;
}

}  // namespace pi::verify
