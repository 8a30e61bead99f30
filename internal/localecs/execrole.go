package localecs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
)

// initFailure is why ECS could not initialize a task of the task
// definition ref in region with its execution role, or "" when it could
// (or when Options.Authorize is unset). The log stream is the task's
// region's: kumo's task definition ARN says us-east-1 whatever the region.
func (p *Proxy) initFailure(ctx context.Context, ref, region string) string {
	p.mu.Lock()
	td := p.lookupDefLocked(ref)
	var (
		c  containerDef
		ok bool
	)
	role, account := "", ""
	if td != nil {
		role = td.execRole
		c, ok = td.runContainer()
		_, account = arnRegionAccount(td.arn)
	}
	p.mu.Unlock()
	if !ok {
		return "" // RunTask answers the missing definition itself
	}
	// A Fargate task has nothing but its execution role to act with.
	return p.containerInitFailure(ctx, initRoles{exec: role, pull: role, logs: role, required: true}, c, region, account)
}

// initRoles are the roles ECS acts as before a container starts: exec
// reads its secrets, pull authenticates to ECR and logs creates its awslogs
// stream. On Fargate all three are the task's execution role; on EC2 the
// container instance's role stands in for pull and logs when the task has
// no execution role.
type initRoles struct {
	exec, pull, logs string
	// required makes an empty role a denial (Fargate: no execution role, no
	// secrets, no ECR, no logs); otherwise an empty pull or logs role is
	// not checked (an EC2 instance role the proxy does not know). Secrets
	// always need the execution role.
	required bool
}

// containerInitFailure is why ECS could not initialize container c with
// roles in region and account, or "" when it could (or when
// Options.Authorize is unset). The reasons are ECS's:
// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/resource-initialization-error.html
// and the role's duties:
// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html
func (p *Proxy) containerInitFailure(ctx context.Context, roles initRoles, c containerDef, region, account string) string {
	if p.opts.Authorize == nil {
		return ""
	}
	need := func(role string, required bool, action, resource string) error {
		if role == "" {
			if required {
				return errNoExecutionRole(action)
			}
			return nil
		}
		return p.opts.Authorize(ctx, role[strings.LastIndex(role, "/")+1:], action, resource)
	}
	if repo, ok := ecrRepository(c.Image); ok {
		for _, a := range []struct{ action, resource string }{
			{"ecr:GetAuthorizationToken", "*"},
			{"ecr:BatchGetImage", repo},
			{"ecr:GetDownloadUrlForLayer", repo},
		} {
			if err := need(roles.pull, roles.required, a.action, a.resource); err != nil {
				return "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: " +
					"unable to retrieve ecr registry auth: service call has been retried 3 time(s): AccessDeniedException: " + err.Error()
			}
		}
	}
	for _, s := range c.Secrets {
		if !strings.HasPrefix(s.ValueFrom, "arn:") || !strings.Contains(s.ValueFrom, ":secretsmanager:") {
			continue // SSM parameters: cloudpipe references none
		}
		if err := need(roles.exec, true, "secretsmanager:GetSecretValue", secretOf(s.ValueFrom)); err != nil {
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
			if err := need(roles.logs, roles.required, action, arn); err != nil {
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

// secretEnv reads the secrets a task of the task definition ref gets as
// environment variables, as ECS injects them at start: each valueFrom is a
// secret's ARN, optionally followed by ":json-key:version-stage:version-id";
// with a JSON key the variable holds that field of the secret's JSON.
// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/secrets-envvar-secrets-manager.html
// A secret that cannot be read stops the task (ResourceInitializationError),
// as it does on ECS.
func (p *Proxy) secretEnv(ctx context.Context, ref string) (map[string]string, string) {
	p.mu.Lock()
	var refs []secretRef
	if td := p.lookupDefLocked(ref); td != nil {
		if c, ok := td.runContainer(); ok {
			refs = c.Secrets
		}
	}
	p.mu.Unlock()
	return p.readSecrets(ctx, refs)
}

// readSecrets reads the secrets refs name, as secretEnv describes, and
// returns them by variable, or the reason the container cannot start.
func (p *Proxy) readSecrets(ctx context.Context, refs []secretRef) (map[string]string, string) {
	env := map[string]string{}
	for _, s := range refs {
		if !strings.Contains(s.ValueFrom, ":secretsmanager:") {
			continue
		}
		parts := strings.SplitN(s.ValueFrom, ":", 10)
		key := ""
		if len(parts) > 7 {
			key = parts[7]
		}
		val, err := p.readSecret(ctx, secretOf(s.ValueFrom))
		if err == nil && key != "" {
			var fields map[string]any
			if err = json.Unmarshal([]byte(val), &fields); err == nil {
				v, ok := fields[key]
				if !ok {
					err = fmt.Errorf("the secret has no JSON key %q", key)
				}
				val = fmt.Sprint(v)
			}
		}
		if err != nil {
			return nil, "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: " +
				"unable to retrieve secret from asm: " + secretOf(s.ValueFrom) + ": " + err.Error()
		}
		env[s.Name] = val
	}
	return env, ""
}

// readSecret reads a secret's string from kumo, as ECS's agent does with
// the execution role (authorized before, by Authorize).
func (p *Proxy) readSecret(ctx context.Context, id string) (string, error) {
	body, _ := json.Marshal(map[string]string{"SecretId": id})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.upstream.String()+"/", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
	// kumo routes by the credential scope's service and checks no signature.
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=localecs/20240101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := p.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GetSecretValue: %s: %s", resp.Status, out)
	}
	var v struct{ SecretString string }
	if err := json.Unmarshal(out, &v); err != nil {
		return "", fmt.Errorf("GetSecretValue: %w", err)
	}
	return v.SecretString, nil
}
