// `private-inference healthcheck`: a container health probe for the FROM-scratch image, which has no shell
// and no curl (deploy/docker-compose.yml). GET one URL; exit 0 on HTTP 200, 1 otherwise.
#include <iostream>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "verify/http_client.hpp"

namespace pi::cli {

Runner register_healthcheck(CLI::App& app) {
  auto* sub = app.add_subcommand("healthcheck", "Container health probe: GET a URL, exit 0 on HTTP 200 (else 1)");
  auto url = std::make_shared<std::string>("http://127.0.0.1:8000/version");
  auto timeout = std::make_shared<int>(5);
  sub->add_option("--url", *url, "what to GET (the proxy's own /version; /health also asks the engine)")
      ->capture_default_str();
  sub->add_option("--timeout", *timeout, "seconds")->capture_default_str()->check(CLI::Range(1, 300));
  return [url, timeout]() -> int {
    try {
      auto r = verify::http_get(*url, {}, *timeout);
      if (r.status == 200) return 0;
      std::cerr << "healthcheck: " << *url << " answered " << r.status << std::endl;
    } catch (const std::exception& e) {
      std::cerr << "healthcheck: " << *url << ": " << e.what() << std::endl;
    }
    return 1;
  };
}

}  // namespace pi::cli
