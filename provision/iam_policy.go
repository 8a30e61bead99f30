package provision

import (
	"encoding/json"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// policyDocument is an IAM policy. Documents are compared by value
// (policiesEqual), never as text: AWS returns them URL-encoded and
// reformatted, and single values may come back as one-element lists.
type policyDocument struct {
	Version   string            `json:"Version"`
	Statement []policyStatement `json:"Statement"`
}

type policyStatement struct {
	Sid       string                           `json:"Sid,omitempty"`
	Effect    string                           `json:"Effect"`
	Principal map[string]stringList            `json:"Principal,omitempty"`
	Action    stringList                       `json:"Action"`
	Resource  stringList                       `json:"Resource,omitempty"`
	Condition map[string]map[string]stringList `json:"Condition,omitempty"`
}

// stringList is an IAM value that may be written as "x" or ["x", "y"].
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*l = many
	return nil
}

func (l stringList) MarshalJSON() ([]byte, error) {
	if len(l) == 1 {
		return json.Marshal(l[0])
	}
	return json.Marshal([]string(l))
}

const policyVersion = "2012-10-17"

func (d policyDocument) String() string {
	b, _ := json.Marshal(d)
	return string(b)
}

// parsePolicy decodes a policy document as IAM returns it: URL-encoded by
// AWS, raw by kumo (unescaping raw JSON changes nothing unless it holds a
// '%' or '+', which no cloudpipe policy does).
func parsePolicy(doc string) (policyDocument, error) {
	if unescaped, err := url.QueryUnescape(doc); err == nil {
		doc = unescaped
	}
	var d policyDocument
	err := json.Unmarshal([]byte(doc), &d)
	return d, err
}

// policiesEqual reports whether the policy document have (as returned by
// IAM) grants what want grants, ignoring formatting and the order of actions
// and resources.
func policiesEqual(have string, want policyDocument) bool {
	h, err := parsePolicy(have)
	if err != nil {
		return false
	}
	return reflect.DeepEqual(normalizePolicy(h), normalizePolicy(want))
}

// normalizePolicy returns a copy of d with every list sorted and empty maps
// nil, so that equal grants compare equal with reflect.DeepEqual.
func normalizePolicy(d policyDocument) policyDocument {
	out := policyDocument{Version: d.Version}
	for _, s := range d.Statement {
		n := policyStatement{Sid: s.Sid, Effect: s.Effect, Action: sortedList(s.Action), Resource: sortedList(s.Resource)}
		for k, v := range s.Principal {
			if n.Principal == nil {
				n.Principal = map[string]stringList{}
			}
			n.Principal[k] = sortedList(v)
		}
		for op, kv := range s.Condition {
			if n.Condition == nil {
				n.Condition = map[string]map[string]stringList{}
			}
			n.Condition[op] = map[string]stringList{}
			for k, v := range kv {
				n.Condition[op][k] = sortedList(v)
			}
		}
		out.Statement = append(out.Statement, n)
	}
	return out
}

func sortedList(l stringList) stringList {
	if len(l) == 0 {
		return nil
	}
	l = slices.Clone(l)
	slices.Sort(l)
	return l
}

// trustPolicy lets service ("lambda.amazonaws.com", "ecs-tasks.amazonaws.com")
// assume a role.
func trustPolicy(service string) policyDocument {
	return policyDocument{Version: policyVersion, Statement: []policyStatement{{
		Effect:    "Allow",
		Principal: map[string]stringList{"Service": {service}},
		Action:    stringList{"sts:AssumeRole"},
	}}}
}

// taskRoleTrustPolicy lets ECS tasks of the stage's account and region
// assume the task role, and no one else's: ECS passes aws:SourceAccount
// and aws:SourceArn when it assumes a task role, and advises them against
// the confused deputy ("Using the aws:SourceArn condition key to specify a
// specific cluster is not currently supported, you should use the wildcard
// to specify all clusters").
// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html
// Only the task role: the pages of the execution role
// (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html)
// and of a Lambda execution role
// (https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html)
// show trust policies without them and do not say the service passes the
// keys, and a condition on a key the service does not send denies the
// assume. Without an account (a spec not built from STS) it is the plain
// trust policy.
func taskRoleTrustPolicy(region, account string) policyDocument {
	d := trustPolicy("ecs-tasks.amazonaws.com")
	if account == "" {
		return d
	}
	d.Statement[0].Condition = map[string]map[string]stringList{
		"StringEquals": {"aws:SourceAccount": {account}},
		"ArnLike":      {"aws:SourceArn": {ecsARN(region, account, "*")}},
	}
	return d
}

// stageARNs are the identifiers a stage's policies are scoped to.
type stageARNs struct {
	Region, Account  string
	Cluster          string // cluster name
	Family           string // task-definition family
	QueueARN, DLQARN string
	ExecRoleARN      string
	TaskRoleARN      string
	InputBucket      string
	OutputBucket     string
	StateBucket      string // may be empty
	Workflow         string
	Stage            int
	SecretARNs       []string // referenced secrets, without :jsonkey suffixes
	Images           []string // images the execution role pulls
	// Customer managed KMS keys, as key ARNs: the input and output
	// buckets' default encryption keys ("" for none), the secrets' keys,
	// and the workflow's further keys (kms_key_arns).
	InputKey, OutputKey      string
	SecretKeys, WorkflowKeys []string
	// OnBatch: the stage submits jobs to JobQueueARN with its job
	// definition (named Family) instead of starting tasks.
	OnBatch     bool
	JobQueueARN string
}

// lambdaPolicy is the inline policy of the stage's Lambda role: queue a
// message per upload, dead-letter what cannot be processed, start and count
// tasks of this stage's family on the cluster, pass the stage's two task
// roles and write its own logs. Nothing more: the AWS-rules tests report a
// statement no request needed.
func lambdaPolicy(a stageARNs) policyDocument {
	cluster := clusterARN(a.Region, a.Account, a.Cluster)
	onCluster := map[string]map[string]stringList{"ArnEquals": {"ecs:cluster": {cluster}}}
	if a.OnBatch {
		return batchLambdaPolicy(a)
	}
	return policyDocument{Version: policyVersion, Statement: []policyStatement{
		{Sid: "Queue", Effect: "Allow", Action: stringList{"sqs:SendMessage"},
			Resource: stringList{a.QueueARN}},
		// Two senders use the role on the dead-letter queue: the handler,
		// for a record it cannot queue, and Lambda, which sends the
		// invocation record of an event the function failed on every
		// attempt to its on-failure destination with the function's
		// execution role ("ensure that your function's execution role
		// also contains the relevant permissions": sqs:SendMessage), and
		// refuses the destination until the role may.
		// https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html
		{Sid: "DeadLetters", Effect: "Allow", Action: stringList{"sqs:SendMessage"},
			Resource: stringList{a.DLQARN}},
		{Sid: "RunTask", Effect: "Allow", Action: stringList{"ecs:RunTask"},
			Resource: stringList{taskFamilyARN(a.Region, a.Account, a.Family)}, Condition: onCluster},
		// ListTasks names a container-instance resource in the Service
		// Authorization Reference, but a call without a containerInstance
		// filter (the stage function's) is authorized on "*": a policy
		// scoped to container instances denies it, and the function could
		// not count its tasks. The ecs:cluster condition keeps it to the
		// agent's cluster. https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerservice.html
		// and https://docs.aws.amazon.com/AmazonECS/latest/developerguide/security_iam_id-based-policy-examples.html
		{Sid: "CountTasks", Effect: "Allow", Action: stringList{"ecs:ListTasks"},
			Resource: stringList{"*"}, Condition: onCluster},
		{Sid: "PassTaskRoles", Effect: "Allow", Action: stringList{"iam:PassRole"},
			Resource:  stringList{a.ExecRoleARN, a.TaskRoleARN},
			Condition: map[string]map[string]stringList{"StringEquals": {"iam:PassedToService": {"ecs-tasks.amazonaws.com"}}}},
		{Sid: "Logs", Effect: "Allow", Action: stringList{"logs:CreateLogStream", "logs:PutLogEvents"},
			Resource: stringList{logGroupARN(a.Region, a.Account, lambdaLogGroup(a.Workflow, a.Stage)) + ":*"}},
	}}
}

// batchLambdaPolicy is lambdaPolicy for a stage on AWS Batch: queue and
// dead-letter as on Fargate, submit jobs to the capacity's queue with the
// stage's own job definition only (SubmitJob is authorized on the two
// together: "When scoping resource-level access for job submission, you
// must provide both job queue and job definition resource types",
// https://docs.aws.amazon.com/batch/latest/userguide/iam-example-restrict-job-queue.html),
// count the queue's unfinished jobs (ListJobs names no resource type, so
// "*": https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsbatch.html)
// and write its logs. No iam:PassRole: SubmitJob passes no role, the job
// definition names the task roles and the agent passed them when it
// registered it.
func batchLambdaPolicy(a stageARNs) policyDocument {
	fargate := lambdaPolicy(stageARNs{Region: a.Region, Account: a.Account, QueueARN: a.QueueARN, DLQARN: a.DLQARN,
		Workflow: a.Workflow, Stage: a.Stage})
	// Its queue, dead-letter and log statements, with the jobs' in place
	// of the tasks'.
	var stmts []policyStatement
	for _, st := range fargate.Statement {
		switch st.Sid {
		case "RunTask":
			stmts = append(stmts,
				policyStatement{Sid: "SubmitJob", Effect: "Allow", Action: stringList{"batch:SubmitJob"},
					Resource: stringList{a.JobQueueARN, jobDefinitionRevisionsARN(a.Region, a.Account, a.Family)}},
				policyStatement{Sid: "CountJobs", Effect: "Allow", Action: stringList{"batch:ListJobs"},
					Resource: stringList{"*"}})
		case "CountTasks", "PassTaskRoles":
		default:
			stmts = append(stmts, st)
		}
	}
	return policyDocument{Version: policyVersion, Statement: stmts}
}

// execPolicy is the inline policy of the ECS task execution role: write the
// stage's log streams, read the referenced secrets (statement left out when
// there are none) and pull private ECR images.
func execPolicy(a stageARNs) policyDocument {
	group := logGroupARN(a.Region, a.Account, workflowLogGroup(a.Workflow))
	stmts := []policyStatement{
		{Sid: "Logs", Effect: "Allow", Action: stringList{"logs:CreateLogStream", "logs:PutLogEvents"},
			Resource: stringList{group + ":log-stream:" + logStreamPrefix(a.Stage) + "/*"}},
	}
	if len(a.SecretARNs) > 0 {
		var secrets stringList
		for _, arn := range a.SecretARNs {
			secrets = append(secrets, secretPolicyResources(arn)...)
		}
		stmts = append(stmts, policyStatement{Sid: "Secrets", Effect: "Allow",
			Action: stringList{"secretsmanager:GetSecretValue"}, Resource: secrets})
	}
	if len(a.SecretKeys) > 0 {
		// Secrets Manager decrypts a secret encrypted with a customer
		// managed key with the caller's kms:Decrypt on that key; without
		// it GetSecretValue answers "Access to KMS is not allowed" and ECS
		// cannot start the task. Only through Secrets Manager: the role
		// never calls KMS itself.
		// https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html
		stmts = append(stmts, policyStatement{Sid: "SecretKeys", Effect: "Allow",
			Action: stringList{"kms:Decrypt"}, Resource: a.SecretKeys,
			Condition: viaCondition(viaServices("secretsmanager", a.SecretKeys))})
	}
	var repos stringList
	for _, img := range a.Images {
		if arn, ok := ecrRepositoryARN(img, partition(a.Region)); ok && !slices.Contains(repos, arn) {
			repos = append(repos, arn)
		}
	}
	if len(repos) > 0 {
		stmts = append(stmts,
			// GetAuthorizationToken is not resource-scoped in IAM: "*" is the
			// only form AWS accepts, and the token alone reads nothing; the
			// pulls below are limited to the stage's repositories.
			policyStatement{Sid: "EcrAuth", Effect: "Allow", Action: stringList{"ecr:GetAuthorizationToken"}, Resource: stringList{"*"}},
			policyStatement{Sid: "EcrPull", Effect: "Allow",
				Action:   stringList{"ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"},
				Resource: repos})
	}
	return policyDocument{Version: policyVersion, Statement: stmts}
}

// taskPolicy is the inline policy of the ECS task role, i.e. of the runner:
// read inputs, write results and run records, and work its queue.
func taskPolicy(a stageARNs) policyDocument {
	in := bucketARN(a.Region, a.InputBucket)
	stmts := []policyStatement{
		// s3:ListBucket on the input bucket only makes a missing input read
		// as what it is: without it S3 answers GetObject of a missing key
		// with 403 AccessDenied, not 404 NoSuchKey, and the run record of an
		// input deleted before its run would send the user hunting for an
		// IAM fault. https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
		// (each action applies only to the resource of its type: GetObject
		// to the objects, ListBucket to the bucket).
		{Sid: "ReadInput", Effect: "Allow", Action: stringList{"s3:GetObject", "s3:ListBucket"},
			Resource: stringList{in, in + "/*"}},
		// Large results go up in parts: a failed upload must be able to
		// abort its parts rather than leave them (and their cost) behind.
		{Sid: "WriteOutput", Effect: "Allow", Action: stringList{"s3:PutObject", "s3:AbortMultipartUpload"},
			Resource: stringList{bucketARN(a.Region, a.OutputBucket) + "/*"}},
	}
	if a.StateBucket != "" {
		stmts = append(stmts, policyStatement{Sid: "WriteRunRecords", Effect: "Allow", Action: stringList{"s3:PutObject"},
			Resource: stringList{bucketARN(a.Region, a.StateBucket) + "/" + contract.WorkflowRunsPrefix(a.Workflow) + "*"}})
	}
	stmts = append(stmts, policyStatement{Sid: "Queue", Effect: "Allow",
		Action:   stringList{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"},
		Resource: stringList{a.QueueARN}})
	return policyDocument{Version: policyVersion, Statement: append(stmts, dataKeyStatements(a)...)}
}

// dataKeyStatements are the task role's grants on customer managed KMS
// keys, none when the stage uses none (so the policy of a stage without
// them stays as it was). S3 encrypts and decrypts SSE-KMS objects with
// the requester's permissions on the key: reading an object needs
// kms:Decrypt, writing one kms:GenerateDataKey, and a multipart upload
// kms:Decrypt too (S3 decrypts the parts it already holds to upload the
// next ones and assemble them), which large results use.
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html#require-sse-kms
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions
// Each grant holds only through S3 (kms:ViaService), never for a direct
// KMS call.
func dataKeyStatements(a stageARNs) []policyStatement {
	var stmts []policyStatement
	if read := stringList(compactNonEmpty(a.InputKey, a.OutputKey)); len(read) > 0 {
		stmts = append(stmts, policyStatement{Sid: "DecryptData", Effect: "Allow",
			Action: stringList{"kms:Decrypt"}, Resource: read, Condition: viaCondition(viaServices("s3", read))})
	}
	if a.OutputKey != "" {
		stmts = append(stmts, policyStatement{Sid: "EncryptResults", Effect: "Allow",
			Action: stringList{"kms:GenerateDataKey"}, Resource: stringList{a.OutputKey},
			Condition: viaCondition(viaServices("s3", []string{a.OutputKey}))})
	}
	if len(a.WorkflowKeys) > 0 {
		// Keys the workflow lists itself, for what the agent cannot see
		// from the buckets' settings: input objects put with a key of
		// their own, and the objects and secrets the algorithm reads or
		// writes with the task role's credentials (it runs with them,
		// unless task_credentials_secret gives it keys). So both ways, and
		// through both services.
		via := append(viaServices("s3", a.WorkflowKeys), viaServices("secretsmanager", a.WorkflowKeys)...)
		stmts = append(stmts, policyStatement{Sid: "WorkflowKeys", Effect: "Allow",
			Action: stringList{"kms:Decrypt", "kms:GenerateDataKey"}, Resource: a.WorkflowKeys, Condition: viaCondition(via)})
	}
	return stmts
}

// viaCondition admits a KMS request only when one of the services via
// makes it on the caller's behalf.
// https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service
func viaCondition(via stringList) map[string]map[string]stringList {
	return map[string]map[string]stringList{"StringEquals": {"kms:ViaService": via}}
}

// secretSuffix is the "-" and six characters Secrets Manager appends to a
// secret's name in its ARN.
var secretSuffix = regexp.MustCompile(`-[A-Za-z0-9]{6}$`)

// secretPolicyResources are the policy resources that let a role read the
// secret arn names. IAM matches a secret by its full ARN, which ends in a
// random 6-character suffix: a partial ARN (the name alone) matches only
// as "NAME-??????", Secrets Manager's advice
// (https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_iam-policies.html).
// An ARN that ends like a suffix may still be a partial one whose name ends
// in "-" and six characters, so it gets both forms.
func secretPolicyResources(arn string) []string {
	if secretSuffix.MatchString(arn) {
		return []string{arn, arn + "-??????"}
	}
	return []string{arn + "-??????"}
}

// secretARN strips what a valueFrom may add after a secret's ARN
// (":jsonkey:version-stage:version-id"): IAM authorizes the secret itself.
func secretARN(valueFrom string) string {
	parts := strings.SplitN(valueFrom, ":", 8) // arn:aws:secretsmanager:region:account:secret:name[:...]
	if len(parts) < 7 {
		return valueFrom
	}
	return strings.Join(parts[:7], ":")
}

// ecrRepositoryARN returns the repository ARN of a private ECR image
// reference ("<account>.dkr.ecr.<region>.amazonaws.com/<repo>[:tag|@digest]").
func ecrRepositoryARN(image, partition string) (string, bool) {
	host, path, ok := strings.Cut(image, "/")
	if !ok {
		return "", false
	}
	labels := strings.Split(host, ".")
	if len(labels) < 6 || labels[1] != "dkr" || labels[2] != "ecr" {
		return "", false
	}
	if i := strings.IndexByte(path, '@'); i >= 0 {
		path = path[:i]
	}
	if i := strings.LastIndexByte(path, ':'); i >= 0 {
		path = path[:i]
	}
	return "arn:" + partition + ":ecr:" + labels[3] + ":" + labels[0] + ":repository/" + path, true
}
