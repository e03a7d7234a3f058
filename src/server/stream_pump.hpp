#pragma once
// Relays an engine's Server-Sent-Events body to the client chunk by chunk, feeding every byte to the
// response signer, with one deadline per wait enforced by one watchdog timer (not three socket timers
// re-armed per token: see docs/performance.md).
#include <string>

#include "server/config.hpp"
#include "server/http.hpp"
#include "server/response_signer.hpp"

namespace pi::server {

struct PumpResult {
  bool client_gone = false;    // a write to the client failed (or timed out)
  bool engine_failed = false;  // the engine's stream broke (error, close before its end, timeout)
  bool engine_timed_out = false;
  std::string held;       // bytes from the completing chunk on: written only after signing
  std::size_t bytes = 0;  // body bytes relayed or held
};

// `signer` may be null (an unsigned route): bytes are then relayed without inspection.
awaitable<PumpResult> pump_stream(tcp::socket& client, tcp::socket& engine, beast::flat_buffer& buf,
                                  http::response_parser<http::buffer_body>& parser, ResponseSigner* signer,
                                  const ServerConfig& cfg);

}  // namespace pi::server
