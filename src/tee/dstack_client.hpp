#pragma once
// Client for the dstack guest agent (the TEE's local API): HTTP/1.1 + JSON over a Unix socket
// (or plain HTTP for a simulator endpoint), lowercase hex everywhere.
// Endpoints used: POST /GetQuote {"report_data": hex}, POST /Info, POST /GetKey {"path","purpose"},
// POST /Version.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "crypto/bytes.hpp"

namespace pi::tee {

struct DstackEndpoint {
  enum class Kind { Unix, Http };
  Kind kind = Kind::Unix;
  std::string path;              // Unix socket path (Kind::Unix)
  std::string host;              // Kind::Http
  std::string port;              // Kind::Http
  std::string describe() const;  // "unix:/var/run/dstack.sock" or "http://host:port"
};

// Parses "/path/to.sock", "unix:/path", or "http://host:port".
std::optional<DstackEndpoint> parse_dstack_endpoint(const std::string& s);

// Discovery order: `flag_value` (if non-empty), env DSTACK_SIMULATOR_ENDPOINT, /var/run/dstack.sock,
// /var/run/dstack/dstack.sock. Explicit values (flag/env) are used as given; the default paths only
// if a socket exists there. nullopt: no TEE agent. Throws DstackError when an explicit value cannot be
// parsed (e.g. https://…), rather than silently running without a TEE.
std::optional<DstackEndpoint> discover_dstack(const std::string& flag_value);

class DstackError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct QuoteResult {
  std::string quote_hex;        // lowercase hex, no 0x
  std::string event_log;        // JSON text exactly as the agent returned it (a JSON array in a string)
  std::string report_data_hex;  // as echoed by the agent
  std::string vm_config;        // JSON text, may be empty
  bool simulated = false;       // the agent labelled its answer "simulated": true (dev-tee)
};

struct KeyResult {
  Bytes key;  // raw key bytes (32 for secp256k1 paths)
  std::vector<std::string> signature_chain;
};

// Each call opens its own connection, so one client may be used from several coroutines at once.
class DstackClient {
 public:
  DstackClient(boost::asio::any_io_executor ex, DstackEndpoint ep,
               std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // report_data: at most 64 bytes (dstack pads with zeros). Throws DstackError on any failure.
  boost::asio::awaitable<QuoteResult> get_quote(ByteView report_data);
  boost::asio::awaitable<boost::json::object> info();
  boost::asio::awaitable<KeyResult> get_key(std::string path, std::string purpose);
  boost::asio::awaitable<boost::json::object> version();

  const DstackEndpoint& endpoint() const { return ep_; }

 private:
  boost::asio::awaitable<std::string> call(std::string method, std::string body);

  boost::asio::any_io_executor ex_;
  DstackEndpoint ep_;
  std::chrono::milliseconds timeout_;
};

// Blocking convenience for start-up code (runs a private io_context). Throws DstackError.
KeyResult get_key_blocking(const DstackEndpoint& ep, const std::string& path, const std::string& purpose,
                           std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace pi::tee
