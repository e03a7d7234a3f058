// The typed report / record shapes: see report.hpp.
#include "protocol/report.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>

#include <boost/json/parse.hpp>

namespace pi::protocol {

namespace json = boost::json;

ShapeError::ShapeError(std::string field, const std::string& problem)
    : std::runtime_error(field + ": " + problem), field_(std::move(field)) {}

namespace {

const char* kind_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "?";
}

std::string path(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  return std::string(parent) + "." + std::string(key);
}

[[noreturn]] void wrong_type(const std::string& field, const char* want, const json::value& got) {
  throw ShapeError(field, std::string("must be ") + want + ", not " + kind_name(got));
}

// Optional string field: absent → nullopt; present and not a string → ShapeError.
std::optional<std::string> opt_string(const json::object& o, std::string_view key, std::string_view parent = {}) {
  const json::value* v = o.if_contains(key);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(path(parent, key), "a string", *v);
  return std::string(v->get_string());
}

// Optional string-or-null field: absent or null → nullopt.
std::optional<std::string> opt_string_or_null(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_string()) wrong_type(std::string(key), "a string or null", *v);
  return std::string(v->get_string());
}

std::string req_string(const json::object& o, std::string_view key, std::string_view parent) {
  const json::value* v = o.if_contains(key);
  if (!v) throw ShapeError(path(parent, key), "no \"" + std::string(key) + "\" string (required)");
  if (!v->is_string()) wrong_type(path(parent, key), "a string", *v);
  return std::string(v->get_string());
}

const json::object& as_object(const json::value& v, const std::string& field) {
  if (!v.is_object()) throw ShapeError(field, std::string("is not a JSON object (") + kind_name(v) + ")");
  return v.get_object();
}

// Python json.dumps string literal (ensure_ascii=True): \" \\ \n \r \t \b \f, other controls and every non-ASCII
// code point as \uXXXX (UTF-16 surrogate pairs above U+FFFF). Invalid UTF-8 bytes become U+FFFD.
void append_py_string(std::string& out, std::string_view s) {
  auto u = [&out](unsigned cp) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\u%04x", cp);
    out += buf;
  };
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        default:
          if (c < 0x20)
            u(c);
          else
            out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    // Decode one UTF-8 sequence.
    std::size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    unsigned cp = 0xFFFD;
    bool valid = len != 0 && c < 0xF5 && i + len <= s.size();
    if (valid) {
      cp = c & (0x7F >> len);
      for (std::size_t k = 1; k < len; ++k) {
        auto cc = static_cast<unsigned char>(s[i + k]);
        if ((cc & 0xC0) != 0x80) {
          valid = false;
          break;
        }
        cp = (cp << 6) | (cc & 0x3F);
      }
      static constexpr unsigned kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      if (valid && (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) valid = false;
    }
    if (!valid) {
      u(0xFFFD);
      ++i;
      continue;
    }
    if (cp >= 0x10000) {
      cp -= 0x10000;
      u(0xD800 + (cp >> 10));
      u(0xDC00 + (cp & 0x3FF));
    } else {
      u(cp);
    }
    i += len;
  }
  out += '"';
}

void append_py_pair(std::string& out, std::string_view key, std::string_view value) {
  append_py_string(out, key);
  out += ": ";
  append_py_string(out, value);
}

std::string strip_nul(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s)
    if (c != '\0') out.push_back(c);
  return out;
}

std::string lower_no0x(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (s.rfind("0x", 0) == 0) s.erase(0, 2);
  return s;
}

void put(json::object& o, std::string_view key, const std::optional<std::string>& v) {
  if (v) o[key] = *v;
}

}  // namespace

// ----- GPU evidence -----------------------------------------------------------------------------------------------

json::object GpuEvidenceItem::to_json() const {
  json::object o;
  if (arch) o["arch"] = *arch;
  o["certificate"] = certificate;
  o["evidence"] = evidence;
  if (nonce) o["nonce"] = *nonce;
  return o;
}

GpuEvidenceItem GpuEvidenceItem::parse(const json::value& v, std::string_view field) {
  const std::string f(field);
  const auto& o = as_object(v, f);
  GpuEvidenceItem it;
  it.certificate = req_string(o, "certificate", f);
  it.evidence = req_string(o, "evidence", f);
  it.arch = opt_string(o, "arch", f);
  it.nonce = opt_string(o, "nonce", f);
  return it;
}

std::string NvidiaPayload::to_text() const {
  std::string out = "{";
  bool first = true;
  auto sep = [&] {
    if (!first) out += ", ";
    first = false;
  };
  if (nonce) {
    sep();
    append_py_pair(out, "nonce", *nonce);
  }
  sep();
  out += "\"evidence_list\": [";
  for (std::size_t i = 0; i < evidence_list.size(); ++i) {
    const auto& it = evidence_list[i];
    if (i) out += ", ";
    out += "{";
    append_py_pair(out, "certificate", it.certificate);
    out += ", ";
    append_py_pair(out, "evidence", it.evidence);
    if (it.arch) {
      out += ", ";
      append_py_pair(out, "arch", *it.arch);
    }
    out += "}";
  }
  out += "]";
  if (arch) {
    sep();
    append_py_pair(out, "arch", *arch);
  }
  out += "}";
  return out;
}

NvidiaPayload::Decoded NvidiaPayload::decode(const json::value& in) {
  Decoded d;
  json::value parsed;
  const json::value* v = &in;
  if (in.is_string()) {
    d.from_string = true;
    boost::system::error_code ec;
    parsed = json::parse(strip_nul(in.get_string()), ec);
    if (ec) throw ShapeError("nvidia_payload", "the string is not JSON: " + ec.message());
    v = &parsed;
  }
  const json::array* items = nullptr;
  std::string list_field = "nvidia_payload";
  if (v->is_array()) {
    items = &v->get_array();
  } else if (v->is_object()) {
    const auto& o = v->get_object();
    const json::value* l = o.if_contains("evidence_list");
    if (!l) throw ShapeError("nvidia_payload.evidence_list", "no \"evidence_list\" array");
    if (!l->is_array()) wrong_type("nvidia_payload.evidence_list", "an array", *l);
    items = &l->get_array();
    list_field = "nvidia_payload.evidence_list";
    d.nonce = opt_string(o, "nonce", "nvidia_payload");
    d.arch = opt_string(o, "arch", "nvidia_payload");
  } else {
    throw ShapeError("nvidia_payload",
                     std::string("is neither a JSON string, an object nor an array (") + kind_name(*v) + ")");
  }
  d.entries.reserve(items->size());
  for (std::size_t i = 0; i < items->size(); ++i) {
    Entry e;
    try {
      e.item = GpuEvidenceItem::parse((*items)[i], list_field + "[" + std::to_string(i) + "]");
    } catch (const ShapeError& err) {
      e.error = err.what();
    }
    d.entries.push_back(std::move(e));
  }
  return d;
}

NvidiaPayload NvidiaPayload::parse(const json::value& v) {
  Decoded d = decode(v);
  NvidiaPayload p;
  p.nonce = std::move(d.nonce);
  p.arch = std::move(d.arch);
  for (auto& e : d.entries) {
    if (!e.item) {
      // e.error is "<field>: <problem>"
      auto colon = e.error.find(": ");
      throw ShapeError(e.error.substr(0, colon), colon == std::string::npos ? e.error : e.error.substr(colon + 2));
    }
    p.evidence_list.push_back(std::move(*e.item));
  }
  return p;
}

GpuEvidence GpuEvidence::disabled() {
  GpuEvidence g;
  g.error = std::string(kGpuDisabledError);
  return g;
}

void GpuEvidence::write_to(json::object& o) const {
  o["nvidia_payload"] = nvidia_payload;
  if (items) {
    json::array a;
    a.reserve(items->size());
    for (const auto& it : *items) a.push_back(it.to_json());
    o["gpu_evidence"] = std::move(a);
  } else {
    o["gpu_evidence"] = nullptr;
  }
  o["gpu_evidence_error"] = error ? json::value(*error) : json::value(nullptr);
  if (info) o["gpu_evidence_info"] = *info;
  if (simulated) {
    o["gpu_evidence_simulated"] = true;
    o["gpu_evidence_notice"] = notice;
  }
}

GpuEvidence GpuEvidence::parse_from(const json::object& r) {
  GpuEvidence g;
  if (const json::value* p = r.if_contains("nvidia_payload")) {
    if (p->is_bool() || p->is_number()) wrong_type("nvidia_payload", "a string, an object, an array or null", *p);
    g.nvidia_payload = *p;
  }
  if (const json::value* e = r.if_contains("gpu_evidence"); e && !e->is_null()) {
    if (!e->is_array()) wrong_type("gpu_evidence", "an array or null", *e);
    std::vector<GpuEvidenceItem> items;
    items.reserve(e->get_array().size());
    for (std::size_t i = 0; i < e->get_array().size(); ++i)
      items.push_back(GpuEvidenceItem::parse(e->get_array()[i], "gpu_evidence[" + std::to_string(i) + "]"));
    g.items = std::move(items);
  }
  g.error = opt_string_or_null(r, "gpu_evidence_error");
  if (const json::value* i = r.if_contains("gpu_evidence_info")) {
    if (!i->is_object()) wrong_type("gpu_evidence_info", "an object", *i);
    g.info = i->get_object();
  }
  if (const json::value* s = r.if_contains("gpu_evidence_simulated")) {
    if (!s->is_bool()) wrong_type("gpu_evidence_simulated", "a boolean", *s);
    g.simulated = s->get_bool();
  }
  g.notice = opt_string(r, "gpu_evidence_notice").value_or("");
  return g;
}

// ----- attestation report -----------------------------------------------------------------------------------------

json::value AttestationReport::event_log_from_text(std::string_view agent_text) {
  boost::system::error_code ec;
  json::value v = json::parse(agent_text, ec);
  if (ec) return json::value(agent_text);
  return v;
}

json::object AttestationReport::to_json() const {
  json::object o;
  put(o, "signing_address", signing_address);
  put(o, "signing_algo", signing_algo);
  put(o, "signing_public_key", signing_public_key);
  put(o, "tls_cert_fingerprint", tls_cert_fingerprint);
  put(o, "request_nonce", request_nonce);
  put(o, "intel_quote", intel_quote);
  if (quote) o["quote"] = *quote;
  if (event_log) o["event_log"] = *event_log;
  put(o, "vm_config", vm_config);
  if (info) o["info"] = *info;
  put(o, "instance_id", instance_id);
  gpu.write_to(o);
  o["simulated"] = simulated;
  put(o, "simulated_notice", simulated_notice);
  json::object self = o;
  o["all_attestations"] = json::array{std::move(self)};
  return o;
}

AttestationReport AttestationReport::parse(const json::value& v) {
  if (!v.is_object())
    throw ShapeError("(report)", std::string("the attestation report is not a JSON object (") + kind_name(v) + ")");
  const auto& o = v.get_object();
  AttestationReport r;
  r.signing_address = opt_string(o, "signing_address");
  r.signing_algo = opt_string(o, "signing_algo");
  r.signing_public_key = opt_string(o, "signing_public_key");
  r.tls_cert_fingerprint = opt_string(o, "tls_cert_fingerprint");
  r.request_nonce = opt_string(o, "request_nonce");
  r.intel_quote = opt_string(o, "intel_quote");
  if (const json::value* q = o.if_contains("quote")) {
    if (!q->is_string() && !q->is_object()) wrong_type("quote", "a hex string or an object", *q);
    r.quote = *q;
  }
  if (const json::value* e = o.if_contains("event_log")) {
    if (e->is_bool() || e->is_number()) wrong_type("event_log", "an array, an object, a string or null", *e);
    r.event_log = *e;
  }
  r.vm_config = opt_string(o, "vm_config");
  if (const json::value* i = o.if_contains("info")) {
    if (!i->is_object() && !i->is_string() && !i->is_null()) wrong_type("info", "an object, a string or null", *i);
    r.info = *i;
  }
  r.instance_id = opt_string(o, "instance_id");
  r.gpu = GpuEvidence::parse_from(o);
  if (const json::value* s = o.if_contains("simulated")) {
    if (!s->is_bool()) wrong_type("simulated", "a boolean", *s);
    r.simulated = s->get_bool();
  }
  r.simulated_notice = opt_string(o, "simulated_notice");
  if (const json::value* a = o.if_contains("all_attestations"); a && !a->is_array())
    wrong_type("all_attestations", "an array", *a);
  return r;
}

// ----- signature record -------------------------------------------------------------------------------------------

SignatureResponse SignatureResponse::make(const SignatureRecord& r, const SigningIdentity& id, SigningAlgo algo,
                                          std::string_view instance_id) {
  SignatureResponse s;
  const std::string ecdsa = ecdsa_signature_hex(r);
  const std::string ed = ed25519_signature_hex(r);
  s.text = r.text();
  s.signature = algo == SigningAlgo::Ecdsa ? ecdsa : ed;
  s.signing_address = id.signing_address(algo);
  s.signing_algo = std::string(to_string(algo));
  s.request_hash = to_hex(r.request_hash);
  s.response_hash = to_hex(r.response_hash);
  s.ecdsa_signature = ecdsa;
  s.ed25519_signature = ed;
  s.ecdsa_signing_address = id.signing_address(SigningAlgo::Ecdsa);
  s.ed25519_signing_address = id.signing_address(SigningAlgo::Ed25519);
  if (!instance_id.empty()) s.instance_id = std::string(instance_id);
  return s;
}

json::object SignatureResponse::to_json() const {
  json::object o;
  put(o, "text", text);
  put(o, "signature", signature);
  put(o, "signing_address", signing_address);
  put(o, "signing_algo", signing_algo);
  put(o, "request_hash", request_hash);
  put(o, "response_hash", response_hash);
  put(o, "ecdsa_signature", ecdsa_signature);
  put(o, "ed25519_signature", ed25519_signature);
  put(o, "ecdsa_signing_address", ecdsa_signing_address);
  put(o, "ed25519_signing_address", ed25519_signing_address);
  put(o, "instance_id", instance_id);
  return o;
}

SignatureResponse SignatureResponse::parse(const json::value& v) {
  if (!v.is_object())
    throw ShapeError("(record)", std::string("the signature record is not a JSON object (") + kind_name(v) + ")");
  const auto& o = v.get_object();
  SignatureResponse s;
  s.text = opt_string(o, "text");
  s.signature = opt_string(o, "signature");
  s.signing_address = opt_string(o, "signing_address");
  s.signing_algo = opt_string(o, "signing_algo");
  s.request_hash = opt_string(o, "request_hash");
  s.response_hash = opt_string(o, "response_hash");
  s.ecdsa_signature = opt_string(o, "ecdsa_signature");
  s.ed25519_signature = opt_string(o, "ed25519_signature");
  s.ecdsa_signing_address = opt_string(o, "ecdsa_signing_address");
  s.ed25519_signing_address = opt_string(o, "ed25519_signing_address");
  s.instance_id = opt_string(o, "instance_id");
  return s;
}

std::optional<std::string> SignatureResponse::signature_for(SigningAlgo algo) const {
  const auto& specific = algo == SigningAlgo::Ecdsa ? ecdsa_signature : ed25519_signature;
  return specific ? specific : signature;
}

std::optional<std::string> SignatureResponse::signing_address_for(SigningAlgo algo) const {
  const auto& specific = algo == SigningAlgo::Ecdsa ? ecdsa_signing_address : ed25519_signing_address;
  return specific ? specific : signing_address;
}

std::string SignatureResponse::inconsistency() const {
  if (!signing_algo) return {};
  auto algo = parse_signing_algo(*signing_algo);
  if (!algo) return {};
  const char* name = *algo == SigningAlgo::Ecdsa ? "ecdsa" : "ed25519";
  const auto& addr = *algo == SigningAlgo::Ecdsa ? ecdsa_signing_address : ed25519_signing_address;
  if (signing_address && addr && lower_no0x(*signing_address) != lower_no0x(*addr))
    return "the record's signing_address " + *signing_address + " is not its " + name + "_signing_address " + *addr +
           " (signing_algo " + *signing_algo + ")";
  const auto& sig = *algo == SigningAlgo::Ecdsa ? ecdsa_signature : ed25519_signature;
  if (signature && sig && lower_no0x(*signature) != lower_no0x(*sig))
    return "the record's signature is not its " + std::string(name) + "_signature (signing_algo " + *signing_algo + ")";
  return {};
}

}  // namespace pi::protocol
