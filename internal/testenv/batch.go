package testenv

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// InstanceProfile makes in kumo, as the operator, a role trusting EC2 and
// an instance profile holding it, both named name+"-instance", as
// bootstrap makes cp-batch-instance for Batch's compute environments, and
// returns that name.
func InstanceProfile(tb testing.TB, name string) string {
	tb.Helper()
	ctx := tb.Context()
	name += "-instance"
	admin := iam.NewFromConfig(Kumo(tb))
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	if _, err := admin.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trust)}); err != nil {
		tb.Fatal(err)
	}
	if _, err := admin.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(name)}); err != nil {
		tb.Fatal(err)
	}
	if _, err := admin.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{
		InstanceProfileName: aws.String(name), RoleName: aws.String(name)}); err != nil {
		tb.Fatal(err)
	}
	return name
}
