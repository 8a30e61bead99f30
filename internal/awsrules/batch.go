package awsrules

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// AWS Batch's authorization. Batch is REST-JSON: each operation is a POST
// of a JSON body to /v1/<operation, lowercased>, and the tag operations
// name the resource's ARN in the path, /v1/tags/{resourceArn}
// (faultproxy.Operation names them). The resources are those of the
// Service Authorization Reference, with two exceptions Batch's own guide
// documents for SubmitJob (see batchSkips).
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsbatch.html

// batchVars names the resources of a Batch request.
func (a *authority) batchVars(ctx context.Context, op string, p params) ([]vars, error) {
	switch op {
	case "CreateComputeEnvironment":
		return []vars{{"ComputeEnvironmentName": p.str("computeEnvironmentName")}}, nil
	case "UpdateComputeEnvironment", "DeleteComputeEnvironment":
		return []vars{{"ComputeEnvironmentName": lastOfARN(p.str("computeEnvironment"), "/")}}, nil
	case "CreateJobQueue", "UpdateJobQueue", "DeleteJobQueue":
		queue := p.str("jobQueueName")
		if op != "CreateJobQueue" {
			queue = lastOfARN(p.str("jobQueue"), "/")
		}
		// A queue's environments are resources of its creation and update.
		out := []vars{{"JobQueueName": queue}}
		orders, _ := p.json["computeEnvironmentOrder"].([]any)
		for _, o := range orders {
			m, _ := o.(map[string]any)
			if ce, _ := m["computeEnvironment"].(string); ce != "" {
				out = append(out, vars{"JobQueueName": queue, "ComputeEnvironmentName": lastOfARN(ce, "/")})
			}
		}
		return out, nil
	case "RegisterJobDefinition":
		return []vars{{"JobDefinitionName": p.str("jobDefinitionName")}}, nil
	case "DeregisterJobDefinition":
		name, rev, _ := strings.Cut(lastOfARN(p.str("jobDefinition"), "/"), ":")
		return []vars{{"JobDefinitionName": name, "Revision": rev}}, nil
	case "SubmitJob":
		name, rev := a.batchDefinition(ctx, p.str("jobDefinition"))
		return []vars{{"JobQueueName": lastOfARN(p.str("jobQueue"), "/"), "JobDefinitionName": name, "Revision": rev}}, nil
	case "TerminateJob", "CancelJob":
		return []vars{{"JobId": p.str("jobId")}}, nil
	case "TagResource", "UntagResource", "ListTagsForResource":
		if len(p.path) < 3 {
			return nil, nil
		}
		return batchARNVars(strings.Join(p.path[2:], "/")), nil
	}
	return nil, nil
}

// batchARNVars names the resource of a Batch ARN:
// arn:aws:batch:REGION:ACCOUNT:KIND/ID.
func batchARNVars(arn string) []vars {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 {
		return nil
	}
	kind, id, _ := strings.Cut(parts[5], "/")
	switch kind {
	case "compute-environment":
		return []vars{{"ComputeEnvironmentName": id}}
	case "job-queue":
		return []vars{{"JobQueueName": id}}
	case "job-definition":
		name, rev, _ := strings.Cut(id, ":")
		return []vars{{"JobDefinitionName": name, "Revision": rev}}
	case "job":
		return []vars{{"JobId": id}}
	}
	return nil
}

// batchDefinition splits a SubmitJob's job definition (a name, name:revision
// or an ARN) into name and revision. "A policy that references only the job
// definition name without a revision number or wildcard ... does not match
// SubmitJob requests, because the request ARN includes the revision": a
// bare name is its newest ACTIVE revision, as SubmitJob runs it, which the
// proxy learned from the registrations it saw or asks the target for;
// unknown, the name is authorized alone.
// https://docs.aws.amazon.com/batch/latest/userguide/iam-example-restrict-job-submission.html
func (a *authority) batchDefinition(ctx context.Context, ref string) (name, revision string) {
	ref = lastOfARN(ref, "/")
	if name, revision, ok := strings.Cut(ref, ":"); ok {
		return name, revision
	}
	a.mu.Lock()
	newest := 0
	for rev := range a.jobDefs[ref] {
		newest = max(newest, rev)
	}
	a.mu.Unlock()
	if newest == 0 {
		newest = a.targetNewestRevision(ctx, ref)
	}
	if newest == 0 {
		return ref, ""
	}
	return ref, strconv.Itoa(newest)
}

// targetNewestRevision asks the target for the newest ACTIVE revision of a
// job definition; 0 when it has none, or cannot say (kumo has no
// DescribeJobDefinitions; the local Batch, internal/localecs, has).
func (a *authority) targetNewestRevision(ctx context.Context, name string) int {
	body, _ := json.Marshal(map[string]string{"jobDefinitionName": name, "status": "ACTIVE"})
	var out struct {
		JobDefinitions []struct {
			Revision int `json:"revision"`
		} `json:"jobDefinitions"`
	}
	if a.batchGet(ctx, http.MethodPost, "/v1/describejobdefinitions", body, &out) != nil {
		return 0
	}
	newest := 0
	for _, d := range out.JobDefinitions {
		newest = max(newest, d.Revision)
	}
	return newest
}

// batchGet sends a Batch request of the proxy's own to the target, as the
// operator, and decodes its answer.
func (a *authority) batchGet(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, a.targetURL.JoinPath(path).String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	// The target routes Batch by the signature's scope.
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/batch/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := a.targetHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return json.Unmarshal(b, out)
}

// batchSkips reports whether IAM leaves resource type rt out of action's
// authorization with v. SubmitJob is authorized on its job queue and job
// definition: "When scoping resource-level access for job submission, you
// must provide both job queue and job definition resource types", and a
// policy granting those two alone lets a job be submitted
// (https://docs.aws.amazon.com/batch/latest/userguide/iam-example-restrict-job-queue.html),
// although the reference marks the new job as a required resource too. The
// definition is its revision when the request names one (the guide above:
// "the request ARN includes the revision"), so the revision-less type is
// not authorized then.
func batchSkips(action, rt string, v vars) bool {
	if action != "batch:SubmitJob" {
		return false
	}
	return rt == "job" || rt == "job-definition" && v["Revision"] != ""
}

// batchPassedToService is the service Batch's roles are passed to: the
// compute environment's service, instance and Spot fleet roles and a job
// definition's job and execution roles all go to Batch, which hands them
// on (to EC2, ECS) itself. Batch's guide grants a job role with
// "iam:PassedToService": "batch.amazonaws.com"; the hand-on is
// authorized on Batch's service-linked role, whose policy
// (BatchServiceRolePolicy) allows iam:PassRole to ec2.amazonaws.com,
// ecs.amazonaws.com and ecs-tasks.amazonaws.com, not on the caller.
// AWSBatchFullAccess names the roles it may pass with no
// iam:PassedToService condition at all, so it says nothing of the value.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html
// https://docs.aws.amazon.com/batch/latest/userguide/iam-example-job-def.html
// https://docs.aws.amazon.com/aws-managed-policy/latest/reference/BatchServiceRolePolicy.html
// https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSBatchFullAccess.html
const batchPassedToService = "batch.amazonaws.com"

// batchDependent returns the further authorizations of a Batch request:
// tagging what it creates (batch:TagResource on the new resource: "To
// create a resource with tags, you need both the create and the tag
// permission"), and passing roles.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/access_tags.html#access_tags_control-requests
// https://docs.aws.amazon.com/batch/latest/userguide/tag-resources.html
func (a *authority) batchDependent(ctx context.Context, c call, p params, region string, reqTags map[string]string) []authz {
	_, op, _ := strings.Cut(c.op, ".")
	var out []authz
	created := ""
	switch op {
	case "CreateComputeEnvironment":
		created = "compute-environment/" + p.str("computeEnvironmentName")
	case "CreateJobQueue":
		created = "job-queue/" + p.str("jobQueueName")
	case "RegisterJobDefinition":
		// The new revision's number is not known before the call.
		created = "job-definition/" + p.str("jobDefinitionName") + ":*"
	case "SubmitJob":
		created = "job/*" // nor is the new job's ID
	}
	if created != "" && len(reqTags) > 0 {
		out = append(out, authz{op: c.op, action: "batch:TagResource", resource: a.arn("batch", region, created), context: requestTagContext(reqTags)})
	}
	pass := func(role string) {
		if role == "" {
			return
		}
		if !strings.HasPrefix(role, "arn:") {
			role = "arn:aws:iam::" + a.cfg.Account + ":role/" + role
		}
		out = append(out, authz{op: c.op, action: "iam:PassRole", resource: role,
			context: map[string]any{"iam:PassedToService": batchPassedToService}})
	}
	switch op {
	case "RegisterJobDefinition":
		for _, r := range jobDefinitionRoles(p) {
			pass(r)
		}
	case "CreateComputeEnvironment", "UpdateComputeEnvironment":
		pass(p.str("serviceRole"))
		cr, _ := p.json["computeResources"].(map[string]any)
		if profile, _ := cr["instanceRole"].(string); profile != "" {
			pass(a.instanceProfileRole(ctx, profile))
		}
		if fleet, _ := cr["spotIamFleetRole"].(string); fleet != "" {
			pass(fleet)
		}
	}
	return out
}

// jobDefinitionRoles are the roles a job definition names: its tasks' task
// and execution roles (ecsProperties), or its container's job and
// execution roles (containerProperties).
func jobDefinitionRoles(p params) []string {
	var roles []string
	add := func(m map[string]any, keys ...string) {
		for _, k := range keys {
			if r, _ := m[k].(string); r != "" && !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		}
	}
	if ecs, ok := p.json["ecsProperties"].(map[string]any); ok {
		tasks, _ := ecs["taskProperties"].([]any)
		for _, t := range tasks {
			m, _ := t.(map[string]any)
			add(m, "taskRoleArn", "executionRoleArn")
		}
	}
	if cp, ok := p.json["containerProperties"].(map[string]any); ok {
		add(cp, "jobRoleArn", "executionRoleArn")
	}
	return roles
}

// instanceProfileRole is the ARN of the role in an instance profile (a
// name or an ARN), which a compute environment's instances get: passing the
// profile passes that role. "" when the target has no such profile.
func (a *authority) instanceProfileRole(ctx context.Context, profile string) string {
	out, err := a.target.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{
		InstanceProfileName: aws.String(profile[strings.LastIndex(profile, "/")+1:])})
	if err != nil || len(out.InstanceProfile.Roles) == 0 {
		return ""
	}
	return strings.Replace(aws.ToString(out.InstanceProfile.Roles[0].Arn), "arn:aws:iam::"+kumoIAMAccount+":", "arn:aws:iam::"+a.cfg.Account+":", 1)
}

// learnBatch keeps what later Batch authorizations need from a successful
// answer (already in the caller's region): the tags each new resource was
// created with, under its ARN, and the ACTIVE revisions of each job
// definition. It reports whether the call was one it learns from.
func (a *authority) learnBatch(c call, p params, ans *answer) bool {
	tags := p.tags()
	var out struct {
		ComputeEnvironmentArn string `json:"computeEnvironmentArn"`
		JobQueueArn           string `json:"jobQueueArn"`
		JobDefinitionArn      string `json:"jobDefinitionArn"`
		JobDefinitionName     string `json:"jobDefinitionName"`
		Revision              int    `json:"revision"`
		JobArn                string `json:"jobArn"`
	}
	switch c.op {
	case "Batch.CreateComputeEnvironment", "Batch.CreateJobQueue", "Batch.RegisterJobDefinition", "Batch.SubmitJob":
		if json.Unmarshal(ans.body, &out) != nil {
			return true
		}
	case "Batch.DeregisterJobDefinition":
		name, rev, _ := strings.Cut(lastOfARN(p.str("jobDefinition"), "/"), ":")
		n, _ := strconv.Atoi(rev)
		a.mu.Lock()
		delete(a.jobDefs[name], n)
		a.mu.Unlock()
		return true
	default:
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if out.JobDefinitionName != "" && out.Revision > 0 {
		if a.jobDefs[out.JobDefinitionName] == nil {
			a.jobDefs[out.JobDefinitionName] = map[int]bool{}
		}
		a.jobDefs[out.JobDefinitionName][out.Revision] = true
	}
	for _, arn := range []string{out.ComputeEnvironmentArn, out.JobQueueArn, out.JobDefinitionArn, out.JobArn} {
		if arn != "" && len(tags) > 0 {
			a.tags[arn] = maps.Clone(tags)
		}
	}
	return true
}

// readBatchTags reads a Batch resource's tags from the target
// (ListTagsForResource); nil when it cannot.
func (a *authority) readBatchTags(ctx context.Context, arn string) map[string]string {
	var out struct {
		Tags map[string]string `json:"tags"`
	}
	if a.batchGet(ctx, http.MethodGet, "/v1/tags/"+arn, nil, &out) != nil {
		return nil
	}
	return out.Tags
}
