#include "protocol/tdx_quote.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>

namespace pi::protocol::tdx {
namespace {

std::string str(std::size_t n) { return std::to_string(n); }

// Sequential reads with truncation checks, for the variable-length parts.
class Reader {
 public:
  explicit Reader(ByteView data) : data_(data) {}
  ByteView take(std::size_t n, const char* what) {
    if (n > data_.size() - pos_)
      throw QuoteParseError(std::string("quote truncated: ") + what + " needs " + str(n) + " bytes at offset " +
                            str(pos_) + ", only " + str(data_.size() - pos_) + " left");
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
  std::size_t pos_ = 0;
};

// Fixed-layout access: `s` is a whole structure (its size already checked), `f` one of its fields.
template <std::size_t N>
void get(ByteView s, Field f, std::array<std::uint8_t, N>& out) {
  if (f.size != N || f.end() > s.size()) throw std::logic_error("tdx quote layout: field size mismatch");
  std::copy_n(s.begin() + static_cast<std::ptrdiff_t>(f.offset), N, out.begin());
}
std::uint32_t get_le(ByteView s, Field f) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < f.size; ++i) v |= static_cast<std::uint32_t>(s[f.offset + i]) << (8 * i);
  return v;
}
template <std::size_t N>
void set(Bytes& s, Field f, const std::array<std::uint8_t, N>& in) {
  if (f.size != N || f.end() > s.size()) throw std::logic_error("tdx quote layout: field size mismatch");
  std::copy(in.begin(), in.end(), s.begin() + static_cast<std::ptrdiff_t>(f.offset));
}
void set_le(Bytes& s, Field f, std::uint32_t v) {
  for (std::size_t i = 0; i < f.size; ++i) s[f.offset + i] = static_cast<std::uint8_t>(v >> (8 * i));
}

void put16(Bytes& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v));
  b.push_back(static_cast<std::uint8_t>(v >> 8));
}
void put32(Bytes& b, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
template <typename C>
void put(Bytes& b, const C& c) {
  b.insert(b.end(), std::begin(c), std::end(c));
}
std::uint16_t checked16(std::size_t n, const char* what) {
  if (n > std::numeric_limits<std::uint16_t>::max())
    throw std::invalid_argument(std::string(what) + " is longer than a u16 size field allows");
  return static_cast<std::uint16_t>(n);
}
std::uint32_t checked32(std::size_t n, const char* what) {
  if (n > std::numeric_limits<std::uint32_t>::max())
    throw std::invalid_argument(std::string(what) + " is longer than a u32 size field allows");
  return static_cast<std::uint32_t>(n);
}

// The one list of TD report fields, for both directions. `R` is TdReport or const TdReport.
template <class R, class F>
void td_report_fields(R& t, F&& f) {
  using namespace td_report;
  f(kTeeTcbSvn, t.tee_tcb_svn);
  f(kMrSeam, t.mr_seam);
  f(kMrSignerSeam, t.mr_signer_seam);
  f(kSeamAttributes, t.seam_attributes);
  f(kTdAttributes, t.td_attributes);
  f(kXfam, t.xfam);
  f(kMrTd, t.mr_td);
  f(kMrConfigId, t.mr_config_id);
  f(kMrOwner, t.mr_owner);
  f(kMrOwnerConfig, t.mr_owner_config);
  for (std::size_t i = 0; i < t.rtmr.size(); ++i) f(rtmr(i), t.rtmr[i]);
  f(kReportData, t.report_data);
  if (t.td15) {
    f(kTeeTcbSvn2, t.tee_tcb_svn2);
    f(kMrServiceTd, t.mr_service_td);
  }
}

template <class R, class F>
void enclave_report_fields(R& r, F&& f) {
  using namespace enclave_report;
  f(kCpuSvn, r.cpu_svn);
  f(kAttributes, r.attributes);
  f(kMrEnclave, r.mr_enclave);
  f(kMrSigner, r.mr_signer);
  f(kReportData, r.report_data);
}

EnclaveReport parse_enclave_report(Reader& r, const char* what) {
  ByteView raw = r.take(enclave_report::kSize, what);
  EnclaveReport rep;
  rep.raw.assign(raw.begin(), raw.end());
  enclave_report_fields(rep, [&](Field f, auto& a) { get(raw, f, a); });
  rep.misc_select = get_le(raw, enclave_report::kMiscSelect);
  rep.isv_prod_id = static_cast<std::uint16_t>(get_le(raw, enclave_report::kIsvProdId));
  rep.isv_svn = static_cast<std::uint16_t>(get_le(raw, enclave_report::kIsvSvn));
  return rep;
}

TdReport parse_td_report(Reader& r, bool td15) {
  TdReport t;
  t.td15 = td15;
  ByteView raw = r.take(td15 ? td_report::kSize15 : td_report::kSize10, "TD report body");
  td_report_fields(t, [&](Field f, auto& a) { get(raw, f, a); });
  return t;
}

enum class BodyKind { Sgx, Td10, Td15 };

// Reads the header into `q`, checks version against TEE type, reads the v5 body descriptor, and
// leaves `r` at the start of the body.
BodyKind read_header(Reader& r, Quote& q) {
  ByteView h = r.take(header::kSize, "header");
  q.version = static_cast<std::uint16_t>(get_le(h, header::kVersion));
  q.attestation_key_type = static_cast<std::uint16_t>(get_le(h, header::kAttestationKeyType));
  q.tee_type = get_le(h, header::kTeeType);
  get(h, header::kReserved, q.header_reserved);
  get(h, header::kQeVendorId, q.qe_vendor_id);
  get(h, header::kUserData, q.user_data);

  if (q.version == 3) {
    if (q.tee_type != kTeeTypeSgx) throw QuoteParseError("v3 quote with a non-SGX TEE type");
    return BodyKind::Sgx;
  }
  if (q.version == 4) {
    if (q.tee_type != kTeeTypeTdx) throw QuoteParseError("v4 quote with a non-TDX TEE type");
    return BodyKind::Td10;
  }
  if (q.version == 5) {
    std::uint16_t body_type = r.u16("body.type");
    std::uint32_t body_size = r.u32("body.size");
    if (body_type == body_descriptor::kTdReport10 && body_size == td_report::kSize10) return BodyKind::Td10;
    if (body_type == body_descriptor::kTdReport15 && body_size == td_report::kSize15) return BodyKind::Td15;
    if (body_type == body_descriptor::kSgxEnclaveReport && body_size == enclave_report::kSize) return BodyKind::Sgx;
    throw QuoteParseError("v5 quote with unsupported body type " + std::to_string(body_type) + " / size " +
                          std::to_string(body_size));
  }
  throw QuoteParseError("unsupported quote version " + std::to_string(q.version));
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

Bytes serialize_qe_report_block(const Quote& q) {
  Bytes b = serialize_enclave_report(q.qe_report);
  put(b, q.qe_report_signature);
  put16(b, checked16(q.qe_auth_data.size(), "QE authentication data"));
  put(b, q.qe_auth_data);
  put16(b, q.cert_data_type);
  put32(b, checked32(q.cert_data.size(), "certification data"));
  put(b, q.cert_data);
  return b;
}

}  // namespace

std::string tee_type_name(std::uint32_t tee_type) {
  if (tee_type == kTeeTypeSgx) return "SGX";
  if (tee_type == kTeeTypeTdx) return "TDX";
  char buf[24];
  std::snprintf(buf, sizeof buf, "unknown (0x%08x)", tee_type);
  return buf;
}

Quote parse_quote(ByteView raw) {
  Reader r(raw);
  Quote q;
  const BodyKind kind = read_header(r, q);
  if (kind == BodyKind::Sgx)
    q.sgx = parse_enclave_report(r, "ISV enclave report");
  else
    q.td = parse_td_report(r, kind == BodyKind::Td15);
  q.signed_length = r.pos();

  std::uint32_t sig_len = r.u32("signature data size");
  if (sig_len > r.left())
    throw QuoteParseError("quote truncated: signature data claims " + str(sig_len) + " bytes, " + str(r.left()) +
                          " left");
  Reader s(r.take(sig_len, "signature data"));
  q.length = r.pos();
  s.copy(q.quote_signature, "quote signature");
  s.copy(q.attestation_key, "attestation key");
  if (q.version == 3) {
    parse_qe_report_block(s, q);
  } else {
    std::uint16_t outer_type = s.u16("certification data type");
    std::uint32_t outer_len = s.u32("certification data size");
    if (outer_type != signature_data::kCertQeReportData)
      throw QuoteParseError("certification data type " + std::to_string(outer_type) +
                            " is not 6 (QE report certification data)");
    Reader inner(s.take(outer_len, "QE report certification data"));
    parse_qe_report_block(inner, q);
  }
  return q;
}

TrailingBytes trailing_bytes(ByteView raw, const Quote& q) {
  TrailingBytes t;
  if (q.length >= raw.size()) return t;
  t.count = raw.size() - q.length;
  for (std::size_t i = q.length; i < raw.size(); ++i)
    if (raw[i] != 0) {
      t.all_zero = false;
      t.first_nonzero_offset = i;
      break;
    }
  return t;
}

std::size_t check_trailing_bytes(ByteView raw, const Quote& q) {
  TrailingBytes t = trailing_bytes(raw, q);
  if (!t.all_zero)
    throw QuoteParseError(str(t.count) + " bytes follow the signature data (which ends at offset " + str(q.length) +
                          ") and they are not zero padding (first non-zero byte at offset " +
                          str(t.first_nonzero_offset) + "): data outside every signature");
  return t.count;
}

Bytes serialize_enclave_report(const EnclaveReport& r) {
  Bytes b(enclave_report::kSize, 0);
  enclave_report_fields(r, [&](Field f, const auto& a) { set(b, f, a); });
  set_le(b, enclave_report::kMiscSelect, r.misc_select);
  set_le(b, enclave_report::kIsvProdId, r.isv_prod_id);
  set_le(b, enclave_report::kIsvSvn, r.isv_svn);
  return b;
}

Bytes serialize_signed_part(const Quote& q) {
  const bool v3_sgx = q.version == 3 && q.tee_type == kTeeTypeSgx;
  const bool v4_td10 = q.version == 4 && q.is_tdx() && !q.td.td15;
  const bool v5 = q.version == 5;
  if (!v3_sgx && !v4_td10 && !v5)
    throw std::invalid_argument("no quote layout for version " + std::to_string(q.version) + ", TEE type " +
                                tee_type_name(q.tee_type) + (q.td.td15 ? ", TD 1.5" : ""));
  Bytes b(header::kSize, 0);
  set_le(b, header::kVersion, q.version);
  set_le(b, header::kAttestationKeyType, q.attestation_key_type);
  set_le(b, header::kTeeType, q.tee_type);
  set(b, header::kReserved, q.header_reserved);
  set(b, header::kQeVendorId, q.qe_vendor_id);
  set(b, header::kUserData, q.user_data);
  if (!q.is_tdx()) {
    if (v5) {
      put16(b, body_descriptor::kSgxEnclaveReport);
      put32(b, enclave_report::kSize);
    }
    put(b, serialize_enclave_report(q.sgx));
    return b;
  }
  const std::size_t size = q.td.td15 ? td_report::kSize15 : td_report::kSize10;
  if (v5) {
    put16(b, q.td.td15 ? body_descriptor::kTdReport15 : body_descriptor::kTdReport10);
    put32(b, static_cast<std::uint32_t>(size));
  }
  Bytes body(size, 0);
  td_report_fields(q.td, [&](Field f, const auto& a) { set(body, f, a); });
  put(b, body);
  return b;
}

Bytes serialize_quote(const Quote& q) {
  Bytes out = serialize_signed_part(q);
  Bytes sig;
  put(sig, q.quote_signature);
  put(sig, q.attestation_key);
  Bytes block = serialize_qe_report_block(q);
  if (q.version == 3) {
    put(sig, block);
  } else {
    put16(sig, signature_data::kCertQeReportData);
    put32(sig, checked32(block.size(), "QE report certification data"));
    put(sig, block);
  }
  put32(out, checked32(sig.size(), "signature data"));
  put(out, sig);
  return out;
}

std::size_t report_data_offset(ByteView quote) {
  Reader r(quote);
  Quote q;
  const BodyKind kind = read_header(r, q);
  if (!q.is_tdx() || kind == BodyKind::Sgx)
    throw QuoteParseError("not a TDX quote (TEE type " + tee_type_name(q.tee_type) + ", version " +
                          std::to_string(q.version) + ")");
  const std::size_t body = r.pos();
  r.take(kind == BodyKind::Td15 ? td_report::kSize15 : td_report::kSize10, "TD report body");
  return body + td_report::kReportData.offset;
}

}  // namespace pi::protocol::tdx
