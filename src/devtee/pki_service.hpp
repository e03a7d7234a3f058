#pragma once
// dev-tee --pki over the socket: the recorded-fixture Handler still validates every request and
// answers /GetKey and /Version; in /GetQuote its quote and event log are replaced with SIMULATED ones
// signed through the test PKI over the same (validated, zero-padded) report_data, and /Info is the
// matching simulated Info. Every such answer carries "simulated": true.
#include <string>

#include "devtee/devtee.hpp"
#include "devtee/test_pki.hpp"

namespace pi::devtee {

// For Server(ex, opts, pki_service(pki)). `app_compose` is the app description served in Info and hashed into
// the compose-hash event (its exact bytes, as dstack hashes the app-compose.json file); empty = the default
// simulated app (sim_default_app_compose()).
ServiceFactory pki_service(TestPki pki, std::string app_compose = {});

}  // namespace pi::devtee
