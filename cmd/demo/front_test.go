package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestRescopeInvocation: only kumo's own invocation of a known function of
// another region is signed for that region; clients' requests, and other
// paths, pass as they were sent.
func TestRescopeInvocation(t *testing.T) {
	const kumoAuth = "AWS4-HMAC-SHA256 Credential=kumo/19700101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=internal"
	regions := map[string]string{"cp-far-0": "eu-west-1", "cp-near-0": "us-east-1"}
	for _, tc := range []struct {
		name, path, auth, want string
	}{
		{"kumo invokes a function of eu-west-1", "/2015-03-31/functions/cp-far-0/invocations", kumoAuth,
			"AWS4-HMAC-SHA256 Credential=kumo/19700101/eu-west-1/lambda/aws4_request, SignedHeaders=host, Signature=internal"},
		{"kumo invokes a function of us-east-1", "/2015-03-31/functions/cp-near-0/invocations", kumoAuth, kumoAuth},
		{"kumo invokes an unknown function", "/2015-03-31/functions/cp-gone-0/invocations", kumoAuth, kumoAuth},
		{"a client invokes", "/2015-03-31/functions/cp-far-0/invocations",
			"AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=abc",
			"AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=abc"},
		{"kumo reads a function", "/2015-03-31/functions/cp-far-0", kumoAuth, kumoAuth},
		{"unsigned", "/2015-03-31/functions/cp-far-0/invocations", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://localhost:4566"+tc.path, nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			rescopeInvocation(r, func(fn string) string { return regions[fn] })
			if got := r.Header.Get("Authorization"); got != tc.want {
				t.Errorf("Authorization = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestARNRegion(t *testing.T) {
	for arn, want := range map[string]string{
		"arn:aws:lambda:eu-west-1:000000000000:function:cp-x-0": "eu-west-1",
		"arn:aws:iam::000000000000:role/cp-x-0-lambda":          "",
		"cp-x-0": "",
		"":       "",
	} {
		if got := arnRegion(arn); got != want {
			t.Errorf("arnRegion(%q) = %q, want %q", arn, got, want)
		}
	}
}
