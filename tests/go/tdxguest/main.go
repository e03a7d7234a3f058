// Command tdxguest judges a dev-tee quote with Google's go-tdx-guest, the TDX library teep uses, as an
// outside verifier would: parse it (abi.QuoteToProto), read the PCK certificate's Intel SGX extensions
// (pcs.PckCertificateExtensions), and verify it (verify.TdxQuote) three ways:
//
//   - with the dev-tee TEST root as the trusted root, no collateral, no network;
//   - with the TEST root and dev-tee's simulated collateral (TCB info, QE identity, both CRLs) served
//     to go-tdx-guest's collateral getter from the collateral file instead of Intel's PCS, with
//     revocation checks on;
//   - with go-tdx-guest's embedded Intel root: this must FAIL, and only at the root of trust.
//
// It prints one JSON object with what it found; tests/integration/test_go_tdx_guest.py judges it.
// SIMULATED evidence: passing here proves the evidence is well formed, never that it came from a TEE.
package main

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/verify"
)

// collateral is dev-tee's STATE/collateral.json (dcap-qvl's QuoteCollateralV3 JSON plus "simulated").
type collateral struct {
	PckCrlIssuerChain     string `json:"pck_crl_issuer_chain"`
	RootCaCrl             string `json:"root_ca_crl"`
	PckCrl                string `json:"pck_crl"`
	TcbInfoIssuerChain    string `json:"tcb_info_issuer_chain"`
	TcbInfo               string `json:"tcb_info"`
	TcbInfoSignature      string `json:"tcb_info_signature"`
	QeIdentityIssuerChain string `json:"qe_identity_issuer_chain"`
	QeIdentity            string `json:"qe_identity"`
	QeIdentitySignature   string `json:"qe_identity_signature"`
}

// pcsGetter answers go-tdx-guest's Intel PCS requests from the collateral file: the shapes of Intel's
// PCS v4 answers (issuer chains URL-escaped in headers, signed JSON bodies, DER CRLs). No network.
type pcsGetter struct {
	col        collateral
	rootCrlURL []string
	requested  []string
}

func (g *pcsGetter) Get(u string) (map[string][]string, []byte, error) {
	g.requested = append(g.requested, u)
	switch {
	case strings.HasPrefix(u, "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?"):
		body := fmt.Sprintf(`{"tcbInfo":%s,"signature":%q}`, g.col.TcbInfo, g.col.TcbInfoSignature)
		return map[string][]string{"Tcb-Info-Issuer-Chain": {url.QueryEscape(g.col.TcbInfoIssuerChain)}}, []byte(body), nil
	case u == "https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity":
		body := fmt.Sprintf(`{"enclaveIdentity":%s,"signature":%q}`, g.col.QeIdentity, g.col.QeIdentitySignature)
		return map[string][]string{"Sgx-Enclave-Identity-Issuer-Chain": {url.QueryEscape(g.col.QeIdentityIssuerChain)}},
			[]byte(body), nil
	case strings.HasPrefix(u, "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?"):
		der, err := hex.DecodeString(g.col.PckCrl)
		return map[string][]string{"Sgx-Pck-Crl-Issuer-Chain": {url.QueryEscape(g.col.PckCrlIssuerChain)}}, der, err
	}
	for _, r := range g.rootCrlURL {
		if u == r {
			der, err := hex.DecodeString(g.col.RootCaCrl)
			return map[string][]string{}, der, err
		}
	}
	return nil, nil, fmt.Errorf("no simulated collateral for %s", u)
}

type result struct {
	Parsed               bool     `json:"parsed"`
	ParseError           string   `json:"parse_error,omitempty"`
	Version              uint32   `json:"version"`
	TeeType              uint32   `json:"tee_type"`
	ReportData           string   `json:"report_data"`
	MrConfigID           string   `json:"mr_config_id"`
	Rtmr3                string   `json:"rtmr3"`
	PckExtensionCount    int      `json:"pck_extension_count"`
	PckExtensionsError   string   `json:"pck_extensions_error,omitempty"`
	FMSPC                string   `json:"fmspc"`
	PCEID                string   `json:"pce_id"`
	PPID                 string   `json:"ppid"`
	PCESvn               uint16   `json:"pce_svn"`
	CPUSvn               string   `json:"cpu_svn"`
	PckIssuerCN          string   `json:"pck_issuer_cn"`
	VerifyTestRoot       string   `json:"verify_test_root"`
	VerifyTestCollateral string   `json:"verify_test_root_collateral"`
	CollateralRequests   []string `json:"collateral_requests"`
	VerifyIntelRoot      string   `json:"verify_intel_root"`
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func main() {
	quotePath := flag.String("quote", "", "file with the quote (hex text or raw bytes)")
	rootPath := flag.String("root", "", "PEM file of the dev-tee TEST root CA")
	colPath := flag.String("collateral", "", "dev-tee STATE/collateral.json (optional)")
	outPath := flag.String("out", "", "write the JSON result here (default: stdout, which go-tdx-guest's logger shares)")
	flag.Parse()
	if *quotePath == "" || *rootPath == "" {
		fmt.Fprintln(os.Stderr, "usage: tdxguest -quote FILE -root ROOT.pem [-collateral collateral.json] [-out FILE]")
		os.Exit(2)
	}
	raw, err := os.ReadFile(*quotePath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if b, herr := hex.DecodeString(strings.TrimSpace(string(raw))); herr == nil {
		raw = b
	}
	rootPEM, err := os.ReadFile(*rootPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	block, _ := pem.Decode(rootPEM)
	if block == nil {
		fmt.Fprintln(os.Stderr, "no PEM certificate in", *rootPath)
		os.Exit(2)
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)

	var res result
	parsed, err := abi.QuoteToProto(raw)
	if err != nil {
		res.ParseError = err.Error()
		emit(res, *outPath)
		return
	}
	q, ok := parsed.(*pb.QuoteV4)
	if !ok {
		res.ParseError = fmt.Sprintf("not a QuoteV4: %T", parsed)
		emit(res, *outPath)
		return
	}
	res.Parsed = true
	res.Version = q.GetHeader().GetVersion()
	res.TeeType = q.GetHeader().GetTeeType()
	res.ReportData = hex.EncodeToString(q.GetTdQuoteBody().GetReportData())
	res.MrConfigID = hex.EncodeToString(q.GetTdQuoteBody().GetMrConfigId())
	if r := q.GetTdQuoteBody().GetRtmrs(); len(r) == 4 {
		res.Rtmr3 = hex.EncodeToString(r[3])
	}

	chainPEM := q.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain()
	if leafBlock, _ := pem.Decode(chainPEM); leafBlock != nil {
		if leaf, perr := x509.ParseCertificate(leafBlock.Bytes); perr == nil {
			res.PckExtensionCount = len(leaf.Extensions)
			res.PckIssuerCN = leaf.Issuer.CommonName
			exts, eerr := pcs.PckCertificateExtensions(leaf)
			if eerr != nil {
				res.PckExtensionsError = eerr.Error()
			} else {
				res.FMSPC, res.PCEID, res.PPID = exts.FMSPC, exts.PCEID, exts.PPID
				res.PCESvn = exts.TCB.PCESvn
				res.CPUSvn = hex.EncodeToString(exts.TCB.CPUSvnComponents)
			}
		} else {
			res.PckExtensionsError = perr.Error()
		}
	}

	now := time.Now()
	// 1. the TEST root, no collateral, no network
	res.VerifyTestRoot = errText(verify.TdxQuote(q, &verify.Options{TrustedRoots: pool, Now: now}))

	// 2. the TEST root with the simulated collateral, revocation checked
	if *colPath != "" {
		var col collateral
		text, rerr := os.ReadFile(*colPath)
		if rerr == nil {
			rerr = json.Unmarshal(text, &col)
		}
		if rerr != nil {
			res.VerifyTestCollateral = "cannot read collateral: " + rerr.Error()
		} else {
			getter := &pcsGetter{col: col, rootCrlURL: root.CRLDistributionPoints}
			opts := &verify.Options{TrustedRoots: pool, Now: now, GetCollateral: true, CheckRevocations: true, Getter: getter}
			res.VerifyTestCollateral = errText(verify.TdxQuote(q, opts))
			res.CollateralRequests = getter.requested
		}
	}

	// 3. go-tdx-guest's embedded Intel SGX root: must fail (the root is a test root)
	res.VerifyIntelRoot = errText(verify.TdxQuote(q, &verify.Options{Now: now}))
	emit(res, *outPath)
}

func emit(res result, path string) {
	out, _ := json.MarshalIndent(res, "", "  ")
	if path == "" {
		fmt.Println(string(out))
		return
	}
	if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
