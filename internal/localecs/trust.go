package localecs

import (
	"context"
	"strings"
)

// ecsTasksPrincipal is the service principal that assumes a task's task
// and execution roles.
const ecsTasksPrincipal = "ecs-tasks.amazonaws.com"

// trustFailure is why ECS could not assume a role of the task definition
// ref for a task in region, or "" when it could (or when Options.AssumeRole
// is unset). ECS assumes the execution role to start the task and the task
// role to give its containers credentials, as ecs-tasks.amazonaws.com with
// aws:SourceAccount and aws:SourceArn set:
// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html
// Which ARN ECS passes as aws:SourceArn is not documented beyond its being
// one of ECS's own in the account and region (the documented condition is
// ArnLike arn:aws:ecs:REGION:ACCOUNT:*); the cluster's is passed. The
// reason is the one ECS gives when a role's trust relationship does not
// let it in.
func (p *Proxy) trustFailure(ctx context.Context, ref, region, cluster string) string {
	if p.opts.AssumeRole == nil {
		return ""
	}
	p.mu.Lock()
	var roles []string
	account := ""
	if td := p.lookupDefLocked(ref); td != nil {
		_, account = arnRegionAccount(td.arn)
		for _, r := range []string{td.execRole, td.taskRole} {
			if r != "" {
				roles = append(roles, r)
			}
		}
	}
	p.mu.Unlock()
	keys := map[string]string{
		"aws:SourceAccount": account,
		"aws:SourceArn":     "arn:aws:ecs:" + region + ":" + account + ":cluster/" + cluster[strings.LastIndex(cluster, "/")+1:],
	}
	for _, role := range roles {
		if err := p.opts.AssumeRole(ctx, role, ecsTasksPrincipal, keys); err != nil {
			return "ECS was unable to assume the role '" + role + "' that was provided for this task. Please verify that the role being passed " +
				"has the proper trust relationship and permissions and that your IAM user has permissions to pass this role. (" + err.Error() + ")"
		}
	}
	return ""
}
