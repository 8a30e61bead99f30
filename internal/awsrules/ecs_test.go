package awsrules_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

// fargateTaskDefinition is a minimal Fargate registration of family with
// ephemeral storage of size GiB (none when 0).
func fargateTaskDefinition(family string, size int32) *ecs.RegisterTaskDefinitionInput {
	in := &ecs.RegisterTaskDefinitionInput{
		Family: aws.String(family), NetworkMode: ecstypes.NetworkModeAwsvpc,
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		Cpu:                     aws.String("256"), Memory: aws.String("512"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("algo"), Image: aws.String("alpine:3.20")}},
	}
	if size != 0 {
		in.EphemeralStorage = &ecstypes.EphemeralStorage{SizeInGiB: size}
	}
	return in
}

// TestRegisterTaskDefinitionRefusesEphemeralStorageOutsideFargatesRange:
// 21 to 200 GiB, or none, are registered; 20 and 201 are a ClientException.
func TestRegisterTaskDefinitionRefusesEphemeralStorageOutsideFargatesRange(t *testing.T) {
	_, cfg := newProxy(t, awsrules.Options{})
	c := ecs.NewFromConfig(cfg)
	family := testenv.UniqueName(t)
	for _, tc := range []struct {
		size int32
		ok   bool
	}{{0, true}, {21, true}, {200, true}, {20, false}, {201, false}, {-1, false}} {
		_, err := c.RegisterTaskDefinition(t.Context(), fargateTaskDefinition(family, tc.size))
		if tc.ok {
			if err != nil {
				t.Errorf("%d GiB: %v", tc.size, err)
			}
			continue
		}
		wantRefused(t, err, http.StatusBadRequest, "ClientException", "")
		if ce := new(ecstypes.ClientException); !errors.As(err, &ce) {
			t.Errorf("%d GiB: err = %T, want *types.ClientException", tc.size, err)
		}
	}
}

// TestKumoRegistersAnyEphemeralStorage shows why the rule above is in the
// proxy: kumo registers 500 GiB.
func TestKumoRegistersAnyEphemeralStorage(t *testing.T) {
	c := ecs.NewFromConfig(direct(testenv.KumoURL(t)))
	if _, err := c.RegisterTaskDefinition(t.Context(), fargateTaskDefinition(testenv.UniqueName(t), 500)); err != nil {
		t.Fatalf("kumo refused 500 GiB (%v): the rule may no longer be needed", err)
	}
}
