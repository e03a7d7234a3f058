#include "server/handlers.hpp"

#include <boost/json.hpp>

#include "protocol/wire.hpp"
#include "server/error.hpp"
#include "server/query.hpp"
#include "server/response_signer.hpp"
#include "server/routes.hpp"
#include "version.hpp"

namespace pi::server {

namespace json = boost::json;

awaitable<Response> handle_version(Call& call) {
  const auto& tee = call.svc().tee;
  const auto& identity = call.svc().identity;
  json::object o;
  o["name"] = "private-inference";
  o["version"] = std::string(kVersion);
  json::object t;
  t["mode"] = tee.agent ? "dstack" : "none";
  t["endpoint"] = tee.agent ? tee.agent->describe() : "";
  t["simulated"] = tee.simulated;
  t["agent_version"] = tee.agent_version;
  o["tee"] = std::move(t);
  o["signing_keys"] = tee.keys_from_tee ? "dstack-derived (GetKey: stable across restarts)"
                                        : "random (no TEE agent: the identity changes on every restart)";
  json::object addrs;
  addrs["ecdsa"] = identity.signing_address(protocol::SigningAlgo::Ecdsa);
  addrs["ed25519"] = identity.signing_address(protocol::SigningAlgo::Ed25519);
  o["signing_addresses"] = std::move(addrs);
  json::object g;
  g["mode"] = !tee.gpu ? "off" : (tee.gpu_required ? "required" : "auto");
  g["available"] = tee.gpu && tee.gpu->available();
  g["simulated"] = tee.gpu && tee.gpu->simulated();
  if (tee.gpu && !tee.gpu->available()) g["error"] = tee.gpu->load_error();
  o["gpu_evidence"] = std::move(g);
  o["simulated"] = tee.simulated || (tee.gpu && tee.gpu->simulated());
  co_return json_response(http::status::ok, json::serialize(o), call.keep_alive());
}

awaitable<Response> handle_metrics(Call& call) {
  auto& svc = call.svc();
  std::string body = svc.metrics.render(svc.store->size(), svc.store->capacity());
  if (svc.tee.gpu) svc.tee.gpu->render_metrics(body);
  auto engine = co_await call.worker.pool.get("/metrics");
  body += "\n# ---- backend /metrics ----\n";
  body += engine ? *engine : std::string("# backend /metrics unavailable\n");
  Response res{http::status::ok, 11};
  res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  res.set(http::field::server, kServerName);
  res.keep_alive(call.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  co_return res;
}

awaitable<Response> handle_signature(Call& call) {
  auto& svc = call.svc();
  const std::string id = decode_path_segment(call.target.path.substr(call.route.path.size()));
  const auto algo = protocol::parse_signing_algo(query_param(call.target.query, "signing_algo").value_or("ecdsa"));
  if (!algo)
    co_return HttpError::bad_request("signing_algo must be 'ecdsa' or 'ed25519'", "invalid_signing_algo",
                                     "signing_algo")
        .render(call.keep_alive());
  auto rec = id.empty() ? std::nullopt : svc.store->get(record_key(call.owner, id));
  if (!rec)
    co_return HttpError::not_found("Chat id not found or expired", "signature_not_found").render(call.keep_alive());
  co_return json_response(http::status::ok, json::serialize(protocol::signature_response(*rec, svc.identity, *algo)),
                          call.keep_alive());
}

}  // namespace pi::server
