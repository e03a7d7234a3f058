#pragma once
// dev-tee: a SIMULATED stand-in for the dstack guest agent, for development and tests.
// It is NOT a TEE and not a security boundary. It speaks dstack's wire protocol (HTTP/1.1 + JSON over
// a Unix socket: /GetQuote, /Info, /GetKey, /EmitEvent, /Version) and serves real recorded evidence from a fixture,
// with the caller's report_data written into the recorded quote — which breaks the quote's signature,
// so any correct verifier must reject it. Every JSON answer carries "simulated": true.
#include <array>
#include <boost/asio/any_io_executor.hpp>
#include <boost/json/object.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/bytes.hpp"

namespace pi::devtee {

// Recorded evidence served by dev-tee. Two file shapes are accepted:
//  - {"quote": {"quote": hex, "event_log": str}, "info": {...}}  (tests/fixtures/tdx/vllm_proxy_sample_dstack.json)
//  - {"quote": hex, "event_log": str, "vm_config": str, ..., "info"?: {...}}  (a raw GetQuote answer)
struct Fixture {
  Bytes quote;                              // the recorded TDX quote (v4 or v5)
  std::size_t report_data_offset = 0;       // where REPORTDATA (64 bytes) sits in `quote`
  std::string event_log;                    // JSON text as recorded (a JSON array in a string)
  std::string vm_config;                    // JSON text; see load_fixture for where it comes from
  std::optional<boost::json::object> info;  // dstack Info with tcb_info as a JSON *string*
};

// Throws std::runtime_error with a clear message on a missing/malformed file or a quote that is not a TDX
// v4/v5 quote long enough to hold REPORTDATA.
Fixture load_fixture(const std::string& path);

// $PI_DEVTEE_FIXTURE if set, else <dir of this executable>/../tests/fixtures/tdx/vllm_proxy_sample_dstack.json.
std::string default_fixture_path();

// Deterministic key derivation from a 32-byte seed:
//   k0 = HMAC-SHA256(seed, "dstack-dev-tee-key" ‖ 0x00 ‖ path ‖ 0x00 ‖ purpose)
//   while k is not a valid secp256k1 secret: k_i = HMAC-SHA256(seed, same message ‖ 0x00 ‖ u32be(i)), i = 1, 2, ...
class KeyDeriver {
 public:
  // With a state dir: reads <dir>/seed (64 hex chars), or creates it (dir 0700, file 0600) from fresh randomness.
  // Without: a random per-process seed. Throws std::runtime_error on I/O errors or a corrupt seed file.
  static KeyDeriver open(const std::string& state_dir);
  explicit KeyDeriver(const std::array<std::uint8_t, 32>& seed) : seed_(seed) {}

  // Throws std::invalid_argument if path or purpose contains a NUL byte (the separator).
  Bytes derive(std::string_view path, std::string_view purpose) const;
  bool persistent() const { return persistent_; }

 private:
  std::array<std::uint8_t, 32> seed_{};
  bool persistent_ = false;
};

// The origin-form path + query of an HTTP request-target, as dstack's guest agent routes it:
//  - absolute-form (RFC 9112 §3.2.2: servers MUST accept it), e.g. "http://unix.socket/GetKey" as the Rust
//    dstack-sdk sends it, loses its scheme and authority ("/GetKey"; no path at all gives "/");
//  - dstack's pRPC prefix ("/prpc/GetQuote?json", the form dstack's own services are called with) is dropped.
// Anything else is returned unchanged.
std::string normalize_target(std::string_view target);

// One EmitEvent call: a dstack runtime event (RTMR3, event type 0x08000001) with its raw payload.
struct EmittedEvent {
  std::string event;
  Bytes payload;
};

struct Reply {
  unsigned status = 200;
  std::string body;  // JSON
};

// The request → answer logic, independent of sockets. `target` is the request-target (path + optional query),
// `body` the raw request body (may be empty).
class Handler {
 public:
  Handler(Fixture fixture, KeyDeriver keys);
  Reply handle(std::string_view method, std::string_view target, std::string_view body) const;

  // What /EmitEvent has recorded, in order. Copies of a Handler share one list (thread-safe). As on dstack, each
  // event extends RTMR3 and is appended to the event log: in the recorded-fixture answers the quote's RTMR3 is
  // extended in place (like REPORTDATA, this breaks the recorded signature) and Info's tcb_info follows;
  // --pki mode rebuilds its simulated evidence with them (devtee/pki_service.cpp).
  std::vector<EmittedEvent> emitted_events() const;

  static constexpr std::size_t kMaxEmittedEvents = 1024;

 private:
  Reply get_quote(const boost::json::object& args) const;
  Reply info() const;
  Reply get_key(const boost::json::object& args) const;
  Reply emit_event(const boost::json::object& args) const;
  Reply version() const;

  struct Events;
  Fixture fixture_;
  KeyDeriver keys_;
  std::shared_ptr<Events> events_;
};

struct Options {
  std::string socket_path;
  std::string fixture_path;  // empty: default_fixture_path()
  std::string state_dir;     // empty: random per-process seed
  // Info's instance_id instead of the fixture's (a fleet test runs one dev-tee per replica); hex, <= 64 chars.
  std::string instance_id;
  std::size_t body_limit = std::size_t{64} << 10;
  std::chrono::seconds idle_timeout{30};
};

// Answers one request (method, request-target, raw body). The recorded-fixture Handler is the default;
// --pki mode wraps it (devtee/pki_service.hpp).
using Service = std::function<Reply(std::string_view method, std::string_view target, std::string_view body)>;
// Turns the recorded-fixture Handler the server has loaded into the service it answers with.
using ServiceFactory = std::function<Service(Handler handler)>;

// The Unix-socket server. Construction loads the fixture and seed and binds the socket (removing a stale socket
// file first; refusing to replace anything that is not a socket); start() begins accepting on `ex`.
// Single-threaded use: call start()/stop() from the executor's thread (or while it is not running).
class Server {
 public:
  Server(boost::asio::any_io_executor ex, Options opts, const ServiceFactory& make_service = {});
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();
  // Stops accepting, closes open connections and removes the socket file. Idempotent.
  void stop();
  const std::string& socket_path() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace pi::devtee
