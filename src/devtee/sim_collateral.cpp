#include "devtee/sim_collateral.hpp"

#include <boost/json.hpp>
#include <ctime>

#include <fmt/format.h>

#include "devtee/sim_quote.hpp"

namespace pi::devtee {
namespace {

namespace json = boost::json;

json::array svn_components(const std::array<std::uint8_t, 16>& svns) {
  json::array a;
  for (auto s : svns) a.push_back(json::object{{"svn", s}});
  return a;
}

}  // namespace

std::string rfc3339(std::int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  return fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
}

SimCollateral make_sim_collateral(const TestPki& pki, std::int64_t now) {
  const std::string issue = rfc3339(now - 86400), next = rfc3339(now + 30LL * 86400);
  std::array<std::uint8_t, 16> sgx{};
  std::copy(kSimCpuSvn.begin(), kSimCpuSvn.end(), sgx.begin());
  std::array<std::uint8_t, 16> tdx{};
  std::copy(kSimTeeTcbSvn.begin(), kSimTeeTcbSvn.end(), tdx.begin());

  json::object tcb;
  tcb["id"] = "TDX";
  tcb["version"] = 3;
  tcb["issueDate"] = issue;
  tcb["nextUpdate"] = next;
  tcb["fmspc"] = to_hex(kSimFmspc);
  tcb["pceId"] = to_hex(kSimPceId);
  tcb["tcbType"] = 0;
  tcb["tcbEvaluationDataNumber"] = 1;
  tcb["tdxModule"] = json::object{
      {"mrsigner", std::string(96, '0')}, {"attributes", "0000000000000000"}, {"attributesMask", "FFFFFFFFFFFFFFFF"}};
  json::object level_tcb{
      {"sgxtcbcomponents", svn_components(sgx)}, {"pcesvn", kSimPceSvn}, {"tdxtcbcomponents", svn_components(tdx)}};
  tcb["tcbLevels"] = json::array{
      json::object{{"tcb", std::move(level_tcb)}, {"tcbDate", issue}, {"tcbStatus", "UpToDate"}, {"simulated", true}}};

  json::object qe;
  qe["id"] = "TD_QE";
  qe["version"] = 2;
  qe["issueDate"] = issue;
  qe["nextUpdate"] = next;
  qe["tcbEvaluationDataNumber"] = 1;
  qe["miscselect"] = "00000000";
  qe["miscselectMask"] = "FFFFFFFF";
  qe["attributes"] = "11000000000000000000000000000000";
  qe["attributesMask"] = "FBFFFFFFFFFFFFFF0000000000000000";
  qe["mrsigner"] = to_hex(sim_qe_mr_signer());
  qe["isvprodid"] = kSimQeIsvProdId;
  qe["tcbLevels"] = json::array{
      json::object{{"tcb", json::object{{"isvsvn", kSimQeIsvSvn}}}, {"tcbDate", issue}, {"tcbStatus", "UpToDate"}}};

  SimCollateral c;
  c.tcb_info = json::serialize(tcb);
  c.qe_identity = json::serialize(qe);
  c.tcb_info_signature = sign_p256_raw(pki.tcb_key_pem, as_bytes(c.tcb_info));
  c.qe_identity_signature = sign_p256_raw(pki.tcb_key_pem, as_bytes(c.qe_identity));
  return c;
}

std::string sim_collateral_json(const TestPki& pki, std::int64_t now) {
  SimCollateral c = make_sim_collateral(pki, now);
  json::object o;
  o["simulated"] = true;
  o["pck_crl_issuer_chain"] = pki.pck_crl_issuer_chain_pem();
  o["root_ca_crl"] = to_hex(pki.root_crl_der);
  o["pck_crl"] = to_hex(pki.pck_crl_der);
  o["tcb_info_issuer_chain"] = pki.tcb_chain_pem();
  o["tcb_info"] = c.tcb_info;
  o["tcb_info_signature"] = to_hex(c.tcb_info_signature);
  o["qe_identity_issuer_chain"] = pki.tcb_chain_pem();
  o["qe_identity"] = c.qe_identity;
  o["qe_identity_signature"] = to_hex(c.qe_identity_signature);
  return json::serialize(o);
}

}  // namespace pi::devtee
