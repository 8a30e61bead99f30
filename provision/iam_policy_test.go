package provision

import "testing"

func TestPoliciesEqual(t *testing.T) {
	want := policyDocument{Version: policyVersion, Statement: []policyStatement{{
		Effect: "Allow", Action: stringList{"s3:GetObject", "s3:PutObject"}, Resource: stringList{"arn:aws:s3:::b/*"},
		Condition: map[string]map[string]stringList{"StringEquals": {"k": {"v"}}},
	}}}
	tests := []struct {
		name, have string
		want       bool
	}{
		{"same text", want.String(), true},
		{"url-encoded, as AWS returns", "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%5B%22s3%3APutObject%22%2C%22s3%3AGetObject%22%5D%2C%22Resource%22%3A%5B%22arn%3Aaws%3As3%3A%3A%3Ab%2F*%22%5D%2C%22Condition%22%3A%7B%22StringEquals%22%3A%7B%22k%22%3A%22v%22%7D%7D%7D%5D%7D", true},
		{"reordered and reformatted", `{"Statement":[{"Resource":"arn:aws:s3:::b/*","Action":["s3:PutObject","s3:GetObject"],"Effect":"Allow","Condition":{"StringEquals":{"k":["v"]}}}],"Version":"2012-10-17"}`, true},
		{"other resource", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::c/*","Condition":{"StringEquals":{"k":"v"}}}]}`, false},
		{"missing condition", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::b/*"}]}`, false},
		{"not json", `nope`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := policiesEqual(tt.have, want); got != tt.want {
				t.Errorf("policiesEqual(%s) = %v, want %v", tt.have, got, tt.want)
			}
		})
	}
}

func TestSecretAndRepositoryARNs(t *testing.T) {
	for in, want := range map[string]string{
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf":                      "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf:password::":           "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf:password:AWSCURRENT:": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
	} {
		if got := secretARN(in); got != want {
			t.Errorf("secretARN(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/algo:1.2":  "arn:aws:ecr:eu-west-1:123456789012:repository/team/algo",
		"123456789012.dkr.ecr.us-east-1.amazonaws.com/algo@sha256:ab": "arn:aws:ecr:us-east-1:123456789012:repository/algo",
		"public.ecr.aws/docker/library/alpine:3":                      "",
		"alpine:3":                                                    "",
		"ghcr.io/cloudpipe/agent:latest":                              "",
	} {
		got, ok := ecrRepositoryARN(in, "aws")
		if got != want || ok != (want != "") {
			t.Errorf("ecrRepositoryARN(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
