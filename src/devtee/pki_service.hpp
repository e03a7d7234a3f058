#pragma once
// dev-tee --pki over the socket: the recorded-fixture Handler still validates every request and
// answers /GetKey and /Version; in /GetQuote its quote and event log are replaced with SIMULATED ones
// signed through the test PKI over the same (validated, zero-padded) report_data, and /Info is the
// matching simulated Info. Every such answer carries "simulated": true.
#include "devtee/devtee.hpp"
#include "devtee/test_pki.hpp"

namespace pi::devtee {

// For Server(ex, opts, pki_service(pki)).
ServiceFactory pki_service(TestPki pki);

}  // namespace pi::devtee
