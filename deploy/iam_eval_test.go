package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/iamsim"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

// This file reads the policy files strictly and asks IAM about single
// requests. What the agent's whole life cycle needs is authorized request by
// request by the AWS rules (TestDeployLifecycle).

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

// decision is IAM's answer for one request.
type decision struct {
	Allowed bool
	By      string // Sid of the statement that allowed it
}

// evaluate asks IAM, through the evaluator the AWS rules decide with,
// whether a principal holding the policy files allows r.
func evaluate(t *testing.T, r authzRequest, files ...string) decision {
	t.Helper()
	var docs []json.RawMessage
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, data)
	}
	ctx := map[string]any{}
	for k, v := range r.Context {
		ctx[k] = v
	}
	var keyPolicy json.RawMessage
	if strings.HasPrefix(r.Action, "kms:") {
		// A KMS key's own policy decides too: the default one lets the
		// account's IAM policies count, so the agent's policy is what
		// decides here.
		// https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html#key-policy-default-allow-root-enable-iam
		keyPolicy = json.RawMessage(`{"Version":"2012-10-17","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow",` +
			`"Principal":{"AWS":"arn:aws:iam::` + testenv.Account + `:root"},"Action":"kms:*","Resource":"*"}]}`)
	}
	res, err := testenv.IAMEvaluator(t).Evaluate(iamsim.Request{
		Principal: "arn:aws:iam::" + testenv.Account + ":role/cloudpipe-agent",
		Policies:  docs, ResourcePolicy: keyPolicy, Action: r.Action, Resource: r.Resource, Context: ctx,
	})
	if err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	d := decision{Allowed: res.Decision == iamsim.Allowed}
	if d.Allowed && len(res.Grants) > 0 {
		d.By = res.Grants[0].Sid
	}
	return d
}
