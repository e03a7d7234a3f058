#include "devtee/pki_service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <memory>
#include <vector>

#include "crypto/bytes.hpp"
#include "devtee/sim_quote.hpp"

namespace pi::devtee {

ServiceFactory pki_service(TestPki pki_in, std::string app_compose_in) {
  auto pki = std::make_shared<const TestPki>(std::move(pki_in));
  if (app_compose_in.empty()) app_compose_in = sim_default_app_compose();
  return [pki, app_compose_in](Handler recorded) -> Service {
    auto handler = std::make_shared<const Handler>(std::move(recorded));
    return [pki, handler, app_compose = app_compose_in](std::string_view method, std::string_view target,
                                                        std::string_view body) -> Reply {
      const TestPki& p = *pki;
      Reply r = handler->handle(method, target, body);
      if (r.status != 200) return r;
      std::string_view path = target.substr(0, target.find('?'));
      try {
        if (path == "/GetQuote" || path == "/Info") {
          auto v = boost::json::parse(r.body).as_object();
          std::array<std::uint8_t, 64> rd{};
          if (path == "/GetQuote") {
            auto b = from_hex(v.at("report_data").as_string());
            if (!b || b->size() != 64) return {500, R"({"error":"internal error"})"};
            std::copy(b->begin(), b->end(), rd.begin());
          }
          std::vector<SimEvent> emitted;
          for (auto& e : handler->emitted_events())
            emitted.push_back(sim_runtime_event(std::move(e.event), std::move(e.payload)));
          auto ev = make_sim_evidence(p, rd, app_compose, emitted);
          boost::json::object vm{{"spec_version", 1}, {"os_image_hash", ev.info.at("os_image_hash")}};
          if (path == "/Info") {
            boost::json::object info = ev.info;
            info["vm_config"] = boost::json::serialize(vm);
            info["simulated"] = true;
            return {200, boost::json::serialize(info)};
          }
          v["quote"] = to_hex(ev.quote);
          v["event_log"] = ev.event_log;
          v["vm_config"] = boost::json::serialize(vm);
          v["simulated"] = true;
          return {200, boost::json::serialize(v)};
        }
      } catch (const std::exception& e) {
        spdlog::error("dev-tee --pki: internal error: {}", e.what());
        return {500, R"({"error":"internal error"})"};
      }
      return r;
    };
  };
}

}  // namespace pi::devtee
