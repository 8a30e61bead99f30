package provision_test

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/provision"
)

func TestResourceName(t *testing.T) {
	if got := provision.ResourceName("foo", 2); got != "cp-foo-2" {
		t.Errorf("ResourceName(foo, 2) = %s, want cp-foo-2", got)
	}
}

func TestDefaultStateBucket(t *testing.T) {
	for _, c := range []struct{ account, region, want string }{
		{"000000000000", "us-east-1", "cloudpipe-state-000000000000-us-east-1"},
		{"123456789012", "ap-southeast-2", "cloudpipe-state-123456789012-ap-southeast-2"},
	} {
		got := provision.DefaultStateBucket(c.account, c.region)
		if got != c.want || !validBucket.MatchString(got) {
			t.Errorf("DefaultStateBucket(%s, %s) = %s, want %s, a valid bucket name", c.account, c.region, got, c.want)
		}
	}
}

// validBucket follows S3's naming rules for general purpose buckets.
var validBucket = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

func TestIntermediateBucketName(t *testing.T) {
	long := strings.Repeat("w", 32) // the longest valid workflow name
	tests := []struct {
		workflow        string
		stage           int
		account, region string
	}{
		{"foo", 0, "123456789012", "us-east-1"},
		{"foo", 1, "123456789012", "us-east-1"},
		{"foo", 0, "123456789013", "us-east-1"},
		{"foo", 0, "123456789012", "eu-west-1"},
		{"foo-bar-9", 12, "123456789012", "us-east-1"},
		{"a", 0, "123456789012", "us-east-1"},
		{long, 0, "123456789012", "us-east-1"},
		{long, 999, "123456789012", "ap-southeast-2"},
		{strings.Repeat("x-", 30) + "y", 7, "123456789012", "us-east-1"}, // longer than validation allows: still valid
		{strings.Repeat("x-", 30) + "z", 7, "123456789012", "us-east-1"},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		key := fmt.Sprintf("%s/%d/%s/%s", tt.workflow, tt.stage, tt.account, tt.region)
		t.Run(key, func(t *testing.T) {
			name := provision.IntermediateBucketName(tt.workflow, tt.stage, tt.account, tt.region)
			if again := provision.IntermediateBucketName(tt.workflow, tt.stage, tt.account, tt.region); again != name {
				t.Errorf("not deterministic: %s then %s", name, again)
			}
			if len(name) > 63 || !validBucket.MatchString(name) || strings.Contains(name, "..") ||
				net.ParseIP(name) != nil || strings.HasPrefix(name, "xn--") || strings.HasPrefix(name, "sthree-") {
				t.Errorf("%s (%d chars) is not a valid S3 bucket name", name, len(name))
			}
			if !strings.HasPrefix(name, "cp-") {
				t.Errorf("%s does not start with cp-", name)
			}
			if other, dup := seen[name]; dup {
				t.Errorf("%s is also the name for %s", name, other)
			}
			seen[name] = key
		})
	}
	if got, want := provision.IntermediateBucketName("foo", 0, "123456789012", "us-east-1"), "cp-foo-0-"; !strings.HasPrefix(got, want) {
		t.Errorf("name %s, want prefix %s", got, want)
	}
}
