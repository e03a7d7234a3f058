#include "cli/commands.hpp"

namespace pi::cli {
Runner register_serve(CLI::App& app) {
  auto* sub = app.add_subcommand("serve", "Run the attested signing proxy in front of an OpenAI-compatible engine");
  (void)sub;
  return [] { return 2; };
}
}  // namespace pi::cli
