// The protocol rules that signer-side simulators and the verifier share, each in one place:
// the DCAP quote layout (protocol/tdx_quote.hpp), the dstack event-log rule (protocol/event_log.hpp)
// and percent-decoding (protocol/url.hpp). Checked against real recorded evidence in tests/fixtures/tdx.
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "crypto/bytes.hpp"
#include "crypto/hash.hpp"
#include "devtee/sim_quote.hpp"
#include "devtee/test_pki.hpp"
#include "protocol/event_log.hpp"
#include "protocol/tdx_quote.hpp"
#include "protocol/url.hpp"

namespace pi::protocol {
namespace {

namespace json = boost::json;
namespace tdx = protocol::tdx;
namespace evlog = protocol::event_log;

std::string read_file(const std::string& name) {
  std::ifstream f(std::string(PI_FIXTURES_DIR) + "/tdx/" + name, std::ios::binary);
  EXPECT_TRUE(f) << name;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Bytes hex_file(const std::string& name) {
  std::string s = read_file(name);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return from_hex(s).value();
}

struct Recorded {
  std::string name;
  Bytes quote;
};

// Every recorded quote we have: five real TDX v4 quotes and one SGX v3 quote.
std::vector<Recorded> recorded_quotes() {
  auto vllm = json::parse(read_file("vllm_proxy_sample_dstack.json"));
  auto stripped = json::parse(read_file("dstack_getquote_stripped.json"));
  std::string bin = read_file("dcapqvl_tdx_quote.bin");
  std::string sgx = read_file("dcapqvl_sgx_quote.bin");
  return {
      {"vllm_proxy_sample_dstack", from_hex(std::string_view(vllm.at("quote").at("quote").as_string())).value()},
      {"near_dstack_quote", hex_file("near_dstack_quote.hex")},
      {"dstack_sim055_quote", hex_file("dstack_sim055_quote.hex")},
      {"dstack_getquote_stripped", from_hex(std::string_view(stripped.at("quote").as_string())).value()},
      {"dcapqvl_tdx_quote", Bytes(bin.begin(), bin.end())},
      {"dcapqvl_sgx_quote", Bytes(sgx.begin(), sgx.end())},
  };
}

// Every field serialize_quote writes must come back from parse_quote.
void expect_same_quote(const tdx::Quote& a, const tdx::Quote& b) {
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.attestation_key_type, b.attestation_key_type);
  EXPECT_EQ(a.tee_type, b.tee_type);
  EXPECT_EQ(a.header_reserved, b.header_reserved);
  EXPECT_EQ(a.qe_vendor_id, b.qe_vendor_id);
  EXPECT_EQ(a.user_data, b.user_data);
  if (a.is_tdx()) {
    EXPECT_EQ(a.td.tee_tcb_svn, b.td.tee_tcb_svn);
    EXPECT_EQ(a.td.mr_seam, b.td.mr_seam);
    EXPECT_EQ(a.td.mr_signer_seam, b.td.mr_signer_seam);
    EXPECT_EQ(a.td.seam_attributes, b.td.seam_attributes);
    EXPECT_EQ(a.td.td_attributes, b.td.td_attributes);
    EXPECT_EQ(a.td.xfam, b.td.xfam);
    EXPECT_EQ(a.td.mr_td, b.td.mr_td);
    EXPECT_EQ(a.td.mr_config_id, b.td.mr_config_id);
    EXPECT_EQ(a.td.mr_owner, b.td.mr_owner);
    EXPECT_EQ(a.td.mr_owner_config, b.td.mr_owner_config);
    EXPECT_EQ(a.td.rtmr, b.td.rtmr);
    EXPECT_EQ(a.td.report_data, b.td.report_data);
    EXPECT_EQ(a.td.td15, b.td.td15);
    EXPECT_EQ(a.td.tee_tcb_svn2, b.td.tee_tcb_svn2);
    EXPECT_EQ(a.td.mr_service_td, b.td.mr_service_td);
  } else {
    EXPECT_EQ(tdx::serialize_enclave_report(a.sgx), tdx::serialize_enclave_report(b.sgx));
    EXPECT_EQ(a.sgx.report_data, b.sgx.report_data);
    EXPECT_EQ(a.sgx.isv_svn, b.sgx.isv_svn);
  }
  EXPECT_EQ(a.quote_signature, b.quote_signature);
  EXPECT_EQ(a.attestation_key, b.attestation_key);
  EXPECT_EQ(a.qe_report.cpu_svn, b.qe_report.cpu_svn);
  EXPECT_EQ(a.qe_report.misc_select, b.qe_report.misc_select);
  EXPECT_EQ(a.qe_report.attributes, b.qe_report.attributes);
  EXPECT_EQ(a.qe_report.mr_enclave, b.qe_report.mr_enclave);
  EXPECT_EQ(a.qe_report.mr_signer, b.qe_report.mr_signer);
  EXPECT_EQ(a.qe_report.isv_prod_id, b.qe_report.isv_prod_id);
  EXPECT_EQ(a.qe_report.isv_svn, b.qe_report.isv_svn);
  EXPECT_EQ(a.qe_report.report_data, b.qe_report.report_data);
  EXPECT_EQ(a.qe_report_signature, b.qe_report_signature);
  EXPECT_EQ(a.qe_auth_data, b.qe_auth_data);
  EXPECT_EQ(a.cert_data_type, b.cert_data_type);
  EXPECT_EQ(a.cert_data, b.cert_data);
}

template <std::size_t N>
void fill(std::array<std::uint8_t, N>& a, std::uint8_t seed) {
  for (std::size_t i = 0; i < N; ++i) a[i] = static_cast<std::uint8_t>(seed + i);
}

// A quote whose every field holds distinct bytes, so a misplaced field cannot go unnoticed.
tdx::Quote synthetic_quote(std::uint16_t version, bool tdx_body, bool td15) {
  tdx::Quote q;
  q.version = version;
  q.attestation_key_type = tdx::kAttestationKeyEcdsaP256;
  q.tee_type = tdx_body ? tdx::kTeeTypeTdx : tdx::kTeeTypeSgx;
  if (version == 3) fill(q.header_reserved, 0x0a);
  fill(q.qe_vendor_id, 0x10);
  fill(q.user_data, 0x20);
  std::uint8_t s = 0x30;
  fill(q.td.tee_tcb_svn, s++);
  fill(q.td.mr_seam, s++);
  fill(q.td.mr_signer_seam, s++);
  fill(q.td.seam_attributes, s++);
  fill(q.td.td_attributes, s++);
  fill(q.td.xfam, s++);
  fill(q.td.mr_td, s++);
  fill(q.td.mr_config_id, s++);
  fill(q.td.mr_owner, s++);
  fill(q.td.mr_owner_config, s++);
  for (auto& r : q.td.rtmr) fill(r, s++);
  fill(q.td.report_data, s++);
  q.td.td15 = td15;
  if (td15) {
    fill(q.td.tee_tcb_svn2, s++);
    fill(q.td.mr_service_td, s++);
  }
  fill(q.sgx.cpu_svn, 0x60);
  q.sgx.misc_select = 0x01020304;
  fill(q.sgx.attributes, 0x61);
  fill(q.sgx.mr_enclave, 0x62);
  fill(q.sgx.mr_signer, 0x63);
  q.sgx.isv_prod_id = 0x0506;
  q.sgx.isv_svn = 0x0708;
  fill(q.sgx.report_data, 0x64);
  fill(q.quote_signature, 0x70);
  fill(q.attestation_key, 0x71);
  q.qe_report = q.sgx;
  fill(q.qe_report.report_data, 0x72);
  fill(q.qe_report_signature, 0x73);
  q.qe_auth_data = Bytes(32, 0x74);
  q.cert_data_type = tdx::signature_data::kCertPckChain;
  q.cert_data = Bytes(1000, 0x75);
  return q;
}

TEST(TdxLayout, NamedOffsetsMatchIntelsTable) {
  EXPECT_EQ(tdx::kV4ReportDataOffset, 568u);
  EXPECT_EQ(tdx::header::kUserData.end(), tdx::header::kSize);
  EXPECT_EQ(tdx::td_report::rtmr(3).offset, 472u);
  EXPECT_EQ(tdx::td_report::rtmr(3).end(), tdx::td_report::kReportData.offset);
  EXPECT_EQ(tdx::td_report::kReportData.end(), tdx::td_report::kSize10);
  EXPECT_EQ(tdx::td_report::kMrServiceTd.end(), tdx::td_report::kSize15);
  EXPECT_EQ(tdx::enclave_report::kReportData.end(), tdx::enclave_report::kSize);
  EXPECT_EQ(tdx::header::kSize + tdx::td_report::kTdAttributes.offset, 168u);  // the DEBUG bit tests use this
}

// Every recorded quote parses, re-serializes to exactly its own bytes, and has REPORTDATA where
// report_data_offset says. Real quotes carry 70 zero bytes after their signature data (the quote
// buffer's padding), which is why the parser does not reject bytes past `length`.
TEST(TdxLayout, RecordedQuotesRoundTripByteForByte) {
  for (const auto& [name, raw] : recorded_quotes()) {
    SCOPED_TRACE(name);
    tdx::Quote q = tdx::parse_quote(raw);
    ASSERT_LE(q.length, raw.size());
    Bytes again = tdx::serialize_quote(q);
    EXPECT_EQ(again, Bytes(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(q.length)));
    for (std::size_t i = q.length; i < raw.size(); ++i) ASSERT_EQ(raw[i], 0) << "trailing byte " << i;
    EXPECT_EQ(tdx::serialize_signed_part(q).size(), q.signed_length);
    EXPECT_EQ(q.qe_report.raw, tdx::serialize_enclave_report(q.qe_report));
    if (q.is_tdx()) {
      EXPECT_EQ(raw.size() - q.length, 70u);
      ASSERT_EQ(tdx::report_data_offset(raw), 568u);
      EXPECT_TRUE(std::equal(q.td.report_data.begin(), q.td.report_data.end(), raw.begin() + 568));
    } else {
      EXPECT_EQ(q.length, raw.size());
      EXPECT_THROW(tdx::report_data_offset(raw), tdx::QuoteParseError);
    }
  }
}

TEST(TdxLayout, EveryVersionAndBodyRoundTrips) {
  struct Case {
    std::uint16_t version;
    bool tdx_body, td15;
    std::size_t signed_length, report_data_at;
  };
  for (const Case& c : {Case{3, false, false, 48 + 384, 0}, Case{4, true, false, 48 + 584, 568},
                        Case{5, true, false, 48 + 6 + 584, 574}, Case{5, true, true, 48 + 6 + 648, 574},
                        Case{5, false, false, 48 + 6 + 384, 0}}) {
    SCOPED_TRACE(testing::Message() << "v" << c.version << (c.tdx_body ? (c.td15 ? " TD1.5" : " TD1.0") : " SGX"));
    tdx::Quote in = synthetic_quote(c.version, c.tdx_body, c.td15);
    Bytes raw = tdx::serialize_quote(in);
    tdx::Quote out = tdx::parse_quote(raw);
    expect_same_quote(in, out);
    EXPECT_EQ(out.signed_length, c.signed_length);
    EXPECT_EQ(out.length, raw.size());
    EXPECT_EQ(tdx::serialize_quote(out), raw);
    if (c.tdx_body) {
      ASSERT_EQ(tdx::report_data_offset(raw), c.report_data_at);
      EXPECT_TRUE(std::equal(in.td.report_data.begin(), in.td.report_data.end(),
                             raw.begin() + static_cast<std::ptrdiff_t>(c.report_data_at)));
    }
  }
}

TEST(TdxLayout, SerializeRefusesLayoutsThatDoNotExist) {
  EXPECT_THROW(tdx::serialize_quote(synthetic_quote(4, true, true)), std::invalid_argument);    // v4 has no TD 1.5
  EXPECT_THROW(tdx::serialize_quote(synthetic_quote(4, false, false)), std::invalid_argument);  // v4 is TDX only
  EXPECT_THROW(tdx::serialize_quote(synthetic_quote(3, true, false)), std::invalid_argument);   // v3 is SGX only
  EXPECT_THROW(tdx::serialize_quote(synthetic_quote(6, true, false)), std::invalid_argument);
}

TEST(TdxLayout, ReportDataOffsetRejectsWhatIsNotATdQuote) {
  Bytes v4 = tdx::serialize_quote(synthetic_quote(4, true, false));
  EXPECT_THROW(tdx::report_data_offset(ByteView(v4.data(), 47)), tdx::QuoteParseError);
  EXPECT_THROW(tdx::report_data_offset(ByteView(v4.data(), 48 + 583)), tdx::QuoteParseError);
  EXPECT_EQ(tdx::report_data_offset(ByteView(v4.data(), 48 + 584)), 568u);  // signature data not needed
  Bytes bad = v4;
  bad[4] = 0;  // tee_type SGX in a v4 header
  EXPECT_THROW(tdx::report_data_offset(bad), tdx::QuoteParseError);
  bad = v4;
  bad[0] = 7;
  EXPECT_THROW(tdx::report_data_offset(bad), tdx::QuoteParseError);
  EXPECT_THROW(tdx::parse_quote(bad), tdx::QuoteParseError);
}

// dev-tee's builder writes through the same serializer; what it builds parses back to its inputs.
TEST(TdxLayout, SimulatedQuoteBuilderOutputParses) {
  const devtee::TestPki pki = devtee::generate_test_pki(1790000000);
  auto events = devtee::sim_event_log(devtee::sim_default_app_compose());
  auto m = devtee::sim_measurements(events);
  std::array<std::uint8_t, 64> rd{};
  fill(rd, 0x90);
  Bytes raw = devtee::build_sim_quote(pki, m, rd);
  tdx::Quote q = tdx::parse_quote(raw);
  EXPECT_EQ(q.version, 4);
  EXPECT_TRUE(q.is_tdx());
  EXPECT_EQ(q.length, raw.size());
  EXPECT_EQ(q.signed_length, 632u);
  EXPECT_EQ(q.td.report_data, rd);
  EXPECT_EQ(q.td.mr_td, m.mrtd);
  EXPECT_EQ(q.td.rtmr, m.rtmr);
  EXPECT_EQ(q.td.tee_tcb_svn, devtee::kSimTeeTcbSvn);
  EXPECT_EQ(q.qe_report.isv_svn, devtee::kSimQeIsvSvn);
  EXPECT_EQ(q.qe_report.mr_signer, devtee::sim_qe_mr_signer());
  EXPECT_EQ(q.cert_data_type, tdx::signature_data::kCertPckChain);
  EXPECT_EQ(std::string(q.cert_data.begin(), q.cert_data.end()), pki.pck_chain_pem());
  EXPECT_EQ(tdx::report_data_offset(raw), 568u);
  EXPECT_EQ(tdx::serialize_quote(q), raw);
}

// The dstack v0.5.5 simulator's recorded log: its runtime events' logged digests are the rule's, and
// replaying the whole log gives the RTMRs in its recorded quote.
TEST(EventLogRule, RecordedRuntimeDigestsAndReplay) {
  auto log = json::parse(read_file("dstack_sim055_eventlog.json")).as_array();
  tdx::Quote q = tdx::parse_quote(hex_file("dstack_sim055_quote.hex"));
  std::vector<evlog::Measurement> measured;
  std::size_t runtime = 0;
  for (const auto& v : log) {
    const auto& e = v.as_object();
    evlog::Measurement m;
    m.imr = static_cast<std::uint32_t>(e.at("imr").to_number<std::int64_t>());
    auto type = static_cast<std::uint32_t>(e.at("event_type").to_number<std::int64_t>());
    Bytes logged = from_hex(std::string_view(e.at("digest").as_string())).value();
    ASSERT_EQ(logged.size(), 48u);
    std::copy(logged.begin(), logged.end(), m.digest.begin());
    if (type == evlog::kDstackRuntimeEventType) {
      ++runtime;
      EXPECT_EQ(m.imr, evlog::kRuntimeEventImr);
      Bytes payload = from_hex(std::string_view(e.at("event_payload").as_string())).value();
      EXPECT_EQ(evlog::runtime_event_digest(type, std::string_view(e.at("event").as_string()), payload), m.digest)
          << e.at("event");
    }
    measured.push_back(m);
  }
  EXPECT_EQ(runtime, 7u);
  auto rtmr = evlog::replay(measured);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(rtmr[i], q.td.rtmr[i]) << "RTMR" << i;
  EXPECT_EQ(to_hex(rtmr[3]), to_hex(q.td.rtmr[3]));
}

TEST(EventLogRule, DigestExtendAndReplayByHand) {
  // "system-preparing" with an empty payload, as in every dstack boot.
  const std::string msg = std::string("\x01\x00\x00\x08", 4) + ":system-preparing:";
  EXPECT_EQ(evlog::runtime_event_digest(evlog::kDstackRuntimeEventType, "system-preparing", {}),
            crypto::sha384(as_bytes(msg)));
  EXPECT_EQ(to_hex(evlog::runtime_event_digest(evlog::kDstackRuntimeEventType, "system-preparing", {})),
            "f9974020ef507068183313d0ca808e0d1ca9b2d1ad0c61f5784e7157c362c06536f5ddacdad4451693f48fcc72fff624");
  crypto::Digest48 d = crypto::sha384(as_bytes(std::string_view("x")));
  crypto::Digest48 r{};
  evlog::extend_rtmr(r, d);
  Bytes both(48, 0);
  both.insert(both.end(), d.begin(), d.end());
  EXPECT_EQ(r, crypto::sha384(both));
  auto rs = evlog::replay(std::vector<evlog::Measurement>{{2, d}});
  EXPECT_EQ(rs[2], r);
  EXPECT_EQ(rs[0], crypto::Digest48{});
  EXPECT_THROW(evlog::replay(std::vector<evlog::Measurement>{{4, d}}), std::invalid_argument);
}

TEST(PercentDecode, GoodBadTruncatedPlusAndNul) {
  EXPECT_EQ(percent_decode("a%2Fb%2fc", false), "a/b/c");
  EXPECT_EQ(percent_decode("", false), "");
  EXPECT_EQ(percent_decode("%zz", false), std::nullopt);
  EXPECT_EQ(percent_decode("%4", false), std::nullopt);
  EXPECT_EQ(percent_decode("ab%", true), std::nullopt);
  EXPECT_EQ(percent_decode("%g0", true), std::nullopt);
  EXPECT_EQ(percent_decode("a+b", true), "a b");
  EXPECT_EQ(percent_decode("a+b", false), "a+b");
  EXPECT_EQ(percent_decode("%2B", true), "+");
  auto nul = percent_decode("a%00b", false);
  ASSERT_TRUE(nul);
  EXPECT_EQ(*nul, std::string("a\0b", 3));
  EXPECT_EQ(percent_decode("%E2%9C%93", false), "\xE2\x9C\x93");
}

TEST(QueryString, ParamsPresentAbsentAndUndecodable) {
  const std::string_view q = "nonce=ab%20cd&signing_algo=ed25519&empty=&flag&bad=%zz&signing%5Faddress=0x1&nonce=2";
  EXPECT_EQ(query_param(q, "nonce"), "ab cd");  // the first occurrence
  EXPECT_EQ(query_param(q, "signing_algo"), "ed25519");
  EXPECT_EQ(query_param(q, "empty"), "");
  EXPECT_EQ(query_param(q, "flag"), "");
  EXPECT_EQ(query_param(q, "signing_address"), "0x1");  // keys are decoded before matching
  EXPECT_EQ(query_param(q, "missing"), std::nullopt);
  EXPECT_EQ(query_param(q, "bad"), std::nullopt);
  EXPECT_EQ(find_query_param(q, "bad").state, QueryParam::State::Undecodable);
  EXPECT_TRUE(find_query_param(q, "bad").undecodable());
  EXPECT_EQ(find_query_param(q, "missing").state, QueryParam::State::Absent);
  EXPECT_TRUE(find_query_param(q, "flag").present());
  EXPECT_EQ(find_query_param("", "a").state, QueryParam::State::Absent);
  EXPECT_EQ(query_param("a=1+2", "a"), "1 2");

  auto all = parse_query("a=1&&b=x%2By&c");
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[1], (std::pair<std::string, std::string>{"b", "x+y"}));
  EXPECT_EQ((*all)[2], (std::pair<std::string, std::string>{"c", ""}));
  EXPECT_EQ(parse_query("a=1&b=%4"), std::nullopt);
  EXPECT_EQ(parse_query("%zz=1"), std::nullopt);
}

}  // namespace
}  // namespace pi::protocol
