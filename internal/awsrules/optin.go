package awsrules

import (
	"net/http"
	"slices"
	"strings"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
)

// checkRegionEnabled refuses a request signed for a region the account has
// not enabled. AWS answers as for credentials it does not know: the
// account's IAM identities do not exist in an opt-in region until it is
// enabled, so STS says InvalidClientTokenId ("The security token included
// in the request is invalid") and the JSON services
// UnrecognizedClientException; nothing names the region.
// https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-regions.html
func (p *Proxy) checkRegionEnabled(r *http.Request) *faultproxy.APIError {
	region := faultproxy.SigningRegion(r)
	if region == "" || !slices.Contains(p.opts.DisabledRegions, region) {
		return nil
	}
	const msg = "The security token included in the request is invalid."
	switch op := faultproxy.Operation(r, nil); {
	case strings.HasPrefix(op, "STS."), strings.HasPrefix(op, "IAM."):
		return &faultproxy.APIError{Status: http.StatusForbidden, Code: "InvalidClientTokenId", Message: msg}
	case strings.HasPrefix(op, "S3."):
		return &faultproxy.APIError{Status: http.StatusForbidden, Code: "InvalidAccessKeyId", Message: "The AWS Access Key Id you provided does not exist in our records."}
	}
	return &faultproxy.APIError{Status: http.StatusBadRequest, Code: "UnrecognizedClientException", Message: msg}
}
