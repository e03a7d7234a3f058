#include "server/routes.hpp"

#include <vector>

#include "server/handlers.hpp"

namespace pi::server {

namespace {

using enum Handling;
constexpr auto GET = http::verb::get;
constexpr auto POST = http::verb::post;

// clang-format off
constexpr RouteSpec kRoutes[] = {
  // path                       prefix method group          label                   handling       handler             token_scoped
  {"/v1/chat/completions",      false, POST, "inference",   "/v1/chat/completions", ForwardSigned, nullptr, false},
  {"/v1/completions",           false, POST, "inference",   "/v1/completions",      ForwardSigned, nullptr, false},
  {"/v1/embeddings",            false, POST, "inference",   "/v1/embeddings",       ForwardSigned, nullptr, false},
  {"/v1/responses",             false, POST, "inference",   "/v1/responses",        ForwardSigned, nullptr, false},
  {"/v1/models",                false, GET,  "models",      "/v1/models",           Forward,       nullptr, false},
  {"/health",                   false, GET,  "health",      "/health",              Forward,       nullptr, false},
  {"/version",                  false, GET,  "version",     "/version",             Local,         handle_version, false},
  {"/metrics",                  false, GET,  "metrics",     "/metrics",             Local,         handle_metrics, false},
  {"/tokenize",                 false, POST, "inference",   "/tokenize",            Forward,       nullptr, false},
  {"/detokenize",               false, POST, "inference",   "/detokenize",          Forward,       nullptr, false},
  {"/v1/signature/",            true,  GET,  "signature",   "/v1/signature",        Local,         handle_signature, true },
  {"/v1/attestation/report",    false, GET,  "attestation", "/v1/attestation",      Local,         handle_attestation, false},
  {"/v1/attestation",           false, GET,  "attestation", "/v1/attestation",      Local,         handle_attestation, false},
};
// clang-format on

struct Table {
  std::vector<RouteSpec> rows;
  std::vector<std::string> labels;
  Table() {
    for (RouteSpec r : kRoutes) {
      std::size_t i = 0;
      while (i < labels.size() && labels[i] != r.label) ++i;
      if (i == labels.size()) labels.emplace_back(r.label);
      r.metric = i;
      rows.push_back(r);
    }
    labels.emplace_back("other");
  }
};

const Table& table() {
  static const Table t;
  return t;
}

bool matches(const RouteSpec& r, std::string_view path) { return r.prefix ? path.starts_with(r.path) : path == r.path; }

}  // namespace

std::span<const RouteSpec> routes() { return table().rows; }
std::span<const std::string> metric_labels() { return table().labels; }
std::size_t other_metric() { return table().labels.size() - 1; }

std::set<std::string> route_groups() {
  std::set<std::string> g;
  for (const auto& r : routes()) g.emplace(r.group);
  return g;
}

RouteMatch match_route(std::string_view path, http::verb method) {
  const RouteSpec* path_match = nullptr;
  for (const auto& r : routes()) {
    if (!matches(r, path)) continue;
    if (r.method == method) return {&r, std::nullopt};
    if (path_match == nullptr) path_match = &r;
  }
  if (path_match != nullptr) return {path_match, HttpError::method_not_allowed(path_match->method)};
  return {nullptr, HttpError::not_found("Unknown endpoint", "unknown_url")};
}

}  // namespace pi::server
