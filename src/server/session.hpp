#pragma once
// The session: one client connection's HTTP/1.1 loop — read a request head within limits, find its
// route and check its token BEFORE reading any body byte, then read the body, hand the call to its
// handler (or the relay), write the answer, keep the connection alive or close it.
#include "server/context.hpp"

namespace pi::server {

awaitable<void> run_session(Worker& worker, tcp::socket socket);

// Writes a whole response to the call's client (with the client timeout) and counts it in the
// route's metrics. Returns whether the connection may carry another request.
awaitable<bool> send_response(Call& call, Response res);

}  // namespace pi::server
