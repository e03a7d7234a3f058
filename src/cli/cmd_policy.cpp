// `private-inference policy`: from a deployment's app-compose.json to the `verify --policy` file that pins it
// (docs/deploy.md). dstack measures sha256 of the app-compose.json file's exact bytes into the compose-hash
// event (dstack-util: sha256_file(app-compose.json)), so the hash here is over the bytes as read, never over a
// re-serialisation.
#include <boost/json.hpp>
#include <cctype>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "crypto/bytes.hpp"
#include "crypto/hash.hpp"
#include "verify/policy.hpp"

namespace pi::cli {
namespace {

namespace json = boost::json;

struct PolicyOpts {
  std::string app_compose;
  std::vector<std::string> image_digests;
  std::string out;
};

bool is_hex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Every `@sha256:<64 hex>` image pin in the compose text, lowercase hex.
std::set<std::string> pinned_digests(std::string_view compose) {
  std::set<std::string> out;
  constexpr std::string_view kPin = "@sha256:";
  for (auto pos = compose.find(kPin); pos != std::string_view::npos; pos = compose.find(kPin, pos + 1)) {
    auto hex = compose.substr(pos + kPin.size(), 64);
    if (is_hex64(hex)) out.insert(lower(std::string(hex)));
  }
  return out;
}

// `image:` lines whose value has no @sha256: pin (a tag can be moved; the compose hash then pins nothing).
std::vector<std::string> unpinned_images(std::string_view compose) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < compose.size()) {
    auto end = compose.find('\n', start);
    if (end == std::string_view::npos) end = compose.size();
    auto line = compose.substr(start, end - start);
    start = end + 1;
    auto first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line.substr(first, 6) != "image:") continue;
    auto value = line.substr(first + 6);
    auto v0 = value.find_first_not_of(" \t\"'");
    if (v0 == std::string_view::npos) continue;
    value = value.substr(v0);
    if (value.find("@sha256:") == std::string_view::npos) out.emplace_back(value);
  }
  return out;
}

int run_policy(const PolicyOpts& o) {
  std::ifstream f(o.app_compose, std::ios::binary);
  if (!f) {
    std::cerr << "policy: cannot read " << o.app_compose << std::endl;
    return 2;
  }
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  boost::system::error_code ec;
  json::value doc = json::parse(bytes, ec);
  if (ec || !doc.is_object()) {
    std::cerr << "policy: " << o.app_compose << " is not a JSON object (an app-compose.json)" << std::endl;
    return 2;
  }
  const auto& obj = doc.get_object();
  const auto* runner = obj.if_contains("runner");
  const auto* compose_file = obj.if_contains("docker_compose_file");
  if (runner == nullptr || !runner->is_string() || compose_file == nullptr || !compose_file->is_string()) {
    std::cerr << "policy: " << o.app_compose << " has no string \"runner\" and \"docker_compose_file\"" << std::endl;
    return 2;
  }
  const std::string_view compose = compose_file->get_string();
  const auto pins = pinned_digests(compose);

  for (const auto& d : o.image_digests) {
    std::string hex = lower(d.rfind("sha256:", 0) == 0 ? d.substr(7) : d);
    if (!is_hex64(hex)) {
      std::cerr << "policy: --image-digest must be sha256:<64 hex>, got '" << d << "'" << std::endl;
      return 2;
    }
    if (!pins.contains(hex)) {
      std::cerr << "policy: FAIL: image sha256:" << hex << " is not pinned in " << o.app_compose
                << "'s docker_compose_file (pinned there:";
      for (const auto& p : pins) std::cerr << " sha256:" << p;
      std::cerr << (pins.empty() ? " none)" : ")") << std::endl;
      return 1;
    }
  }
  for (const auto& img : unpinned_images(compose))
    std::cerr << "policy: warning: image '" << img
              << "' is not pinned by digest: the compose hash then does not pin its code" << std::endl;

  const std::string hash = to_hex(crypto::sha256(bytes));
  json::object policy;
  std::string comment =
      fmt::format("written by `private-inference policy` from {} (sha256 of its exact bytes)", o.app_compose);
  if (!o.image_digests.empty()) {
    comment += "; image digests checked in it:";
    for (const auto& d : o.image_digests) comment += " " + d;
  }
  policy["comment"] = comment;
  policy["compose_hashes"] = json::array{json::value(hash)};
  std::string text = json::serialize(policy) + "\n";
  verify::parse_policy_json(text);  // what verify --policy will read: it must accept it

  if (o.out.empty() || o.out == "-") {
    std::cout << text;
  } else {
    std::ofstream out(o.out, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) {
      std::cerr << "policy: cannot write " << o.out << std::endl;
      return 2;
    }
  }
  std::cerr << "policy: compose hash " << hash << (o.out.empty() || o.out == "-" ? "" : " written to " + o.out)
            << std::endl;
  return 0;
}

}  // namespace

Runner register_policy(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "policy", "Write the `verify --policy` file pinning a deployment's compose hash (sha256 of app-compose.json)");
  auto o = std::make_shared<PolicyOpts>();
  sub->add_option("--app-compose", o->app_compose, "the dstack app-compose.json that is deployed")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--image-digest", o->image_digests,
                  "sha256:<hex> of an image that must be pinned (image: …@sha256:<hex>) in the compose; "
                  "repeatable; exit 1 when one is not")
      ->allow_extra_args(false);
  sub->add_option("-o,--output", o->out, "write the policy here (default: stdout)");
  return [o]() { return run_policy(*o); };
}

}  // namespace pi::cli
