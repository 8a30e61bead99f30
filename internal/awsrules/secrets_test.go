package awsrules_test

import (
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
)

func TestSecretARNMatches(t *testing.T) {
	const (
		base    = "arn:aws:secretsmanager:us-east-1:111122223333:secret:"
		full    = base + "db-AbCdEf"
		partial = base + "db"
	)
	tests := []struct {
		name           string
		policyResource string
		requestedARN   string
		want           bool
	}{
		{"full ARN in the policy, full ARN requested", full, full, true},
		{"full ARN in the policy, ARN without the suffix requested", full, partial, false},
		{"ARN without the suffix in the policy, full ARN requested", partial, full, false},
		{"-?????? in the policy matches the suffix", partial + "-??????", full, true},
		{"-?????? in the policy needs the suffix", partial + "-??????", partial, false},
		{"-?????? in the policy matches no longer name", partial + "-??????", base + "db-prod-AbCdEf", false},
		{"a trailing * matches the suffix", partial + "*", full, true},
		{"a trailing * also matches another secret", partial + "*", base + "dbadmin-AbCdEf", true},
		{"* in the policy matches every ARN", "*", full, true},
		{"* within a segment", "arn:aws:secretsmanager:*:111122223333:secret:db-??????", full, true},
		{"another account", "arn:aws:secretsmanager:us-east-1:444455556666:secret:db-??????", full, false},
		{"case matters", base + "DB-??????", full, false},
		{"empty policy resource", "", full, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := awsrules.SecretARNMatches(tt.policyResource, tt.requestedARN); got != tt.want {
				t.Errorf("SecretARNMatches(%q, %q) = %v, want %v", tt.policyResource, tt.requestedARN, got, tt.want)
			}
		})
	}
}
