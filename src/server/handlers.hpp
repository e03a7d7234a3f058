#pragma once
// Handlers of the proxy's own endpoints (rows of the route table with Handling::Local). Each takes
// the call and returns the response; none touches the socket.
#include "server/context.hpp"

namespace pi::server {

awaitable<Response> handle_version(Call& call);    // GET /version
awaitable<Response> handle_metrics(Call& call);    // GET /metrics (the proxy's, then the engine's)
awaitable<Response> handle_signature(Call& call);  // GET /v1/signature/{id}?signing_algo=
awaitable<Response> handle_attestation(
    Call& call);  // GET /v1/attestation[/report]?nonce=&signing_algo=&signing_address=

}  // namespace pi::server
