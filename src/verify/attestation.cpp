#include "verify/attestation.hpp"

#include <algorithm>
#include <boost/algorithm/string/predicate.hpp>

#include <fmt/format.h>

#include "crypto/eth.hpp"
#include "crypto/hash.hpp"
#include "protocol/report.hpp"
#include "protocol/signing.hpp"
#include "verify/encoding.hpp"
#include "verify/event_log.hpp"

namespace pi::verify {
namespace {

namespace json = boost::json;

const json::value* get(const json::value& v, std::string_view key) {
  if (!v.is_object()) return nullptr;
  auto it = v.get_object().find(key);
  if (it == v.get_object().end()) return nullptr;
  return &it->value();
}
std::optional<std::string> get_str(const json::value& v, std::string_view key) {
  auto* p = get(v, key);
  if (!p || !p->is_string()) return std::nullopt;
  return std::string(p->get_string());
}

Check mk(Group g, std::string id, std::string title, Status s, std::string detail, bool enforced = true) {
  Check c{g, std::move(id), std::move(title), s, std::move(detail)};
  c.enforced = enforced;
  return c;
}

bool in_list(const std::vector<std::string>& list, const std::string& v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}
std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

const char* kCollateralSteps[][2] = {
    {"collateral_tcb_info", "Intel's TCB info is signed by Intel (chain to the SGX root, CRLs) and valid now"},
    {"collateral_qe_identity", "Intel's QE identity is signed by Intel (chain to the SGX root, CRLs) and valid now"},
    {"pck_chain", "the PCK certificate in the quote chains to the Intel SGX root and is not revoked"},
    {"qe_report_signature", "the quoting enclave's report is signed by the PCK key"},
    {"qe_report_data", "the quoting enclave vouches for the attestation key (sha256 of key and auth data)"},
    {"qe_identity", "the quoting enclave matches Intel's QE identity (signer, product, attributes, SVN)"},
    {"tcb_status", "the platform's TCB level was found in Intel's TCB info (status and advisories)"},
};

// ----- hardware -----
std::optional<Quote> hardware(const Bytes& quote, const AttestationOptions& opts, Report& rep) {
  std::optional<Collateral> col = opts.collateral;
  std::string why;
  if (!col && opts.fetch_collateral) {
    try {
      Quote q = parse_quote(quote);
      col = opts.fetch_collateral(q, why);
    } catch (const QuoteParseError&) {
      // verify_quote_structure below reports the parse error as tdx.quote_format
    }
  }
  DcapResult r;
  if (col) {
    r = verify_dcap(quote, *col, opts.now);
    rep.fact("tdx.collateral", opts.collateral ? "from --collateral (offline)" : "fetched: " + why);
  } else {
    r = verify_quote_structure(quote);
    if (r.quote) {
      std::string reason = opts.fetch_collateral ? "no collateral: " + why
                                                 : "offline and no --collateral given: Intel collateral not available";
      for (auto& step : kCollateralSteps)
        r.checks.push_back(mk(Group::Hardware, std::string("tdx.") + step[0], step[1], Status::Skipped, reason));
    }
  }
  if (r.trailing_zero_bytes)
    rep.fact("tdx.quote_padding", fmt::format("{} zero bytes after the quote's signature data: padding, covered by no "
                                              "signature, ignored (non-zero bytes there are rejected)",
                                              r.trailing_zero_bytes));
  for (auto& c : r.checks) {
    // a debug TD is allowed only when the policy says so
    if (c.id == "tdx.td_debug" && c.status == Status::Fail && opts.policy && opts.policy->allow_debug_td)
      c.enforced = false;
    rep.add(std::move(c));
  }
  if (!r.tcb_status.empty()) {
    rep.fact("tdx.tcb_status", r.tcb_status);
    rep.fact("tdx.advisory_ids", join(r.advisory_ids));
    rep.fact("tdx.fmspc", r.fmspc);
    // Policy on TCB status / advisories: Revoked already failed in tdx.tcb_status.
    const char* title = "the TCB status and advisories are acceptable under the policy";
    bool up = r.tcb_status == "UpToDate";
    std::vector<std::string> bad_adv;
    if (opts.policy && opts.policy->allowed_advisory_ids)
      for (const auto& a : r.advisory_ids)
        if (!in_list(*opts.policy->allowed_advisory_ids, a)) bad_adv.push_back(a);
    if (opts.policy && opts.policy->allowed_tcb_statuses) {
      bool ok = in_list(*opts.policy->allowed_tcb_statuses, r.tcb_status);
      rep.add(mk(Group::Hardware, "tdx.tcb_policy", title, ok ? Status::Pass : Status::Fail,
                 fmt::format("status {} {} by the policy ({})", r.tcb_status, ok ? "allowed" : "NOT allowed",
                             join(*opts.policy->allowed_tcb_statuses))));
    } else {
      rep.add(mk(Group::Hardware, "tdx.tcb_policy", title, up ? Status::Pass : Status::Fail,
                 up ? "UpToDate" : "status " + r.tcb_status + " is reported only (no policy pins TCB statuses)",
                 false));
    }
    if (opts.policy && opts.policy->allowed_advisory_ids) {
      rep.add(mk(Group::Hardware, "tdx.advisories", "every Intel security advisory is allowed by the policy",
                 bad_adv.empty() ? Status::Pass : Status::Fail,
                 bad_adv.empty() ? "advisories [" + join(r.advisory_ids) + "] all allowed"
                                 : "advisories not allowed: " + join(bad_adv)));
    } else if (!r.advisory_ids.empty()) {
      rep.add(mk(Group::Hardware, "tdx.advisories", "every Intel security advisory is allowed by the policy",
                 Status::Fail, "advisories " + join(r.advisory_ids) + " are reported only (no policy pins them)",
                 false));
    }
  }
  return r.quote;
}

// ----- binding -----
void binding(const protocol::AttestationReport& att, const std::optional<Quote>& quote, const AttestationOptions& opts,
             AttestationOutcome& out) {
  Report& rep = out.report;
  const char* t_nonce = "the report answers the fresh nonce we sent (no replay)";
  const char* t_rd = "the quote's report_data binds the signing key and the nonce";
  const char* t_key = "the signing public key matches the signing address";
  const char* t_algo = "the report is for the signing algorithm we asked for";
  const auto& request_nonce = att.request_nonce;
  out.signing_algo = att.signing_algo.value_or("");
  out.signing_address = att.signing_address.value_or("");
  if (!out.signing_address.empty()) rep.fact("signing_address", out.signing_address);
  if (!out.signing_algo.empty()) rep.fact("signing_algo", out.signing_algo);

  if (opts.expected_signing_algo) {
    bool ok = out.signing_algo == *opts.expected_signing_algo;
    rep.add(mk(Group::Binding, "binding.signing_algo", t_algo, ok ? Status::Pass : Status::Fail,
               fmt::format("asked for {}, report says '{}'", *opts.expected_signing_algo, out.signing_algo)));
  }

  // Replay: request_nonce must echo ours.
  std::optional<std::string> nonce_hex;
  if (opts.expected_nonce_hex) {
    nonce_hex = *opts.expected_nonce_hex;
    std::string got = request_nonce.value_or("");
    std::string got_l = got, want_l = *nonce_hex;
    std::transform(got_l.begin(), got_l.end(), got_l.begin(), ::tolower);
    std::transform(want_l.begin(), want_l.end(), want_l.begin(), ::tolower);
    bool ok = got_l == want_l;
    rep.add(mk(Group::Binding, "binding.request_nonce", t_nonce, ok ? Status::Pass : Status::Fail,
               ok ? "request_nonce " + got
                  : (request_nonce ? "request_nonce " + got + " is not the nonce we sent (" + *nonce_hex +
                                         "): replayed or for another request"
                                   : "the report has no request_nonce")));
  } else {
    rep.add(mk(Group::Binding, "binding.request_nonce", t_nonce, Status::Skipped,
               "no nonce of ours (--report without --nonce): replay cannot be ruled out; comparing with the report's "
               "own request_nonce",
               false));
    nonce_hex = request_nonce;
  }

  // Signing key bytes.
  auto algo = protocol::parse_signing_algo(out.signing_algo);
  std::optional<Bytes> addr;
  std::string addr_err;
  if (!algo) {
    addr_err = "signing_algo '" + out.signing_algo + "' is not ecdsa or ed25519";
  } else if (out.signing_address.empty()) {
    addr_err = "the report has no signing_address";
  } else {
    addr = from_hex(out.signing_address);
    std::size_t want = *algo == protocol::SigningAlgo::Ecdsa ? 20 : 32;
    if (!addr || addr->size() != want) {
      addr_err = fmt::format("signing_address is not {} bytes of hex", want);
      addr.reset();
    }
  }

  // Public key ↔ address.
  if (const auto& pk = att.signing_public_key; pk && addr && algo) {
    auto pkb = from_hex(*pk);
    bool ok = false;
    std::string detail;
    if (*algo == protocol::SigningAlgo::Ecdsa) {
      if (pkb && pkb->size() == 65 && (*pkb)[0] == 0x04) pkb->erase(pkb->begin());
      if (pkb && pkb->size() == 64) {
        auto a = crypto::eth_address_of(*pkb);
        ok = std::equal(a.begin(), a.end(), addr->begin());
        detail =
            ok ? "keccak256(public key) gives the address" : "public key hashes to " + crypto::eth_checksum_address(a);
      } else {
        detail = "signing_public_key is not a 64-byte secp256k1 key";
      }
    } else {
      ok = pkb && *pkb == *addr;
      detail = ok ? "Ed25519 public key equals the address" : "signing_public_key differs from signing_address";
    }
    rep.add(mk(Group::Binding, "binding.signing_key", t_key, ok ? Status::Pass : Status::Fail, detail));
  }

  // report_data layout.
  if (!quote) {
    rep.add(mk(Group::Binding, "binding.report_data", t_rd, Status::Skipped, "not reached: no usable quote"));
    return;
  }
  const auto& rd = quote->td.report_data;
  rep.fact("report_data", to_hex(rd));
  if (!addr) {
    rep.add(mk(Group::Binding, "binding.report_data", t_rd, Status::Fail, addr_err));
    return;
  }
  std::optional<protocol::Nonce> nonce = nonce_hex ? protocol::parse_nonce(*nonce_hex) : std::nullopt;
  if (!nonce) {
    rep.add(mk(Group::Binding, "binding.report_data", t_rd, Status::Fail,
               "no 64-hex nonce to compare with (request_nonce missing or malformed)"));
    return;
  }
  std::array<std::uint8_t, 64> expected{};
  std::string layout;
  if (const auto& fp = att.tls_cert_fingerprint) {
    auto fpb = from_hex(*fp);
    if (!fpb || fpb->size() != 32) {
      rep.add(
          mk(Group::Binding, "binding.report_data", t_rd, Status::Fail, "tls_cert_fingerprint is not 32 bytes of hex"));
      return;
    }
    expected = protocol::make_report_data_tls(*addr, *fpb, *nonce);
    layout = "NEAR layout sha256(address || tls_cert_fingerprint) || nonce";
    rep.fact("tls_cert_fingerprint", *fp);
  } else {
    expected = protocol::make_report_data(*addr, *nonce);
    layout = "vllm-proxy layout address zero-padded to 32 || nonce";
  }
  bool first_ok = std::equal(expected.begin(), expected.begin() + 32, rd.begin());
  bool second_ok = std::equal(expected.begin() + 32, expected.end(), rd.begin() + 32);
  if (first_ok && second_ok) {
    out.bound = opts.expected_nonce_hex.has_value();
    rep.add(mk(Group::Binding, "binding.report_data", t_rd, Status::Pass, layout));
  } else {
    std::string what = !first_ok && !second_ok ? "neither the signing key nor the nonce match"
                       : !first_ok             ? "the signing-key half does not match (key not bound)"
                                               : "the nonce half does not match (replayed or stale quote)";
    rep.add(mk(Group::Binding, "binding.report_data", t_rd, Status::Fail,
               fmt::format("{}: expected {} ({}), quote has {}", what, to_hex(expected), layout, to_hex(rd))));
  }
}

// ----- code -----
// dstack's VMM launches the TD with MRCONFIGID = 0x01 ‖ compose hash ‖ 15 zero bytes (dstack MrConfig::V1, an app
// without a key-provider id). MRCONFIGID is fixed by the TD's creator and covered by the quote signature, so it
// binds the compose hash independently of the RTMR3 event replay. All zeros: older dstack (and dstack's own
// simulator) leave it unset — nothing to check. Another version byte (V3 hashes a document we are not given)
// cannot be checked here.
void check_mr_config_id(const std::optional<Quote>& quote, const std::optional<std::string>& compose_event,
                        Report& rep) {
  const char* title = "MRCONFIGID binds the compose hash (dstack: 0x01 || compose hash || zeros)";
  if (!quote) {
    rep.add(mk(Group::Code, "code.mr_config_id", title, Status::Skipped, "not reached: no usable quote"));
    return;
  }
  const auto& id = quote->td.mr_config_id;
  const std::string id_hex = to_hex(id);
  rep.fact("mr_config_id", id_hex);
  if (std::all_of(id.begin(), id.end(), [](std::uint8_t b) { return b == 0; })) {
    rep.add(mk(Group::Code, "code.mr_config_id", title, Status::Skipped,
               "MRCONFIGID is zero (older dstack): the compose hash rests on the RTMR3 event log alone", false));
    return;
  }
  if (id[0] != 0x01) {
    rep.add(mk(Group::Code, "code.mr_config_id", title, Status::Skipped,
               fmt::format("MRCONFIGID version {} is not dstack's compose-hash form (0x01); not checked", id[0]),
               false));
    return;
  }
  const std::string in_id = id_hex.substr(2, 64);
  const bool zero_tail = std::all_of(id.begin() + 33, id.end(), [](std::uint8_t b) { return b == 0; });
  if (!compose_event) {
    rep.add(mk(Group::Code, "code.mr_config_id", title, Status::Fail,
               "MRCONFIGID carries compose hash " + in_id + " but the event log has no compose-hash event"));
  } else if (in_id != *compose_event || !zero_tail) {
    rep.add(mk(Group::Code, "code.mr_config_id", title, Status::Fail,
               zero_tail ? "MRCONFIGID carries compose hash " + in_id + " but the measured compose-hash event is " +
                               *compose_event
                         : "MRCONFIGID " + id_hex + " has non-zero bytes after the compose hash"));
  } else {
    rep.add(mk(Group::Code, "code.mr_config_id", title, Status::Pass, "MRCONFIGID = 01 || " + in_id + " || 0 x 15"));
  }
}

void code(const protocol::AttestationReport& att, const std::optional<Quote>& quote, const AttestationOptions& opts,
          Report& rep) {
  const char* t_log = "the event log parses and every runtime event's digest matches its content";
  const char* t_rtmr = "replaying the event log reproduces RTMR0-3 of the quote";
  const char* t_compose = "the compose-hash event equals sha256(app_compose) shown in Info";

  // Info and tcb_info (may arrive as objects, JSON strings or Python-literal strings).
  json::value info, tcb_info;
  if (const auto& p = att.info; p && !p->is_null()) {
    try {
      auto d = decode_lenient(*p);
      info = std::move(d.value);
      rep.fact("encoding.info", d.form);
      if (auto* t = get(info, "tcb_info"); t && !t->is_null()) {
        auto dt = decode_lenient(*t);
        tcb_info = std::move(dt.value);
        rep.fact("encoding.tcb_info", dt.form);
      }
    } catch (const DecodeError& e) {
      rep.add(mk(Group::Code, "code.info", "the dstack Info object decodes", Status::Fail, e.what()));
    }
  }

  // Event log: the report's own, else the one in tcb_info.
  const json::value* raw_log = att.event_log ? &*att.event_log : nullptr;
  std::string log_src = "event_log";
  if (!raw_log || raw_log->is_null()) {
    if (att.quote && att.quote->is_object()) raw_log = get(*att.quote, "event_log"), log_src = "quote.event_log";
  }
  if ((!raw_log || raw_log->is_null()) && !tcb_info.is_null())
    raw_log = get(tcb_info, "event_log"), log_src = "info.tcb_info.event_log";
  std::optional<std::vector<Event>> events;
  if (!raw_log || raw_log->is_null()) {
    rep.add(mk(Group::Code, "code.event_log", t_log, Status::Fail, "the report carries no event log"));
  } else {
    try {
      auto d = decode_lenient(*raw_log);
      rep.fact("encoding.event_log", d.form + " (" + log_src + ")");
      events = parse_event_log(d.value);
    } catch (const std::exception& e) {
      rep.add(mk(Group::Code, "code.event_log", t_log, Status::Fail, e.what()));
    }
  }
  std::optional<Replay> replay;
  if (events) {
    replay = replay_event_log(*events);
    if (replay->problems.empty())
      rep.add(mk(Group::Code, "code.event_log", t_log, Status::Pass,
                 fmt::format("{} events; {} runtime digests recomputed{}", replay->events, replay->recomputed,
                             replay->stripped ? fmt::format(" ({} were stripped in the log)", replay->stripped) : "")));
    else
      rep.add(mk(Group::Code, "code.event_log", t_log, Status::Fail, join(replay->problems)));
    rep.fact("event_log.format", replay->stripped ? "stripped (runtime digests empty, recomputed)" : "full");
  }
  if (!quote) {
    rep.add(mk(Group::Code, "code.rtmr", t_rtmr, Status::Skipped, "not reached: no usable quote"));
  } else if (!replay) {
    rep.add(mk(Group::Code, "code.rtmr", t_rtmr, Status::Fail, "no event log to replay"));
  } else {
    std::vector<std::string> bad;
    for (int i = 0; i < 4; ++i)
      if (replay->rtmr[i] != quote->td.rtmr[i])
        bad.push_back(
            fmt::format("RTMR{}: replay {} != quote {}", i, to_hex(replay->rtmr[i]), to_hex(quote->td.rtmr[i])));
    rep.add(mk(Group::Code, "code.rtmr", t_rtmr, bad.empty() ? Status::Pass : Status::Fail,
               bad.empty() ? "RTMR0, RTMR1, RTMR2, RTMR3 all match" : join(bad)));
  }

  // dstack facts and the compose hash.
  std::optional<std::string> compose_event;
  if (events) {
    compose_event = runtime_event_payload(*events, "compose-hash", true);
    if (auto v = runtime_event_payload(*events, "app-id", true)) rep.fact("app_id", *v);
    if (compose_event) rep.fact("compose_hash", *compose_event);
    if (auto v = runtime_event_payload(*events, "os-image-hash", true)) rep.fact("os_image_hash", *v);
    const auto instance_event = runtime_event_payload(*events, "instance-id", true);
    if (instance_event) rep.fact("instance_id", *instance_event);
    if (auto v = runtime_event_payload(*events, "key-provider", false)) rep.fact("key_provider", *v);
    // The report's instance_id (ours: which replica of a fleet this is; signature records name it) must be
    // the measured one, or an auditor matching records to replicas would be told a story.
    if (att.instance_id) {
      const char* t_inst = "the report's instance_id is the measured instance-id event";
      const bool ok = instance_event && boost::algorithm::iequals(*att.instance_id, *instance_event);
      rep.add(mk(Group::Code, "code.instance_id", t_inst, ok ? Status::Pass : Status::Fail,
                 ok ? *att.instance_id
                    : "the report names " + *att.instance_id + " but the event log measures " +
                          instance_event.value_or("no instance-id event")));
    }
  }
  std::optional<std::string> app_compose = tcb_info.is_null() ? std::nullopt : get_str(tcb_info, "app_compose");
  if (!compose_event) {
    rep.add(mk(Group::Code, "code.compose_hash", t_compose, Status::Fail, "the event log has no compose-hash event"));
  } else if (!app_compose) {
    rep.add(mk(Group::Code, "code.compose_hash", t_compose, Status::Fail,
               "Info carries no tcb_info.app_compose: the code that runs cannot be shown"));
  } else {
    auto h = to_hex(crypto::sha256(*app_compose));
    bool ok = h == *compose_event;
    rep.add(mk(Group::Code, "code.compose_hash", t_compose, ok ? Status::Pass : Status::Fail,
               ok ? "sha256(app_compose) = " + h
                  : "sha256(app_compose) = " + h + " but the measured compose-hash event is " + *compose_event));
    try {
      auto compose = json::parse(*app_compose);
      if (auto f = get_str(compose, "docker_compose_file")) rep.fact("docker_compose_file", *f);
    } catch (const std::exception&) {
      rep.fact("app_compose", *app_compose);
    }
  }
  check_mr_config_id(quote, compose_event, rep);
  if (quote) {
    rep.fact("mrtd", to_hex(quote->td.mr_td));
    for (int i = 0; i < 4; ++i) rep.fact(fmt::format("rtmr{}", i), to_hex(quote->td.rtmr[i]));
  }

  // Policy pins.
  if (!opts.policy) {
    rep.add(mk(Group::Code, "code.policy", "measurements are pinned by a policy", Status::Skipped,
               "no --policy: compose hash, OS image, MRTD and RTMR0-2 are shown as facts but not pinned", false));
    return;
  }
  auto pin = [&](const char* id, const char* what, const std::optional<std::vector<std::string>>& allowed,
                 std::optional<std::string> actual) {
    if (!allowed) return;
    std::string title = fmt::format("the {} is one the policy allows", what);
    if (!actual) {
      rep.add(mk(Group::Code, id, title, Status::Fail, fmt::format("no {} available to compare", what)));
      return;
    }
    bool ok = in_list(*allowed, *actual);
    rep.add(mk(Group::Code, id, title, ok ? Status::Pass : Status::Fail,
               fmt::format("{} {} {}", what, *actual, ok ? "allowed" : "is NOT in the policy")));
  };
  std::optional<std::string> os_image = events ? runtime_event_payload(*events, "os-image-hash", true) : std::nullopt;
  pin("code.policy.compose_hash", "compose hash", opts.policy->compose_hashes, compose_event);
  pin("code.policy.os_image_hash", "OS image hash", opts.policy->os_image_hashes, os_image);
  auto q = [&](auto f) { return quote ? std::optional<std::string>(f()) : std::nullopt; };
  pin("code.policy.mrtd", "MRTD", opts.policy->mrtd, q([&] { return to_hex(quote->td.mr_td); }));
  pin("code.policy.rtmr0", "RTMR0", opts.policy->rtmr0, q([&] { return to_hex(quote->td.rtmr[0]); }));
  pin("code.policy.rtmr1", "RTMR1", opts.policy->rtmr1, q([&] { return to_hex(quote->td.rtmr[1]); }));
  pin("code.policy.rtmr2", "RTMR2", opts.policy->rtmr2, q([&] { return to_hex(quote->td.rtmr[2]); }));
}

// ----- GPU -----
const char* kGpuTitle = "GPU attestation evidence is present and verified";

// nvidia_payload and gpu_evidence (our proxy writes both, from the same collection) must carry the same items.
void check_payloads_agree(const protocol::AttestationReport& att, Report& rep) {
  if (!att.gpu.items) return;
  const char* title = "nvidia_payload and gpu_evidence carry the same GPU evidence";
  protocol::NvidiaPayload::Decoded d;
  try {
    d = protocol::NvidiaPayload::decode(att.gpu.nvidia_payload);
  } catch (const std::exception&) {
    return;  // gpu.payload reports it
  }
  auto strip = [](std::string s) {
    s.erase(std::remove(s.begin(), s.end(), '\0'), s.end());
    return s;
  };
  const auto& items = *att.gpu.items;
  std::string why;
  if (d.entries.size() != items.size()) {
    why = fmt::format("nvidia_payload has {} item(s), gpu_evidence {}", d.entries.size(), items.size());
  } else {
    for (std::size_t i = 0; i < items.size() && why.empty(); ++i) {
      const auto& e = d.entries[i];
      if (!e.item || strip(e.item->certificate) != strip(items[i].certificate) ||
          strip(e.item->evidence) != strip(items[i].evidence))
        why = fmt::format("item {} differs", i);
    }
  }
  rep.add(mk(Group::Gpu, "gpu.evidence_consistent", title, why.empty() ? Status::Pass : Status::Fail,
             why.empty() ? fmt::format("{} identical item(s)", items.size())
                         : why + ": the report shows two different sets of GPU evidence"));
}

void gpu_requirements(const AttestationOptions& opts, GpuSummary& g, Report& rep) {
  std::optional<int> need = opts.require_gpus;
  if (opts.policy && opts.policy->gpu_min_count) need = std::max(need.value_or(0), *opts.policy->gpu_min_count);
  g.required = need;
  std::string archs = join(g.architectures);
  if (need) {
    bool ok = g.verified >= *need;
    std::string detail = fmt::format("{} GPU(s) verified{}; at least {} required", g.verified,
                                     archs.empty() ? "" : " (" + archs + ")", *need);
    if (!ok && g.evidence_items == 0) detail += ": the report carries no GPU evidence (" + g.why_none + ")";
    if (!ok && g.evidence_items > g.verified)
      detail += fmt::format(": {} of {} evidence item(s) did not verify (see gpu.N.*)", g.evidence_items - g.verified,
                            g.evidence_items);
    rep.add(mk(Group::Gpu, "gpu.required", "at least the required number of GPUs verified (--require-gpu, policy)",
               ok ? Status::Pass : Status::Fail, detail));
  }
  if (opts.policy && opts.policy->gpu_allowed_architectures) {
    const auto& allowed = *opts.policy->gpu_allowed_architectures;
    std::vector<std::string> bad;
    for (std::size_t i = 0; i < g.architectures.size(); ++i)
      if (!in_list(allowed, g.architectures[i])) bad.push_back(fmt::format("a verified GPU is {}", g.architectures[i]));
    rep.add(mk(Group::Gpu, "gpu.architectures", "every verified GPU's architecture is one the policy allows",
               bad.empty() ? Status::Pass : Status::Fail,
               bad.empty() ? fmt::format("[{}] all in the policy ({})", archs, join(allowed))
                           : join(bad) + ", not in the policy (" + join(allowed) + ")"));
  }
}

void gpu(const protocol::AttestationReport& att, const AttestationOptions& opts, Report& rep) {
  const json::value* p = &att.gpu.nvidia_payload;
  json::value from_items;
  bool no_payload = p->is_null() || (p->is_string() && p->get_string().empty());
  if (no_payload && att.gpu.items && !att.gpu.items->empty()) {
    // Our proxy also serves the evidence as gpu_evidence: a report stripped of nvidia_payload alone is still read.
    json::array a;
    for (const auto& it : *att.gpu.items) a.push_back(it.to_json());
    from_items = std::move(a);
    p = &from_items;
    no_payload = false;
    rep.fact("encoding.gpu_evidence", "gpu_evidence array (nvidia_payload is null)");
  }
  GpuSummary g;
  if (no_payload) {
    g.why_none = att.gpu.error.value_or("the report carries no nvidia_payload");
    rep.add(mk(Group::Gpu, "gpu.evidence", kGpuTitle, Status::Skipped, "no GPU evidence: " + g.why_none, false));
  } else {
    if (p->is_string()) rep.fact("encoding.nvidia_payload", "json-string");
    std::string nonce = opts.expected_nonce_hex.value_or(att.request_nonce.value_or(""));
    try {
      check_gpu_evidence(*p, nonce, opts.gpu, rep);
    } catch (const std::exception& e) {
      rep.add(mk(Group::Gpu, "gpu.evidence", kGpuTitle, Status::Fail, e.what()));
    }
    if (p == &att.gpu.nvidia_payload) check_payloads_agree(att, rep);
    g = summarize_gpus(rep);
    if (g.evidence_items == 0) g.why_none = "the GPU evidence does not decode (see gpu.payload)";
  }
  gpu_requirements(opts, g, rep);
  rep.fact("gpu.verified", g.verified == 0 ? "0" : fmt::format("{} ({})", g.verified, join(g.architectures)));
  rep.gpus = std::move(g);
}

AttestationOutcome verify_one(const json::value& doc, const AttestationOptions& opts);

// ----- all_attestations -----
void instances(const json::value& doc, const AttestationOptions& opts, Report& rep) {
  const json::value* all = get(doc, "all_attestations");
  if (!all || !all->is_array()) return;  // absent (parse() rejected any other type)
  const auto& entries = all->get_array();
  json::object top = doc.get_object();
  top.erase("all_attestations");
  std::optional<std::size_t> top_at;
  for (std::size_t k = 0; k < entries.size(); ++k) {
    const std::string id = fmt::format("all_attestations.{}", k);
    const std::string title =
        fmt::format("all_attestations[{}] verifies like the top-level report (quote, binding, nonce, code, GPU)", k);
    const json::value& e = entries[k];
    if (e.is_object() && e.get_object() == top) {
      if (!top_at) top_at = k;
      rep.add(mk(Group::Instances, id, title, Status::Pass,
                 "identical to the top-level report: its checks are the ones above"));
      continue;
    }
    if (e.is_object() && e.get_object().contains("all_attestations")) {
      rep.add(mk(Group::Instances, id, title, Status::Fail, "an entry must not itself carry all_attestations"));
      continue;
    }
    AttestationOutcome sub = verify_one(e, opts);
    const Report& r = sub.report;
    std::vector<std::string> bad, skipped;
    for (const auto& c : r.checks) {
      if (!c.enforced) continue;
      if (c.status == Status::Fail) bad.push_back(c.id + " (" + c.detail.substr(0, 160) + ")");
      if (c.status == Status::Skipped) skipped.push_back(c.id);
    }
    int gpus = r.gpus ? r.gpus->verified : 0;
    std::string who = fmt::format("signing_address {}, {} GPU(s) verified",
                                  sub.signing_address.empty() ? "(none)" : sub.signing_address, gpus);
    Status st = !bad.empty() ? Status::Fail : !skipped.empty() ? Status::Skipped : Status::Pass;
    std::string detail = st == Status::Pass   ? "VERIFIED: " + who
                         : st == Status::Fail ? "FAILED: " + join(bad) + "; " + who
                                              : "INCOMPLETE (skipped: " + join(skipped) + "); " + who;
    rep.add(mk(Group::Instances, id, title, st, detail));
    if (!sub.signing_address.empty()) rep.fact(id + ".signing_address", sub.signing_address);
    for (const auto& [fk, fv] : r.facts)
      if (fk == "app_id" || fk == "compose_hash") rep.fact(id + "." + fk, fv);
    rep.fact(id + ".gpus_verified", std::to_string(gpus));
  }
  const char* t_top = "the top-level report is one of the all_attestations entries";
  rep.add(mk(Group::Instances, "all_attestations.top_level", t_top, top_at ? Status::Pass : Status::Fail,
             top_at ? fmt::format("entry {} of {} is identical to the top level (member order ignored)", *top_at,
                                  entries.size())
                    : fmt::format("none of the {} entries equals the top-level report: the list does not describe "
                                  "the instance that answered",
                                  entries.size())));
}

AttestationOutcome verify_one(const json::value& doc, const AttestationOptions& opts) {
  AttestationOutcome out;
  Report& rep = out.report;
  rep.gpus = GpuSummary{};
  rep.gpus->why_none = "the report could not be read";
  if (!doc.is_object()) {
    rep.add(mk(Group::Hardware, "tdx.quote_format", "the report is a JSON object with a TDX quote", Status::Fail,
               "the attestation report is not a JSON object"));
    return out;
  }
  // Parsed once: a field of the wrong type fails here, naming the field (it is never silently skipped).
  protocol::AttestationReport att;
  try {
    att = protocol::AttestationReport::parse(doc);
  } catch (const protocol::ShapeError& e) {
    rep.add(mk(Group::Hardware, "attestation.format",
               "every field of the report has the documented JSON type (docs/verifier.md)", Status::Fail, e.what()));
    return out;
  }
  if (att.simulated) rep.fact("simulated", "true: the server says this is a simulated TEE (its quote cannot verify)");

  // Quote: intel_quote, else quote (hex string, or an object with a "quote" field).
  std::optional<std::string> quote_hex = att.intel_quote;
  std::string quote_src = "intel_quote";
  std::string no_quote = "no intel_quote / quote field";
  if (!quote_hex && att.quote) {
    quote_src = "quote";
    if (att.quote->is_string()) {
      quote_hex = std::string(att.quote->get_string());
    } else if (const auto* inner = get(*att.quote, "quote"); inner && inner->is_string()) {
      quote_hex = std::string(inner->get_string()), quote_src = "quote.quote";
    } else {
      no_quote = inner ? "quote.quote is not a hex string" : "the quote object has no \"quote\" field";
    }
  }
  std::optional<Quote> quote;
  if (!quote_hex) {
    rep.add(mk(Group::Hardware, "tdx.quote_format", "the report carries a TDX quote", Status::Fail, no_quote));
  } else {
    try {
      auto d = decode_hex_field(*quote_hex);
      rep.fact("encoding.quote", d.form + " (" + quote_src + ")");
      quote = hardware(d.bytes, opts, rep);
    } catch (const DecodeError& e) {
      rep.add(mk(Group::Hardware, "tdx.quote_format", "the report carries a TDX quote", Status::Fail,
                 std::string("quote: ") + e.what()));
    }
  }
  binding(att, quote, opts, out);
  code(att, quote, opts, rep);
  gpu(att, opts, rep);
  return out;
}

}  // namespace

AttestationOutcome verify_attestation(const json::value& doc, const AttestationOptions& opts) {
  AttestationOutcome out = verify_one(doc, opts);
  // all_attestations is read only when the report itself is well-formed (attestation.format passed).
  if (!out.report.find("attestation.format")) instances(doc, opts, out.report);
  return out;
}

}  // namespace pi::verify
