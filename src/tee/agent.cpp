#include "tee/agent.hpp"

#include <boost/asio/this_coro.hpp>
#include <mutex>
#include <optional>

namespace pi::tee {

namespace {

class DstackAgent final : public TeeAgent {
 public:
  DstackAgent(DstackEndpoint ep, std::chrono::milliseconds timeout) : ep_(std::move(ep)), timeout_(timeout) {}

  std::string describe() const override { return ep_.describe(); }

  boost::asio::awaitable<QuoteResult> get_quote(ByteView report_data) override {
    DstackClient dc(co_await boost::asio::this_coro::executor, ep_, timeout_);
    co_return co_await dc.get_quote(report_data);
  }

  boost::asio::awaitable<boost::json::object> info() override {
    {
      std::lock_guard lk(mu_);
      if (info_) co_return *info_;
    }
    DstackClient dc(co_await boost::asio::this_coro::executor, ep_, timeout_);
    auto fresh = co_await dc.info();
    std::lock_guard lk(mu_);
    if (!info_) info_ = fresh;
    co_return *info_;
  }

 private:
  DstackEndpoint ep_;
  std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::optional<boost::json::object> info_;
};

}  // namespace

std::shared_ptr<TeeAgent> make_dstack_agent(DstackEndpoint ep, std::chrono::milliseconds timeout) {
  return std::make_shared<DstackAgent>(std::move(ep), timeout);
}

}  // namespace pi::tee
