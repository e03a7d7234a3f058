#pragma once
// hiredis's asynchronous API on an Asio event loop. hiredis ships adapters for libevent, libev, libuv, …
// but not for Asio; this one implements its five hooks (addRead, delRead, addWrite, delWrite, cleanup) with
// readiness waits on the context's socket, so the proxy needs no second event library.
//
// Use from the io_context's thread only (hiredis contexts are not thread-safe). attach() before the first
// command; the adapter lives until hiredis calls cleanup (redisAsyncFree, or a disconnect), and waits that
// complete after that do nothing.
#include <boost/asio/io_context.hpp>

struct redisAsyncContext;

namespace pi::server {

// Returns false if the context already has an event library attached.
bool redis_asio_attach(redisAsyncContext* ac, boost::asio::io_context& ioc);

}  // namespace pi::server
