#include "server/handlers.hpp"

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
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
  std::string body = svc.metrics.render(svc.store->size(), svc.store->capacity(), svc.store->health());
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

namespace {

// The store's get_async as an awaitable that resumes on the caller's executor.
template <class Token>
auto async_get(SignatureStore& store, std::string key, Token&& token) {
  return net::async_initiate<Token, void(GetResult)>(
      [&store, k = std::move(key)](auto handler) mutable {
        auto ex = net::prefer(net::get_associated_executor(handler), net::execution::outstanding_work.tracked);
        store.get_async(k, [h = std::move(handler), ex](GetResult r) mutable {
          net::post(ex, [h = std::move(h), r = std::move(r)]() mutable { std::move(h)(std::move(r)); });
        });
      },
      token);
}

}  // namespace

// Sign on demand: the record holds the hashes; the signatures are made here (deterministic, so the
// same bytes on every fetch and on every replica holding the fleet's keys).
awaitable<Response> handle_signature(Call& call) {
  auto& svc = call.svc();
  const std::string id = decode_path_segment(call.target.path.substr(call.route.path.size()));
  const auto algo = protocol::parse_signing_algo(query_param(call.target.query, "signing_algo").value_or("ecdsa"));
  if (!algo)
    co_return HttpError::bad_request("signing_algo must be 'ecdsa' or 'ed25519'", "invalid_signing_algo",
                                     "signing_algo")
        .render(call.keep_alive());
  GetResult found;
  if (!id.empty()) found = co_await async_get(*svc.store, record_key(call.owner, id), net::use_awaitable);
  if (found.status == GetResult::Status::Unavailable)
    co_return HttpError::unavailable("The signature store is unreachable; retry shortly", "signature_store_unavailable",
                                     false)
        .with_header(http::field::retry_after, "1")
        .render(call.keep_alive());
  if (found.status != GetResult::Status::Found)
    co_return HttpError::not_found("Chat id not found or expired", "signature_not_found").render(call.keep_alive());
  const auto& r = found.record;
  const auto signed_rec = svc.identity.sign(r.request_hash, r.response_hash);
  co_return json_response(http::status::ok,
                          json::serialize(protocol::signature_response(signed_rec, svc.identity, *algo, r.instance_id)),
                          call.keep_alive());
}

}  // namespace pi::server
