package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// This file is a small model of IAM policy evaluation, enough to check that
// deploy/agent-iam-policy.json allows what the agent does: Allow and Deny
// statements, Action and Resource with * and ? wildcards, and the condition
// operators the policy uses, evaluated against the request context a test
// builds from the SDK input (see authz_test.go). A condition key missing from
// the context makes its condition false, as in IAM: that is how a tag
// condition on an action AWS gives no tags for would deny in production.

// iamPolicy is an identity-based policy document.
type iamPolicy struct {
	Version   string         `json:"Version"`
	Statement []iamStatement `json:"Statement"`
}

type iamStatement struct {
	Sid       string                             `json:"Sid"`
	Effect    string                             `json:"Effect"`
	Action    stringOrList                       `json:"Action"`
	Resource  stringOrList                       `json:"Resource"`
	Condition map[string]map[string]stringOrList `json:"Condition,omitempty"`
}

// stringOrList is an IAM value written as "x" or ["x", "y"].
type stringOrList []string

func (l *stringOrList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = stringOrList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want a string or a list of strings, got %s", b)
	}
	*l = many
	return nil
}

// supportedOperators are the condition operators the model evaluates; a
// policy using another one fails loadPolicy rather than being misjudged.
var supportedOperators = []string{"StringEquals", "StringLike", "ArnEquals", "ArnLike"}

// loadPolicy reads a policy file strictly: unknown fields (a misspelt
// "Actions", a "NotAction" the model does not evaluate) are errors.
func loadPolicy(t *testing.T, file string) iamPolicy {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p iamPolicy
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if p.Version != "2012-10-17" {
		t.Errorf("%s: Version %q, want 2012-10-17 (the only version with policy variables and current semantics)", file, p.Version)
	}
	sids := map[string]bool{}
	for i, s := range p.Statement {
		where := fmt.Sprintf("%s: statement %d (%s)", file, i, s.Sid)
		if s.Sid == "" || sids[s.Sid] {
			t.Errorf("%s: every statement needs a unique Sid", where)
		}
		sids[s.Sid] = true
		if s.Effect != "Allow" && s.Effect != "Deny" {
			t.Errorf("%s: Effect %q", where, s.Effect)
		}
		if len(s.Action) == 0 || len(s.Resource) == 0 {
			t.Errorf("%s: needs Action and Resource", where)
		}
		for _, a := range s.Action {
			if svc, name, ok := strings.Cut(a, ":"); !ok || svc == "" || name == "" || svc != strings.ToLower(svc) {
				t.Errorf("%s: action %q is not service:Name", where, a)
			}
		}
		for _, r := range s.Resource {
			if r != "*" && !strings.HasPrefix(r, "arn:aws:") {
				t.Errorf("%s: resource %q is neither * nor an arn:aws: ARN", where, r)
			}
		}
		for op, kv := range s.Condition {
			if !slices.Contains(supportedOperators, op) {
				t.Errorf("%s: condition operator %s is not modelled by this test; use one of %v", where, op, supportedOperators)
			}
			if len(kv) == 0 {
				t.Errorf("%s: empty %s condition", where, op)
			}
		}
	}
	return p
}

// authzRequest is one authorization IAM makes for an API call: an action on
// a resource with a request context. An API call may need several (tag on
// create, iam:PassRole for the roles it names).
type authzRequest struct {
	Op       string            // the API call, "Lambda.CreateFunction", for messages
	Action   string            // "lambda:CreateFunction"
	Resource string            // an ARN, or "*" for actions without resource-level permissions
	Context  map[string]string // condition keys present in the request
	Why      string            // why this authorization is needed, when it is not obvious
}

func (r authzRequest) String() string {
	s := r.Action + " on " + r.Resource
	if len(r.Context) > 0 {
		keys := make([]string, 0, len(r.Context))
		for k := range r.Context {
			keys = append(keys, k+"="+r.Context[k])
		}
		slices.Sort(keys)
		s += " with " + strings.Join(keys, ", ")
	}
	return s
}

// decision is the outcome of evaluating one request.
type decision struct {
	Allowed bool
	By      string // Sid of the deciding statement
}

// evaluate applies IAM's rule for one identity policy: an explicit Deny wins,
// then any Allow; otherwise the request is implicitly denied.
func (p iamPolicy) evaluate(r authzRequest) decision {
	var allow string
	for _, s := range p.Statement {
		if !s.matches(r) {
			continue
		}
		if s.Effect == "Deny" {
			return decision{Allowed: false, By: s.Sid}
		}
		if allow == "" {
			allow = s.Sid
		}
	}
	return decision{Allowed: allow != "", By: allow}
}

func (s iamStatement) matches(r authzRequest) bool {
	if !slices.ContainsFunc(s.Action, func(a string) bool { return wildcardMatch(strings.ToLower(a), strings.ToLower(r.Action)) }) {
		return false
	}
	if !slices.ContainsFunc(s.Resource, func(p string) bool { return wildcardMatch(p, r.Resource) }) {
		return false
	}
	for op, kv := range s.Condition {
		for key, want := range kv {
			got, ok := r.Context[key]
			if !ok {
				return false // a missing key fails the condition
			}
			if !slices.ContainsFunc(want, func(w string) bool { return conditionMatch(op, w, got) }) {
				return false
			}
		}
	}
	return true
}

func conditionMatch(op, want, got string) bool {
	switch op {
	case "StringEquals", "ArnEquals":
		return want == got
	case "StringLike", "ArnLike":
		return wildcardMatch(want, got)
	}
	return false
}

// wildcardMatch reports whether s matches pattern, where * matches any run of
// characters (none included, '/' and ':' included) and ? any one character,
// as in IAM Action, Resource and *Like conditions. (path.Match would stop *
// at '/', which IAM does not.)
func wildcardMatch(pattern, s string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			rest := strings.TrimLeft(pattern, "*")
			if rest == "" {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if wildcardMatch(rest, s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != pattern[0] {
				return false
			}
		}
		pattern, s = pattern[1:], s[1:]
	}
	return s == ""
}

func TestPolicyWildcards(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "*", true},
		{"*", "arn:aws:s3:::b", true},
		{"arn:aws:s3:::*", "*", false},
		{"arn:aws:s3:::cloudpipe-state-*/inventory/*", "arn:aws:s3:::cloudpipe-state-x/inventory/index.json", true},
		{"arn:aws:s3:::cloudpipe-state-*/inventory/*", "arn:aws:s3:::cloudpipe-state-x/runs/a", false},
		{"arn:aws:iam::*:role/cp-*-lambda", "arn:aws:iam::1:role/cp-wf-0-lambda", true},
		{"arn:aws:iam::*:role/cp-*-lambda", "arn:aws:iam::1:role/cp-wf-0-task", false},
		{"arn:aws:logs:*:*:log-group:/cloudpipe/*", "arn:aws:logs:us-east-1:1:log-group:/cloudpipe/wf", true},
		{"arn:aws:logs:*:*:log-group:/cloudpipe/*", "arn:aws:logs:us-east-1:1:log-group:/aws/lambda/cp-wf-0", false},
		{"s3:get?ucket*", "s3:getbucketnotification", true},
	}
	for _, tt := range tests {
		if got := wildcardMatch(tt.pattern, tt.s); got != tt.want {
			t.Errorf("wildcardMatch(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}
