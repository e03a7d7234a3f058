#pragma once
// The relay: forwards a request to the engine unchanged (the exact body bytes, moved, never
// re-serialized), relays the answer back — whole or as a stream — through the response signer,
// and cancels the engine's work when the client goes away.
#include "server/context.hpp"

namespace pi::server {

// Handles a Forward / ForwardSigned route. Returns whether the client connection may be reused.
awaitable<bool> relay(Call& call);

}  // namespace pi::server
