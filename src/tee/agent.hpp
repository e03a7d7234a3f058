#pragma once
// The TEE agent seam: what the proxy needs from the TEE at run time (a quote over report_data, the
// instance's Info). dstack's guest agent is the implementation today; the proxy holds the interface,
// chosen at start-up.
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "crypto/bytes.hpp"
#include "tee/dstack_client.hpp"

namespace pi::tee {

class TeeAgent {
 public:
  virtual ~TeeAgent() = default;
  // "unix:/var/run/dstack.sock", "http://host:port", …
  virtual std::string describe() const = 0;
  // A quote over report_data (≤ 64 bytes). Throws DstackError (or another std::exception) on failure.
  virtual boost::asio::awaitable<QuoteResult> get_quote(ByteView report_data) = 0;
  // The instance's Info (app id, instance id, compose, …); may be cached by the implementation.
  virtual boost::asio::awaitable<boost::json::object> info() = 0;
};

// dstack's guest agent at `ep`; Info is fetched once and cached (it does not change while the VM runs).
std::shared_ptr<TeeAgent> make_dstack_agent(DstackEndpoint ep,
                                            std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace pi::tee
