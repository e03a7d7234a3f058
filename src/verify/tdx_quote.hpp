#pragma once
// Intel DCAP quote parsing for the verifier: the one layout, parser and serializer live in
// protocol/tdx_quote.hpp; these are the names the verifier has always used for them.
// Parsing only checks structure; every cryptographic check lives in dcap.hpp.
#include <cstddef>

#include "protocol/tdx_quote.hpp"

namespace pi::verify {

using protocol::tdx::EnclaveReport;
using protocol::tdx::kTeeTypeSgx;
using protocol::tdx::kTeeTypeTdx;
using protocol::tdx::parse_quote;
using protocol::tdx::Quote;
using protocol::tdx::QuoteParseError;
using protocol::tdx::TdReport;
using protocol::tdx::tee_type_name;

inline constexpr std::size_t kTdReportDataOffset = protocol::tdx::kV4ReportDataOffset;  // of a v4 quote

}  // namespace pi::verify
