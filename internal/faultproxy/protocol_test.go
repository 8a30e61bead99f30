package faultproxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestLambdaOperation names Lambda's REST requests as the SDK's operations,
// which IAM authorizes under the same names.
func TestLambdaOperation(t *testing.T) {
	tests := []struct {
		method, path, want string
	}{
		{http.MethodPost, "/2015-03-31/functions", "CreateFunction"},
		{http.MethodGet, "/2015-03-31/functions/cp-wf-0", "GetFunction"},
		{http.MethodPost, "/2015-03-31/functions/cp-wf-0/invocations", "Invoke"},
		{http.MethodPut, "/2019-09-25/functions/cp-wf-0/event-invoke-config", "PutFunctionEventInvokeConfig"},
		{http.MethodPost, "/2019-09-25/functions/cp-wf-0/event-invoke-config", "UpdateFunctionEventInvokeConfig"},
		{http.MethodGet, "/2019-09-25/functions/cp-wf-0/event-invoke-config", "GetFunctionEventInvokeConfig"},
		{http.MethodDelete, "/2019-09-25/functions/cp-wf-0/event-invoke-config", "DeleteFunctionEventInvokeConfig"},
		{http.MethodGet, "/2019-09-25/functions/cp-wf-0/event-invoke-config/list", "ListFunctionEventInvokeConfigs"},
		{http.MethodPatch, "/2019-09-25/functions/cp-wf-0/event-invoke-config", "PATCH event-invoke-config"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.path, nil)
		r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260102/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=x")
		if got := Operation(r, nil); got != "Lambda."+tt.want {
			t.Errorf("%s %s: Operation = %q, want %q", tt.method, tt.path, got, "Lambda."+tt.want)
		}
	}
}
