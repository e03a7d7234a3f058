#include "verify/dcap.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <boost/json.hpp>
#include <ctime>
#include <stdexcept>

#include <fmt/format.h>

#include "crypto/hash.hpp"
#include "crypto/openssl.hpp"

namespace pi::verify {
namespace {

namespace json = boost::json;

// ---------- OpenSSL (crypto/openssl.hpp) ----------
using crypto::ossl::CrlPtr;
using crypto::ossl::PkeyPtr;
using crypto::ossl::X509Ptr;
using crypto::ossl::Curve::P256;

std::string subject_cn(const X509* c) { return crypto::ossl::common_name(*c); }
// A test root may carry Intel's common name (dev-tee's does, as outside verifiers check names): say whose it is.
std::string subject_org(const X509* c) {
  char buf[256] = {0};
  const int n = X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_organizationName, buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

// Verifies leaf → (untrusted intermediates) → root at `now`, checking every certificate against
// the CRLs. Returns an empty string on success, else the reason.
std::string verify_chain(const std::vector<X509Ptr>& chain, X509* root, const std::vector<X509_CRL*>& crls,
                         std::int64_t now) {
  crypto::ossl::ChainOptions opts;
  opts.check_crls = true;
  opts.crls = crls;
  opts.time = now;
  return crypto::ossl::verify_cert_chain(chain, {root}, opts).error;
}

// The CRL, or nullptr when it is neither DER nor PEM.
CrlPtr load_crl(ByteView data) {
  try {
    return crypto::ossl::crl_from_der_or_pem(data);
  } catch (const crypto::ossl::Error&) {
    return nullptr;
  }
}

X509Ptr load_root(ByteView der, const char* what) {
  try {
    return crypto::ossl::cert_from_der(der);
  } catch (const crypto::ossl::Error&) {
    throw std::runtime_error(std::string(what) + " does not parse");
  }
}

// True when some certificate of `chain` is `root` itself or is signed by it.
bool issued_under(const std::vector<X509Ptr>& chain, X509* root) {
  EVP_PKEY* key = X509_get0_pubkey(root);
  bool found = false;
  for (const auto& c : chain)
    if (X509_cmp(c.get(), root) == 0 ||
        (X509_NAME_cmp(X509_get_issuer_name(c.get()), X509_get_subject_name(root)) == 0 && key &&
         X509_verify(c.get(), key) == 1))
      found = true;
  ERR_clear_error();
  return found;
}

// ---------- DER walking for the Intel SGX extension of PCK certificates ----------
struct Tlv {
  std::uint8_t tag = 0;
  ByteView value;
};

bool read_tlv(ByteView& in, Tlv& out) {
  if (in.size() < 2) return false;
  out.tag = in[0];
  std::size_t len = in[1];
  std::size_t hdr = 2;
  if (len & 0x80) {
    std::size_t n = len & 0x7f;
    if (n == 0 || n > 4 || in.size() < 2 + n) return false;
    len = 0;
    for (std::size_t i = 0; i < n; ++i) len = (len << 8) | in[2 + i];
    hdr += n;
  }
  if (in.size() - hdr < len) return false;
  out.value = in.subspan(hdr, len);
  in = in.subspan(hdr + len);
  return true;
}

// OID 1.2.840.113741.1.13.1 (Intel SGX extensions), DER content bytes.
constexpr std::uint8_t kSgxExtOid[] = {0x2A, 0x86, 0x48, 0x86, 0xF8, 0x4D, 0x01, 0x0D, 0x01};

bool oid_is(ByteView oid, std::initializer_list<std::uint8_t> suffix) {
  if (oid.size() != sizeof(kSgxExtOid) + suffix.size()) return false;
  if (!std::equal(std::begin(kSgxExtOid), std::end(kSgxExtOid), oid.begin())) return false;
  return std::equal(suffix.begin(), suffix.end(), oid.begin() + sizeof(kSgxExtOid));
}

std::uint32_t der_uint(ByteView v) {
  std::uint32_t x = 0;
  for (auto b : v) x = (x << 8) | b;
  return x;
}

struct PckExtension {
  std::array<std::uint8_t, 16> cpu_svn{};  // component svns 1..16
  std::uint16_t pce_svn = 0;
  Bytes fmspc;
  Bytes pce_id;
  bool have_tcb = false;
};

PckExtension parse_pck_extension(X509* cert) {
  ASN1_OBJECT* obj = OBJ_txt2obj("1.2.840.113741.1.13.1", 1);
  int idx = X509_get_ext_by_OBJ(cert, obj, -1);
  ASN1_OBJECT_free(obj);
  if (idx < 0) throw std::runtime_error("PCK certificate has no Intel SGX extension");
  ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(X509_get_ext(cert, idx));
  ByteView in(ASN1_STRING_get0_data(data), static_cast<std::size_t>(ASN1_STRING_length(data)));
  Tlv outer;
  if (!read_tlv(in, outer) || outer.tag != 0x30) throw std::runtime_error("malformed Intel SGX extension");
  PckExtension ext;
  ByteView items = outer.value;
  while (!items.empty()) {
    Tlv item, oid, val;
    if (!read_tlv(items, item) || item.tag != 0x30) throw std::runtime_error("malformed Intel SGX extension item");
    ByteView body = item.value;
    if (!read_tlv(body, oid) || oid.tag != 0x06 || !read_tlv(body, val))
      throw std::runtime_error("malformed Intel SGX extension item");
    if (oid_is(oid.value, {0x04})) {
      ext.fmspc.assign(val.value.begin(), val.value.end());
    } else if (oid_is(oid.value, {0x03})) {
      ext.pce_id.assign(val.value.begin(), val.value.end());
    } else if (oid_is(oid.value, {0x02})) {
      ext.have_tcb = true;
      ByteView comps = val.value;
      while (!comps.empty()) {
        Tlv c, coid, cval;
        if (!read_tlv(comps, c) || c.tag != 0x30) throw std::runtime_error("malformed PCK TCB extension");
        ByteView cb = c.value;
        if (!read_tlv(cb, coid) || !read_tlv(cb, cval)) throw std::runtime_error("malformed PCK TCB extension");
        if (coid.value.size() != sizeof(kSgxExtOid) + 2 || !oid_is(coid.value.first(sizeof(kSgxExtOid) + 1), {0x02}))
          continue;
        std::uint8_t n = coid.value.back();
        if (n >= 1 && n <= 16)
          ext.cpu_svn[n - 1] = static_cast<std::uint8_t>(der_uint(cval.value));
        else if (n == 17)
          ext.pce_svn = static_cast<std::uint16_t>(der_uint(cval.value));
      }
    }
  }
  if (ext.fmspc.size() != 6 || !ext.have_tcb) throw std::runtime_error("PCK certificate lacks FMSPC or TCB values");
  return ext;
}

// ---------- JSON helpers ----------
std::int64_t parse_rfc3339(std::string_view s) {
  std::tm tm{};
  int y, mo, d, h, mi, sec;
  char tail[16] = {0};
  std::string str(s);
  if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%15s", &y, &mo, &d, &h, &mi, &sec, tail) < 6)
    throw std::runtime_error("bad date '" + str + "'");
  std::string t(tail);
  if (!t.empty() && t[0] == '.')
    t = t.substr(t.find_first_not_of("0123456789", 1) == std::string::npos ? t.size()
                                                                           : t.find_first_not_of("0123456789", 1));
  if (!(t == "Z" || t == "+00:00" || t.empty())) throw std::runtime_error("date '" + str + "' is not in UTC");
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  return static_cast<std::int64_t>(timegm(&tm));
}

const json::value& field(const json::object& o, std::string_view k, std::string_view where) {
  auto it = o.find(k);
  if (it == o.end()) throw std::runtime_error(fmt::format("{} has no '{}'", where, k));
  return it->value();
}
std::string str_field(const json::object& o, std::string_view k, std::string_view where) {
  const auto& v = field(o, k, where);
  if (!v.is_string()) throw std::runtime_error(fmt::format("{}.{} is not a string", where, k));
  return std::string(v.get_string());
}
std::int64_t int_field(const json::object& o, std::string_view k, std::string_view where) {
  const auto& v = field(o, k, where);
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64()) return static_cast<std::int64_t>(v.get_uint64());
  throw std::runtime_error(fmt::format("{}.{} is not an integer", where, k));
}
Bytes hex_field(const json::object& o, std::string_view k, std::string_view where, std::size_t len = 0) {
  auto s = str_field(o, k, where);
  auto b = from_hex(s);
  if (!b || (len && b->size() != len))
    throw std::runtime_error(fmt::format("{}.{} is not {} hex", where, k, len ? fmt::format("{}-byte", len) : ""));
  return *b;
}
std::vector<std::string> advisories_of(const json::object& level) {
  std::vector<std::string> out;
  if (auto it = level.find("advisoryIDs"); it != level.end() && it->value().is_array())
    for (const auto& a : it->value().get_array())
      if (a.is_string()) out.emplace_back(a.get_string());
  return out;
}

struct StatusAdv {
  std::string status;
  std::vector<std::string> advisories;
};
StatusAdv merge(StatusAdv a, const StatusAdv& b) {
  if (tcb_status_severity(b.status) > tcb_status_severity(a.status)) a.status = b.status;
  for (const auto& id : b.advisories)
    if (std::find(a.advisories.begin(), a.advisories.end(), id) == a.advisories.end()) a.advisories.push_back(id);
  return a;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}

// ---------- Step runner ----------
class Steps {
 public:
  explicit Steps(DcapResult& r) : r_(r) {}
  void pass(std::string id, std::string title, std::string detail) {
    add(std::move(id), std::move(title), Status::Pass, std::move(detail));
  }
  void fail(std::string id, std::string title, std::string detail) {
    add(std::move(id), std::move(title), Status::Fail, std::move(detail));
  }
  void skip(std::string id, std::string title, std::string detail) {
    add(std::move(id), std::move(title), Status::Skipped, std::move(detail));
  }

 private:
  void add(std::string id, std::string title, Status s, std::string detail) {
    id.insert(0, "tdx.");
    Check c{Group::Hardware, std::move(id), std::move(title), s, std::move(detail)};
    r_.checks.push_back(std::move(c));
  }
  DcapResult& r_;
};

constexpr std::uint8_t kIntelQeVendorId[16] = {0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
                                               0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};

const char* kTitleFormat = "the quote is a well-formed Intel TDX quote (v4/v5, ECDSA-P256, Intel QE)";
const char* kTitleTcbInfo = "Intel's TCB info is signed by Intel (chain to the SGX root, CRLs) and valid now";
const char* kTitleQeId = "Intel's QE identity is signed by Intel (chain to the SGX root, CRLs) and valid now";
const char* kTitlePck = "the PCK certificate in the quote chains to the Intel SGX root and is not revoked";
const char* kTitleQeSig = "the quoting enclave's report is signed by the PCK key";
const char* kTitleQeData = "the QE report binds the attestation key (sha256(key || auth data))";
const char* kTitleQeIdentity = "the quoting enclave matches Intel's QE identity (signer, product, attributes, SVN)";
const char* kTitleQuoteSig = "the quote body is signed by the attestation key";
const char* kTitleTcb = "the platform's TCB level was found in Intel's TCB info (status and advisories)";
const char* kTitleDebug = "the TD is not a debug TD";
const char* kTitleAttrs = "the TD's security attributes are sound (SEPT_VE_DISABLE, no reserved bits)";

void check_signed_json(Steps& st, const std::string& id, const char* title, const std::string& chain_pem,
                       const std::string& body, const Bytes& sig, X509* root, const std::vector<X509_CRL*>& crls,
                       std::int64_t now, const std::string& what, std::optional<json::object>& parsed) {
  try {
    json::value v = json::parse(body);
    if (!v.is_object()) throw std::runtime_error(what + " is not a JSON object");
    const auto& o = v.get_object();
    auto issue = parse_rfc3339(str_field(o, "issueDate", what));
    auto next = parse_rfc3339(str_field(o, "nextUpdate", what));
    auto chain = crypto::ossl::certs_from_pem(chain_pem);
    if (chain.empty()) return st.fail(id, title, what + " issuer chain has no certificate");
    if (auto err = verify_chain(chain, root, crls, now); !err.empty())
      return st.fail(id, title, what + " signing certificate: " + err);
    if (!crypto::ossl::ecdsa_verify_raw(P256, X509_get0_pubkey(chain[0].get()), as_bytes(body), sig))
      return st.fail(id, title, what + " signature is invalid");
    if (now < issue) return st.fail(id, title, fmt::format("{} issue date is in the future (issued {})", what, issue));
    if (now > next)
      return st.fail(id, title,
                     fmt::format("{} expired: nextUpdate {} ({}) is before now ({})", what,
                                 str_field(o, "nextUpdate", what), next, now));
    parsed = o;
    st.pass(id, title,
            fmt::format("signed by '{}', valid {} .. {}", subject_cn(chain[0].get()), str_field(o, "issueDate", what),
                        str_field(o, "nextUpdate", what)));
  } catch (const std::exception& e) {
    st.fail(id, title, what + ": " + e.what());
  }
}

// Sorted as Intel QVL expects: highest SGX components, then PCE SVN, then TDX components first.
std::vector<json::object> canonical_levels(const json::object& tcb_info, bool tdx) {
  std::vector<json::object> levels;
  for (const auto& l : field(tcb_info, "tcbLevels", "tcbInfo").as_array()) levels.push_back(l.as_object());
  auto comps = [](const json::object& l, const char* key) {
    std::vector<std::int64_t> v;
    const auto& tcb = l.at("tcb").as_object();
    if (auto it = tcb.find(key); it != tcb.end())
      for (const auto& c : it->value().as_array()) v.push_back(c.as_object().at("svn").to_number<std::int64_t>());
    return v;
  };
  auto pce = [](const json::object& l) { return l.at("tcb").as_object().at("pcesvn").to_number<std::int64_t>(); };
  std::stable_sort(levels.begin(), levels.end(), [&](const json::object& a, const json::object& b) {
    auto sa = comps(a, "sgxtcbcomponents"), sb = comps(b, "sgxtcbcomponents");
    if (sa != sb) return sa > sb;
    if (pce(a) != pce(b)) return pce(a) > pce(b);
    if (tdx) return comps(a, "tdxtcbcomponents") > comps(b, "tdxtcbcomponents");
    return false;
  });
  return levels;
}

std::array<std::uint8_t, 48> hex48(const std::string& s, const char* what) {
  auto b = from_hex(s);
  if (!b || b->size() != 48) throw std::runtime_error(std::string(what) + " is not 48-byte hex");
  std::array<std::uint8_t, 48> a{};
  std::copy(b->begin(), b->end(), a.begin());
  return a;
}

// TDX module identity (TCB info v3): returns the module's status if its identity has TCB levels.
std::optional<StatusAdv> match_tdx_module(const json::object& tcb_info, const TdReport& td) {
  std::uint8_t module_isvsvn = td.tee_tcb_svn[0];
  std::uint8_t module_version = td.tee_tcb_svn[1];
  auto it = tcb_info.find("tdxModule");
  if (it == tcb_info.end()) throw std::runtime_error("TDX TCB info has no tdxModule");
  const json::object* ident = &it->value().as_object();
  const json::array* levels = nullptr;
  if (module_version > 0) {
    if (auto ids = tcb_info.find("tdxModuleIdentities"); ids != tcb_info.end() && !ids->value().as_array().empty()) {
      std::string want = fmt::format("TDX_{:02X}", module_version);
      const json::object* found = nullptr;
      for (const auto& m : ids->value().as_array()) {
        std::string id(m.as_object().at("id").as_string());
        if (std::equal(id.begin(), id.end(), want.begin(), want.end(),
                       [](char a, char b) { return std::toupper(a) == std::toupper(b); }))
          found = &m.as_object();
      }
      if (!found) throw std::runtime_error("no TDX module identity " + want + " in TCB info");
      ident = found;
      levels = &found->at("tcbLevels").as_array();
    }
  }
  auto signer = hex48(std::string(ident->at("mrsigner").as_string()), "tdxModule.mrsigner");
  if (signer != td.mr_signer_seam)
    throw std::runtime_error("TDX module MRSIGNER mismatch: expected " + to_hex(signer) + ", got " +
                             to_hex(td.mr_signer_seam));
  auto attrs = from_hex(std::string(ident->at("attributes").as_string()));
  auto mask = from_hex(std::string(ident->at("attributesMask").as_string()));
  if (!attrs || !mask || attrs->size() != 8 || mask->size() != 8)
    throw std::runtime_error("tdxModule attributes are not 8-byte hex");
  for (std::size_t i = 0; i < 8; ++i)
    if (((*attrs)[i] & (*mask)[i]) != (td.seam_attributes[i] & (*mask)[i]))
      throw std::runtime_error("TDX module SEAM attributes do not match TCB info");
  if (!levels) return std::nullopt;
  for (const auto& l : *levels) {
    const auto& lo = l.as_object();
    if (module_isvsvn >= lo.at("tcb").as_object().at("isvsvn").to_number<std::int64_t>())
      return StatusAdv{std::string(lo.at("tcbStatus").as_string()), advisories_of(lo)};
  }
  throw std::runtime_error(fmt::format("TDX module ISVSVN {} is below every TCB level", module_isvsvn));
}

StatusAdv match_platform(const json::object& tcb_info, const Quote& q, const PckExtension& pck) {
  std::string fmspc = to_hex(pck.fmspc);
  std::string want = str_field(tcb_info, "fmspc", "tcbInfo");
  std::transform(want.begin(), want.end(), want.begin(), ::tolower);
  if (fmspc != want) throw std::runtime_error("FMSPC mismatch: PCK certificate " + fmspc + ", TCB info " + want);
  std::string id = tcb_info.contains("id") ? std::string(tcb_info.at("id").as_string()) : "SGX";
  auto version = int_field(tcb_info, "version", "tcbInfo");
  if (q.is_tdx() && (version < 3 || id != "TDX")) throw std::runtime_error("TDX quote but the TCB info is not for TDX");
  if (!q.is_tdx() && id != "SGX") throw std::runtime_error("SGX quote but the TCB info is not for SGX");
  for (const auto& level : canonical_levels(tcb_info, q.is_tdx())) {
    const auto& tcb = level.at("tcb").as_object();
    if (pck.pce_svn < tcb.at("pcesvn").to_number<std::int64_t>()) continue;
    const auto& sgx = tcb.at("sgxtcbcomponents").as_array();
    if (sgx.size() != 16) throw std::runtime_error("TCB level without 16 SGX components");
    bool ok = true;
    for (std::size_t i = 0; i < 16 && ok; ++i)
      ok = pck.cpu_svn[i] >= sgx[i].as_object().at("svn").to_number<std::int64_t>();
    if (!ok) continue;
    if (q.is_tdx()) {
      const auto& tdxc = tcb.at("tdxtcbcomponents").as_array();
      if (tdxc.size() != 16) throw std::runtime_error("TCB level without 16 TDX components");
      for (std::size_t i = 0; i < 16 && ok; ++i)
        ok = q.td.tee_tcb_svn[i] >= tdxc[i].as_object().at("svn").to_number<std::int64_t>();
      if (!ok) continue;
    }
    StatusAdv s{std::string(level.at("tcbStatus").as_string()), advisories_of(level)};
    if (q.is_tdx())
      if (auto m = match_tdx_module(tcb_info, q.td)) s = merge(s, *m);
    return s;
  }
  throw std::runtime_error("no TCB level in Intel's TCB info matches this platform (below every level)");
}

StatusAdv match_qe_identity(const json::object& qe, const EnclaveReport& rep, bool tdx) {
  std::string id = str_field(qe, "id", "qeIdentity");
  if (tdx && id != "TD_QE") throw std::runtime_error("QE identity is '" + id + "', expected 'TD_QE' for TDX");
  if (!tdx && id != "QE") throw std::runtime_error("QE identity is '" + id + "', expected 'QE' for SGX");
  auto signer = hex_field(qe, "mrsigner", "qeIdentity", 32);
  if (!std::equal(signer.begin(), signer.end(), rep.mr_signer.begin()))
    throw std::runtime_error("QE MRSIGNER mismatch: expected " + to_hex(signer) + ", got " + to_hex(rep.mr_signer));
  if (rep.attributes[0] & 0x02) throw std::runtime_error("the quoting enclave runs in debug mode");
  if (int_field(qe, "isvprodid", "qeIdentity") != rep.isv_prod_id)
    throw std::runtime_error(fmt::format("QE ISVPRODID {} does not match", rep.isv_prod_id));
  auto misc = hex_field(qe, "miscselect", "qeIdentity", 4);
  auto misc_mask = hex_field(qe, "miscselectMask", "qeIdentity", 4);
  auto be32 = [](const Bytes& b) {
    return (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) | (std::uint32_t(b[2]) << 8) | b[3];
  };
  if ((rep.misc_select & be32(misc_mask)) != (be32(misc) & be32(misc_mask)))
    throw std::runtime_error("QE MISCSELECT does not match");
  auto attrs = hex_field(qe, "attributes", "qeIdentity", 16);
  auto mask = hex_field(qe, "attributesMask", "qeIdentity", 16);
  for (std::size_t i = 0; i < 16; ++i)
    if ((attrs[i] & mask[i]) != (rep.attributes[i] & mask[i]))
      throw std::runtime_error(fmt::format("QE ATTRIBUTES mismatch at byte {}", i));
  for (const auto& l : field(qe, "tcbLevels", "qeIdentity").as_array()) {
    const auto& lo = l.as_object();
    if (rep.isv_svn >= lo.at("tcb").as_object().at("isvsvn").to_number<std::int64_t>())
      return StatusAdv{std::string(lo.at("tcbStatus").as_string()), advisories_of(lo)};
  }
  throw std::runtime_error(fmt::format("QE ISVSVN {} is below every QE identity TCB level", rep.isv_svn));
}

bool check_format(Steps& st, DcapResult& r, ByteView raw) {
  try {
    Quote q = parse_quote(raw);
    if (!q.is_tdx()) {
      st.fail("quote_format", kTitleFormat,
              fmt::format("not a TDX quote: TEE type is {} (quote version {})", tee_type_name(q.tee_type), q.version));
      return false;
    }
    if (q.attestation_key_type != 2) {
      st.fail(
          "quote_format", kTitleFormat,
          fmt::format("unsupported attestation key type {} (only 2 = ECDSA-256-with-P-256)", q.attestation_key_type));
      return false;
    }
    if (!std::equal(std::begin(kIntelQeVendorId), std::end(kIntelQeVendorId), q.qe_vendor_id.begin())) {
      st.fail("quote_format", kTitleFormat, "unknown QE vendor id " + to_hex(q.qe_vendor_id) + " (not Intel)");
      return false;
    }
    if (q.cert_data_type != 5) {
      st.fail("quote_format", kTitleFormat,
              fmt::format("certification data type {} is not 5 (PCK certificate chain)", q.cert_data_type));
      return false;
    }
    // Bytes after the signature data: zero padding is accepted (and noted), anything else is rejected.
    r.trailing_zero_bytes = protocol::tdx::check_trailing_bytes(raw, q);
    st.pass("quote_format", kTitleFormat,
            fmt::format(
                "TDX quote v{} ({}), {} bytes{}", q.version, q.td.td15 ? "TD 1.5 body" : "TD 1.0 body", raw.size(),
                r.trailing_zero_bytes
                    ? fmt::format(" ({} of them zero padding after the signature data, ignored)", r.trailing_zero_bytes)
                    : std::string()));
    r.quote = std::move(q);
    return true;
  } catch (const QuoteParseError& e) {
    st.fail("quote_format", kTitleFormat, e.what());
    return false;
  }
}

bool check_quote_signature(Steps& st, const Quote& q, ByteView raw) {
  PkeyPtr ak = crypto::ossl::ec_public_key_from_raw(P256, q.attestation_key);
  if (!ak) {
    st.fail("quote_signature", kTitleQuoteSig, "the attestation key is not a valid P-256 point");
    return false;
  }
  if (!crypto::ossl::ecdsa_verify_raw(P256, ak.get(), raw.first(q.signed_length), q.quote_signature)) {
    st.fail("quote_signature", kTitleQuoteSig,
            fmt::format("signature invalid: the attestation key's signature over quote bytes 0..{} does not verify "
                        "(quote altered, or forged)",
                        q.signed_length));
    return false;
  }
  st.pass("quote_signature", kTitleQuoteSig, "ECDSA-P256 signature over header and TD report verifies");
  return true;
}

void check_debug(Steps& st, const Quote& q) {
  if (q.td.td_attributes[0] & 0x01)
    st.fail("td_debug", kTitleDebug, "TD attributes have the DEBUG bit set: the host can read the TD's memory");
  else
    st.pass("td_debug", kTitleDebug, "TD attributes " + to_hex(q.td.td_attributes) + ": DEBUG off");
  // TD attributes (TDX module spec A.3.4): TUD bits 7:1, SEC bits 27:8 and 29, OTHER bits 62:32 are
  // reserved and must be clear; SEPT_VE_DISABLE (bit 28) must be set so the host cannot inject #VE
  // through pending pages. A TD 1.5 report must not name a service TD. (Same rules as dcap-qvl.)
  const auto& a = q.td.td_attributes;
  std::vector<std::string> bad;
  if (a[0] & 0xFE) bad.push_back("reserved TUD bits set");
  if (a[1] || a[2] || (a[3] & 0x0F) || (a[3] & 0x20)) bad.push_back("reserved SEC bits set");
  if (!(a[3] & 0x10)) bad.push_back("SEPT_VE_DISABLE is not set");
  if (a[4] & 0x7F || a[5] || a[6] || (a[7] & 0x7F)) bad.push_back("reserved OTHER bits set");
  if (q.td.td15 && std::any_of(q.td.mr_service_td.begin(), q.td.mr_service_td.end(), [](auto b) { return b != 0; }))
    bad.push_back("a service TD is bound (mr_service_td not zero)");
  if (bad.empty())
    st.pass("td_attributes", kTitleAttrs, "SEPT_VE_DISABLE set, reserved bits clear");
  else
    st.fail("td_attributes", kTitleAttrs, join(bad) + " (attributes " + to_hex(a) + ")");
}

}  // namespace

int tcb_status_severity(std::string_view s) {
  if (s == "UpToDate") return 0;
  if (s == "SWHardeningNeeded") return 1;
  if (s == "ConfigurationNeeded") return 2;
  if (s == "ConfigurationAndSWHardeningNeeded") return 3;
  if (s == "OutOfDate") return 4;
  if (s == "OutOfDateConfigurationNeeded") return 5;
  return 6;  // Revoked and anything unknown
}

Collateral parse_collateral_json(std::string_view text) {
  json::value v;
  try {
    v = json::parse(text);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("collateral is not JSON: ") + e.what());
  }
  if (!v.is_object()) throw std::runtime_error("collateral is not a JSON object");
  const auto& o = v.get_object();
  const char* w = "collateral";
  Collateral c;
  c.pck_crl_issuer_chain = str_field(o, "pck_crl_issuer_chain", w);
  c.root_ca_crl = hex_field(o, "root_ca_crl", w);
  c.pck_crl = hex_field(o, "pck_crl", w);
  c.tcb_info_issuer_chain = str_field(o, "tcb_info_issuer_chain", w);
  c.tcb_info = str_field(o, "tcb_info", w);
  c.tcb_info_signature = hex_field(o, "tcb_info_signature", w, 64);
  c.qe_identity_issuer_chain = str_field(o, "qe_identity_issuer_chain", w);
  c.qe_identity = str_field(o, "qe_identity", w);
  c.qe_identity_signature = hex_field(o, "qe_identity_signature", w, 64);
  if (auto it = o.find("pck_certificate_chain"); it != o.end() && it->value().is_string())
    c.pck_certificate_chain = std::string(it->value().get_string());
  return c;
}

std::string collateral_to_json(const Collateral& c) {
  json::object o;
  o["pck_crl_issuer_chain"] = c.pck_crl_issuer_chain;
  o["root_ca_crl"] = to_hex(c.root_ca_crl);
  o["pck_crl"] = to_hex(c.pck_crl);
  o["tcb_info_issuer_chain"] = c.tcb_info_issuer_chain;
  o["tcb_info"] = c.tcb_info;
  o["tcb_info_signature"] = to_hex(c.tcb_info_signature);
  o["qe_identity_issuer_chain"] = c.qe_identity_issuer_chain;
  o["qe_identity"] = c.qe_identity;
  o["qe_identity_signature"] = to_hex(c.qe_identity_signature);
  if (c.pck_certificate_chain) o["pck_certificate_chain"] = *c.pck_certificate_chain;
  return json::serialize(o);
}

PckInfo pck_info_from_quote(const Quote& q) {
  std::string pem(q.cert_data.begin(), q.cert_data.end());
  auto chain = crypto::ossl::certs_from_pem(pem);
  if (chain.empty()) throw std::runtime_error("quote carries no PCK certificate");
  auto ext = parse_pck_extension(chain[0].get());
  PckInfo info{to_hex(ext.fmspc), "processor"};
  if (crypto::ossl::issuer_common_name(*chain[0]).find("Platform") != std::string::npos) info.ca = "platform";
  return info;
}

DcapResult verify_quote_structure(ByteView raw) {
  DcapResult r;
  Steps st(r);
  if (!check_format(st, r, raw)) return r;
  check_quote_signature(st, *r.quote, raw);
  check_debug(st, *r.quote);
  return r;
}

DcapResult verify_dcap(ByteView raw, const Collateral& col, std::int64_t now, ByteView root_der) {
  DcapResult r;
  Steps st(r);
  if (!check_format(st, r, raw)) {
    for (auto [id, t] : {std::pair{"collateral_tcb_info", kTitleTcbInfo},
                         {"collateral_qe_identity", kTitleQeId},
                         {"pck_chain", kTitlePck},
                         {"qe_report_signature", kTitleQeSig},
                         {"qe_report_data", kTitleQeData},
                         {"qe_identity", kTitleQeIdentity},
                         {"quote_signature", kTitleQuoteSig},
                         {"tcb_status", kTitleTcb},
                         {"td_debug", kTitleDebug}})
      st.skip(id, t, "not reached: the quote could not be used");
    return r;
  }
  const Quote& q = *r.quote;
  bool all_ok = true;

  X509Ptr root = load_root(root_der, "bundled root CA");
  // PCK certificate chain (from the quote unless the collateral supplies one).
  std::string pck_pem =
      col.pck_certificate_chain ? *col.pck_certificate_chain : std::string(q.cert_data.begin(), q.cert_data.end());
  std::vector<X509Ptr> pck_chain;
  std::string pck_chain_error;
  try {
    pck_chain = crypto::ossl::certs_from_pem(pck_pem);
  } catch (const crypto::ossl::Error& e) {
    pck_chain_error = e.what();
  }
  if (col.simulated_root_der) {
    X509Ptr test_root = load_root(*col.simulated_root_der, "the simulated (test) root CA");
    if (issued_under(pck_chain, test_root.get())) {
      root = std::move(test_root);
      r.simulated = true;
    }
  }
  CrlPtr root_crl = load_crl(col.root_ca_crl);
  CrlPtr pck_crl = load_crl(col.pck_crl);
  std::vector<X509_CRL*> crls;
  if (root_crl) crls.push_back(root_crl.get());
  if (pck_crl) crls.push_back(pck_crl.get());

  // Collateral: TCB info and QE identity, each signed by Intel's TCB signing key.
  std::optional<json::object> tcb_info, qe_identity;
  if (!root_crl || !pck_crl) {
    std::string why =
        !root_crl ? "root CA CRL in the collateral does not parse" : "PCK CRL in the collateral does not parse";
    st.fail("collateral_tcb_info", kTitleTcbInfo, why);
    st.fail("collateral_qe_identity", kTitleQeId, why);
  } else {
    check_signed_json(st, "collateral_tcb_info", kTitleTcbInfo, col.tcb_info_issuer_chain, col.tcb_info,
                      col.tcb_info_signature, root.get(), crls, now, "TCB info", tcb_info);
    check_signed_json(st, "collateral_qe_identity", kTitleQeId, col.qe_identity_issuer_chain, col.qe_identity,
                      col.qe_identity_signature, root.get(), crls, now, "QE identity", qe_identity);
  }
  all_ok = all_ok && tcb_info && qe_identity;

  std::optional<PckExtension> pck_ext;
  PkeyPtr pck_key;
  if (!pck_chain_error.empty()) {
    st.fail("pck_chain", kTitlePck, "PCK certificate chain: " + pck_chain_error);
  } else if (pck_chain.empty()) {
    st.fail("pck_chain", kTitlePck, "the quote carries no PEM certificate");
  } else if (!root_crl || !pck_crl) {
    st.fail("pck_chain", kTitlePck, "cannot check revocation: collateral CRLs do not parse");
  } else if (auto err = verify_chain(pck_chain, root.get(), crls, now); !err.empty()) {
    st.fail("pck_chain", kTitlePck, "PCK certificate chain: " + err);
  } else {
    try {
      pck_ext = parse_pck_extension(pck_chain[0].get());
      pck_key.reset(X509_get_pubkey(pck_chain[0].get()));
      r.fmspc = to_hex(pck_ext->fmspc);
      st.pass("pck_chain", kTitlePck,
              fmt::format("'{}' -> {}; FMSPC {}, PCE SVN {}", subject_cn(pck_chain[0].get()),
                          r.simulated ? "TEST root '" + subject_cn(root.get()) + "', O='" + subject_org(root.get()) +
                                            "' (SIMULATED)"
                                      : "Intel SGX Root CA",
                          r.fmspc, pck_ext->pce_svn));
    } catch (const std::exception& e) {
      st.fail("pck_chain", kTitlePck, e.what());
    }
  }
  all_ok = all_ok && pck_ext;

  // QE report signed by the PCK key, and binding the attestation key.
  bool qe_sig_ok = false;
  if (!pck_key) {
    st.skip("qe_report_signature", kTitleQeSig, "not reached: no trusted PCK certificate");
  } else if (!crypto::ossl::ecdsa_verify_raw(P256, pck_key.get(), q.qe_report.raw, q.qe_report_signature)) {
    st.fail("qe_report_signature", kTitleQeSig, "the QE report signature does not verify with the PCK key");
  } else {
    qe_sig_ok = true;
    st.pass("qe_report_signature", kTitleQeSig, "ECDSA-P256 signature by the PCK key verifies");
  }
  all_ok = all_ok && qe_sig_ok;

  {
    Bytes h(q.attestation_key.begin(), q.attestation_key.end());
    h.insert(h.end(), q.qe_auth_data.begin(), q.qe_auth_data.end());
    auto digest = crypto::sha256(ByteView(h));
    bool hash_ok = std::equal(digest.begin(), digest.end(), q.qe_report.report_data.begin());
    bool zero_ok = std::all_of(q.qe_report.report_data.begin() + 32, q.qe_report.report_data.end(),
                               [](std::uint8_t b) { return b == 0; });
    if (!hash_ok)
      st.fail("qe_report_data", kTitleQeData, "QE report data does not equal sha256(attestation key || QE auth data)");
    else if (!zero_ok)
      st.fail("qe_report_data", kTitleQeData, "QE report data bytes 32..63 are not zero");
    else
      st.pass("qe_report_data", kTitleQeData, "attestation key is the one the QE vouched for");
    all_ok = all_ok && hash_ok && zero_ok;
  }

  std::optional<StatusAdv> qe_status;
  if (!qe_identity) {
    st.skip("qe_identity", kTitleQeIdentity, "not reached: QE identity collateral is not trusted");
  } else {
    try {
      qe_status = match_qe_identity(*qe_identity, q.qe_report, q.is_tdx());
      st.pass("qe_identity", kTitleQeIdentity,
              fmt::format("QE ISVSVN {} -> {}", q.qe_report.isv_svn, qe_status->status));
    } catch (const std::exception& e) {
      st.fail("qe_identity", kTitleQeIdentity, e.what());
    }
  }
  all_ok = all_ok && qe_status;

  all_ok = check_quote_signature(st, q, raw) && all_ok;

  if (!tcb_info || !pck_ext) {
    st.skip("tcb_status", kTitleTcb,
            std::string("not reached: ") + (!tcb_info ? "TCB info is not trusted" : "no trusted PCK certificate"));
    all_ok = false;
  } else {
    try {
      StatusAdv platform = match_platform(*tcb_info, q, *pck_ext);
      r.platform_tcb_status = platform.status;
      StatusAdv merged = platform;
      if (qe_status) {
        r.qe_tcb_status = qe_status->status;
        merged = merge(platform, *qe_status);
      }
      r.tcb_status = merged.status;
      r.advisory_ids = merged.advisories;
      std::string detail =
          fmt::format("TCB status {} (platform {}, QE {}), advisories [{}]", merged.status, platform.status,
                      qe_status ? qe_status->status : "not evaluated", join(merged.advisories));
      if (merged.status == "Revoked") {
        st.fail("tcb_status", kTitleTcb, detail + ": the platform's TCB is revoked");
        all_ok = false;
      } else {
        st.pass("tcb_status", kTitleTcb, detail);
      }
    } catch (const std::exception& e) {
      st.fail("tcb_status", kTitleTcb, e.what());
      all_ok = false;
    }
  }
  check_debug(st, q);
  r.verified = all_ok;
  if (r.simulated)
    for (auto& c : r.checks) c.simulated = true;
  return r;
}

}  // namespace pi::verify
