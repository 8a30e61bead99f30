package awsrules

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/cloudpipe/cloudpipe/internal/iamsim"
)

// AssumeRole asks whether the service principal service ("ecs-tasks.amazonaws.com")
// may assume the role roleARN names, with the condition keys a service
// passes when it does (aws:SourceAccount, aws:SourceArn): whether the
// role's trust policy allows it, as IAM decides when a service assumes a
// role a customer passed it.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html
// It returns nil when the trust policy allows it (or IAM is off), and a
// *Denied naming the role and the keys when it does not.
func (p *Proxy) AssumeRole(ctx context.Context, roleARN, service string, keys map[string]string) error {
	if p.iam == nil {
		return nil
	}
	a := p.iam
	name := roleARN[strings.LastIndex(roleARN, "/")+1:]
	out, err := a.target.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	if err != nil {
		return fmt.Errorf("awsrules: read the trust policy of role %s: %w", name, err)
	}
	// IAM answers the document URL-encoded (kumo raw).
	doc, err := url.QueryUnescape(aws.ToString(out.Role.AssumeRolePolicyDocument))
	if err != nil {
		doc = aws.ToString(out.Role.AssumeRolePolicyDocument)
	}
	// The role's ARN in the emulated account (kumo's IAM says another).
	arn := "arn:aws:iam::" + a.cfg.Account + ":role" + aws.ToString(out.Role.Path) + name
	ctxKeys := make(map[string]any, len(keys))
	for k, v := range keys {
		ctxKeys[k] = v
	}
	res, err := a.cfg.Evaluator.Evaluate(iamsim.Request{
		Principal: service, ResourcePolicy: json.RawMessage(doc),
		Action: "sts:AssumeRole", Resource: arn, Context: ctxKeys,
	})
	if err != nil {
		return fmt.Errorf("awsrules: %w", err)
	}
	if res.Decision == iamsim.Allowed {
		return nil
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k+"="+keys[k])
	}
	sort.Strings(names)
	return &Denied{Message: fmt.Sprintf("the trust policy of role %s does not let %s assume it with %s", arn, service, strings.Join(names, ", "))}
}
