package provision

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

func TestCodeDiffers(t *testing.T) {
	const want, other = "d2FudA==", "b3RoZXI="
	// kumo's CodeSha256 of code from S3: that of no bytes.
	const emulatorEmpty = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	fn := func(sum string, arch lambdatypes.Architecture) *lambdatypes.FunctionConfiguration {
		c := &lambdatypes.FunctionConfiguration{CodeSha256: aws.String(sum)}
		if arch != "" {
			c.Architectures = []lambdatypes.Architecture{arch}
		}
		return c
	}
	tests := []struct {
		name     string
		have     *lambdatypes.FunctionConfiguration
		recorded string
		arch     string
		differs  bool
	}{
		{"recorded and reported match", fn(want, "x86_64"), want, "x86_64", false},
		{"recorded matches, emulator reports nothing useful", fn(emulatorEmpty, "x86_64"), want, "x86_64", false},
		{"recorded matches, reported is a stale hash", fn(other, "x86_64"), want, "x86_64", false},
		{"recorded is an older release", fn(want, "x86_64"), other, "x86_64", true},
		{"no record, reported matches", fn(want, "x86_64"), "", "x86_64", false},
		{"no record, reported differs", fn(other, "x86_64"), "", "x86_64", true},
		{"no record, emulator reports the empty hash", fn(emulatorEmpty, "x86_64"), "", "x86_64", true},
		{"no record, nothing reported", &lambdatypes.FunctionConfiguration{}, "", "x86_64", true},
		{"other architecture", fn(want, "arm64"), want, "x86_64", true},
		{"no architecture reported means x86_64", fn(want, ""), want, "x86_64", false},
		{"no architecture reported, arm64 wanted", fn(want, ""), want, "arm64", true},
	}
	for _, tt := range tests {
		if got := codeDiffers(tt.have, tt.recorded, want, tt.arch); got != tt.differs {
			t.Errorf("%s: codeDiffers = %v, want %v", tt.name, got, tt.differs)
		}
	}
}
