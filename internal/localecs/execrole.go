package localecs

import (
	"context"
	"regexp"
	"strings"
)

// initFailure is why ECS could not initialize a task of the task
// definition ref in region with its execution role, or "" when it could
// (or when Options.Authorize is unset). The log stream is the task's
// region's: kumo's task definition ARN says us-east-1 whatever the region. The reasons are ECS's:
// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/resource-initialization-error.html
// and the role's duties:
// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html
func (p *Proxy) initFailure(ctx context.Context, ref, region string) string {
	if p.opts.Authorize == nil {
		return ""
	}
	p.mu.Lock()
	td := p.lookupDefLocked(ref)
	var (
		role string
		c    containerDef
		ok   bool
	)
	if td != nil {
		role, ok = td.execRole, true
		c, ok = td.runContainer()
	}
	account := ""
	if td != nil {
		_, account = arnRegionAccount(td.arn)
	}
	p.mu.Unlock()
	if !ok {
		return "" // RunTask answers the missing definition itself
	}
	roleName := role[strings.LastIndex(role, "/")+1:]
	need := func(action, resource string) error {
		if role == "" {
			return errNoExecutionRole(action)
		}
		return p.opts.Authorize(ctx, roleName, action, resource)
	}
	if repo, ok := ecrRepository(c.Image); ok {
		for _, a := range []struct{ action, resource string }{
			{"ecr:GetAuthorizationToken", "*"},
			{"ecr:BatchGetImage", repo},
			{"ecr:GetDownloadUrlForLayer", repo},
		} {
			if err := need(a.action, a.resource); err != nil {
				return "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: " +
					"unable to retrieve ecr registry auth: service call has been retried 3 time(s): AccessDeniedException: " + err.Error()
			}
		}
	}
	for _, s := range c.Secrets {
		if !strings.HasPrefix(s.ValueFrom, "arn:") || !strings.Contains(s.ValueFrom, ":secretsmanager:") {
			continue // SSM parameters: cloudpipe references none
		}
		if err := need("secretsmanager:GetSecretValue", secretOf(s.ValueFrom)); err != nil {
			return "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: " +
				"unable to retrieve secret from asm: service call has been retried 1 time(s): AccessDeniedException: " + err.Error()
		}
	}
	if lc := c.LogConfiguration; lc != nil && lc.LogDriver == "awslogs" && lc.Options["awslogs-group"] != "" {
		// The stream is PREFIX/CONTAINER/TASK-ID; the task's ID is not
		// chosen yet, and a policy grants the prefix's streams.
		stream := lc.Options["awslogs-stream-prefix"] + "/" + c.Name + "/" + strings.Repeat("0", 32)
		arn := "arn:aws:logs:" + region + ":" + account + ":log-group:" + lc.Options["awslogs-group"] + ":log-stream:" + stream
		for _, action := range []string{"logs:CreateLogStream", "logs:PutLogEvents"} {
			if err := need(action, arn); err != nil {
				return "ResourceInitializationError: failed to validate logger args: create stream has been retried 1 times: " +
					"failed to create Cloudwatch log stream: AccessDeniedException: " + err.Error()
			}
		}
	}
	return ""
}

type errNoExecutionRole string

func (e errNoExecutionRole) Error() string {
	return "the task definition has no execution role, which " + string(e) + " needs"
}

// secretOf strips what a valueFrom may add after a secret's ARN
// (":json-key:version-stage:version-id"): IAM authorizes the secret.
func secretOf(valueFrom string) string {
	parts := strings.SplitN(valueFrom, ":", 8)
	if len(parts) < 7 {
		return valueFrom
	}
	return strings.Join(parts[:7], ":")
}

// ecrImage matches a private ECR image: ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG|@DIGEST].
var ecrImage = regexp.MustCompile(`^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^:@]+)`)

// ecrRepository returns the repository ARN of a private ECR image.
func ecrRepository(image string) (string, bool) {
	m := ecrImage.FindStringSubmatch(image)
	if m == nil {
		return "", false
	}
	return "arn:aws:ecr:" + m[2] + ":" + m[1] + ":repository/" + m[3], true
}

// arnRegionAccount returns an ARN's region and account.
func arnRegionAccount(arn string) (region, account string) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 {
		return "us-east-1", ""
	}
	return parts[3], parts[4]
}
