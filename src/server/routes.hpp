#pragma once
// The route table: every endpoint the proxy serves is one row — method, path, auth group, how it is
// handled, and the metrics label. 404 and 405 answers, the `--public` group names and the metrics
// routes all derive from this table. Adding an endpoint = one row here + one handler.
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>

#include "server/context.hpp"
#include "server/error.hpp"

namespace pi::server {

enum class Handling {
  Forward,        // relayed to the engine unchanged, not signed
  ForwardSigned,  // relayed to the engine unchanged; a 2xx answer is signed
  Local           // answered by the proxy (handler)
};

using LocalHandler = awaitable<Response> (*)(Call&);

struct RouteSpec {
  std::string_view path;  // exact path; with `prefix`, every path that starts with it
  bool prefix = false;
  http::verb method = http::verb::get;
  std::string_view group;  // auth group: `--public` lists the groups served without a token
  std::string_view label;  // metrics label (rows may share one)
  Handling handling = Handling::Local;
  LocalHandler handler = nullptr;
  // A presented token is checked even when the group is public (it names the caller's namespace
  // of signature records).
  bool token_scoped = false;
  std::size_t metric = 0;  // index of `label` in metric_labels() (set by the table)
};

// The rows, in match order.
std::span<const RouteSpec> routes();
// Unique metrics labels of the rows, then "other" (requests that matched no row).
std::span<const std::string> metric_labels();
std::size_t other_metric();
// Every auth group the table uses (what `--public` accepts).
std::set<std::string> route_groups();

// The row for a request, or the error to answer (404 unknown path, 405 with Allow).
struct RouteMatch {
  const RouteSpec* route = nullptr;
  std::optional<HttpError> error;
};
RouteMatch match_route(std::string_view path, http::verb method);

}  // namespace pi::server
