package awsrules_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

// TestAssumeRoleEvaluatesTheTrustPolicy: a service may assume a role only
// as its trust policy says: the service named, and the condition keys the
// service passes matching.
func TestAssumeRoleEvaluatesTheTrustPolicy(t *testing.T) {
	ctx := t.Context()
	p, operator, _ := iamProxy(t, doc(`{"Effect":"Allow","Action":"sqs:ListQueues","Resource":"*"}`))
	name := testenv.UniqueName(t)
	admin := iam.NewFromConfig(operator)
	keys := map[string]string{"aws:SourceAccount": kumoAccount, "aws:SourceArn": "arn:aws:ecs:eu-west-1:" + kumoAccount + ":cluster/cloudpipe"}
	for i, tc := range []struct {
		name, trust string
		ok          bool
	}{
		{"plain", `{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}`, true},
		{"account and region", `{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole",` +
			`"Condition":{"StringEquals":{"aws:SourceAccount":"` + kumoAccount + `"},"ArnLike":{"aws:SourceArn":"arn:aws:ecs:eu-west-1:` + kumoAccount + `:*"}}}`, true},
		{"another service", `{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}`, false},
		{"another account", `{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole",` +
			`"Condition":{"StringEquals":{"aws:SourceAccount":"111122223333"}}}`, false},
		{"another region", `{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole",` +
			`"Condition":{"ArnLike":{"aws:SourceArn":"arn:aws:ecs:us-east-1:` + kumoAccount + `:*"}}}`, false},
	} {
		role, err := admin.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(fmt.Sprintf("%s-%d", name, i)),
			AssumeRolePolicyDocument: aws.String(string(doc(tc.trust)))})
		if err != nil {
			t.Fatal(err)
		}
		err = p.AssumeRole(ctx, aws.ToString(role.Role.Arn), "ecs-tasks.amazonaws.com", keys)
		var denied *awsrules.Denied
		if tc.ok && err != nil || !tc.ok && !errors.As(err, &denied) {
			t.Errorf("%s: AssumeRole = %v, want allowed %v", tc.name, err, tc.ok)
		}
	}
}
