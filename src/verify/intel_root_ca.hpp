#pragma once
// The bundled Intel SGX Root CA (DER). Quotes whose PCK chain ends anywhere else never pass.
#include "crypto/bytes.hpp"

namespace pi::verify {
ByteView intel_sgx_root_ca_der();
}  // namespace pi::verify
