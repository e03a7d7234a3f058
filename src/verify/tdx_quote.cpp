#include "verify/tdx_quote.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace pi::verify {
namespace {

class Reader {
 public:
  Reader(ByteView data, std::size_t pos = 0) : data_(data), pos_(pos) {}
  ByteView take(std::size_t n, const char* what) {
    if (n > data_.size() - pos_)
      throw QuoteParseError(fmt::format("quote truncated: {} needs {} bytes at offset {}, only {} left", what, n, pos_,
                                        data_.size() - pos_));
    ByteView v = data_.subspan(pos_, n);
    pos_ += n;
    return v;
  }
  template <std::size_t N>
  void copy(std::array<std::uint8_t, N>& out, const char* what) {
    auto v = take(N, what);
    std::copy(v.begin(), v.end(), out.begin());
  }
  std::uint16_t u16(const char* what) {
    auto v = take(2, what);
    return static_cast<std::uint16_t>(v[0] | (v[1] << 8));
  }
  std::uint32_t u32(const char* what) {
    auto v = take(4, what);
    return static_cast<std::uint32_t>(v[0]) | (static_cast<std::uint32_t>(v[1]) << 8) |
           (static_cast<std::uint32_t>(v[2]) << 16) | (static_cast<std::uint32_t>(v[3]) << 24);
  }
  std::size_t pos() const { return pos_; }
  std::size_t left() const { return data_.size() - pos_; }

 private:
  ByteView data_;
  std::size_t pos_;
};

EnclaveReport parse_enclave_report(Reader& r, const char* what) {
  ByteView raw = r.take(384, what);
  Reader e(raw);
  EnclaveReport rep;
  rep.raw.assign(raw.begin(), raw.end());
  e.copy(rep.cpu_svn, "cpu_svn");
  rep.misc_select = e.u32("misc_select");
  e.take(28, "reserved");
  e.copy(rep.attributes, "attributes");
  e.copy(rep.mr_enclave, "mr_enclave");
  e.take(32, "reserved");
  e.copy(rep.mr_signer, "mr_signer");
  e.take(96, "reserved");
  rep.isv_prod_id = e.u16("isv_prod_id");
  rep.isv_svn = e.u16("isv_svn");
  e.take(60, "reserved");
  e.copy(rep.report_data, "report_data");
  return rep;
}

TdReport parse_td_report(Reader& r, bool td15) {
  TdReport t;
  r.copy(t.tee_tcb_svn, "tee_tcb_svn");
  r.copy(t.mr_seam, "mr_seam");
  r.copy(t.mr_signer_seam, "mr_signer_seam");
  r.copy(t.seam_attributes, "seam_attributes");
  r.copy(t.td_attributes, "td_attributes");
  r.copy(t.xfam, "xfam");
  r.copy(t.mr_td, "mr_td");
  r.copy(t.mr_config_id, "mr_config_id");
  r.copy(t.mr_owner, "mr_owner");
  r.copy(t.mr_owner_config, "mr_owner_config");
  for (auto& m : t.rtmr) r.copy(m, "rtmr");
  r.copy(t.report_data, "report_data");
  if (td15) {
    t.td15 = true;
    r.copy(t.tee_tcb_svn2, "tee_tcb_svn2");
    r.copy(t.mr_service_td, "mr_service_td");
  }
  return t;
}

// QE report certification data (type 6) or, in v3 quotes, the same fields inline.
void parse_qe_report_block(Reader& r, Quote& q) {
  q.qe_report = parse_enclave_report(r, "QE report");
  r.copy(q.qe_report_signature, "QE report signature");
  std::uint16_t auth_len = r.u16("QE authentication data size");
  auto auth = r.take(auth_len, "QE authentication data");
  q.qe_auth_data.assign(auth.begin(), auth.end());
  q.cert_data_type = r.u16("certification data type");
  std::uint32_t len = r.u32("certification data size");
  auto cd = r.take(len, "certification data");
  q.cert_data.assign(cd.begin(), cd.end());
}

}  // namespace

std::string tee_type_name(std::uint32_t tee_type) {
  if (tee_type == kTeeTypeSgx) return "SGX";
  if (tee_type == kTeeTypeTdx) return "TDX";
  return fmt::format("unknown (0x{:08x})", tee_type);
}

Quote parse_quote(ByteView raw) {
  Reader r(raw);
  Quote q;
  q.version = r.u16("header.version");
  q.attestation_key_type = r.u16("header.attestation_key_type");
  q.tee_type = r.u32("header.tee_type");
  r.take(4, "header.reserved");
  r.copy(q.qe_vendor_id, "header.qe_vendor_id");
  r.copy(q.user_data, "header.user_data");

  if (q.version == 3) {
    if (q.tee_type != kTeeTypeSgx) throw QuoteParseError("v3 quote with a non-SGX TEE type");
    q.sgx = parse_enclave_report(r, "ISV enclave report");
  } else if (q.version == 4) {
    if (q.tee_type != kTeeTypeTdx) throw QuoteParseError("v4 quote with a non-TDX TEE type");
    q.td = parse_td_report(r, false);
  } else if (q.version == 5) {
    std::uint16_t body_type = r.u16("body.type");
    std::uint32_t body_size = r.u32("body.size");
    if (body_type == 2 && body_size == 584) {
      q.td = parse_td_report(r, false);
    } else if (body_type == 3 && body_size == 648) {
      q.td = parse_td_report(r, true);
    } else if (body_type == 1 && body_size == 384) {
      q.sgx = parse_enclave_report(r, "ISV enclave report");
    } else {
      throw QuoteParseError(fmt::format("v5 quote with unsupported body type {} / size {}", body_type, body_size));
    }
  } else {
    throw QuoteParseError(fmt::format("unsupported quote version {}", q.version));
  }
  q.signed_length = r.pos();

  std::uint32_t sig_len = r.u32("signature data size");
  if (sig_len > r.left())
    throw QuoteParseError(fmt::format("quote truncated: signature data claims {} bytes, {} left", sig_len, r.left()));
  Reader s(r.take(sig_len, "signature data"));
  s.copy(q.quote_signature, "quote signature");
  s.copy(q.attestation_key, "attestation key");
  if (q.version == 3) {
    parse_qe_report_block(s, q);
  } else {
    std::uint16_t outer_type = s.u16("certification data type");
    std::uint32_t outer_len = s.u32("certification data size");
    if (outer_type != 6)
      throw QuoteParseError(
          fmt::format("certification data type {} is not 6 (QE report certification data)", outer_type));
    Reader inner(s.take(outer_len, "QE report certification data"));
    parse_qe_report_block(inner, q);
  }
  return q;
}

}  // namespace pi::verify
