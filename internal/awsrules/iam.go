package awsrules

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
	"github.com/cloudpipe/cloudpipe/internal/iamsim"
)

// IAM turns on authorization: every request signed with a role's access key
// (see RoleAccessKeyID) is authorized against that role's identity policies
// as IAM would, and answered AccessDenied when IAM would deny it. Requests
// signed with any other key come from the operator (a test's own set-up, the
// demo's uploads) and are not checked, as an administrator's would pass.
type IAM struct {
	// Evaluator decides; it also supplies the Service Authorization
	// Reference the requests are mapped through.
	Evaluator *iamsim.Evaluator
	// Account is the emulated AWS account ID (kumo's is 000000000000).
	Account string
	// Fixed are roles whose policies are given here rather than read from
	// the emulator: the agent's own role, whose policy is a file the
	// operator attaches (deploy/agent-iam-policy.json).
	Fixed map[string][]json.RawMessage
}

// roleKeyPrefix starts every role access key ID: the rest is the role name
// in hex, so any role name survives SigV4's Credential= syntax.
const roleKeyPrefix = "ASIACPROLE"

// RoleAccessKeyID is the access key ID a client signs with to act as the
// role named role, as a process holding that role's session credentials
// would. Any secret key goes with it: the emulator checks no signature.
func RoleAccessKeyID(role string) string {
	return roleKeyPrefix + strings.ToUpper(hex.EncodeToString([]byte(role)))
}

// RoleCredentials is a credentials provider for the role named role.
func RoleCredentials(role string) aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(RoleAccessKeyID(role), "role-session-secret", "role-session-token")
}

// roleOfKey returns the role a request's access key names, or "".
func roleOfKey(key string) string {
	h, ok := strings.CutPrefix(key, roleKeyPrefix)
	if !ok {
		return ""
	}
	b, err := hex.DecodeString(strings.ToLower(h))
	if err != nil {
		return ""
	}
	return string(b)
}

// accessKeyID returns the access key ID a request is signed with.
func accessKeyID(r *http.Request) string {
	cred := r.URL.Query().Get("X-Amz-Credential")
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "AWS4-") {
		if _, rest, ok := strings.Cut(auth, "Credential="); ok {
			cred, _, _ = strings.Cut(rest, ",")
		}
	}
	key, _, _ := strings.Cut(cred, "/")
	return key
}

// sessionARN is the principal IAM names in its decisions for a role's
// session: arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION.
func (a *authority) sessionARN(role string) string {
	return "arn:aws:sts::" + a.cfg.Account + ":assumed-role/" + role + "/cloudpipe"
}

// authority holds what authorization needs between requests: the roles'
// policies, the tags and task definitions resources were created with, and
// what it decided, for Report.
type authority struct {
	cfg          IAM
	target       *iam.Client // reads roles' policies and tags from the emulator
	targetSQS    *sqs.Client
	targetLambda *lambda.Client
	// The emulator's S3, KMS and Secrets Manager, read for the keys data
	// is encrypted with (kms.go).
	targetS3      *s3.Client
	targetKMS     *kms.Client
	targetSecrets *secretsmanager.Client
	targetURL     *url.URL
	targetHTTP    *http.Client // the proxy's own REST calls to the target (Batch)

	mu       sync.Mutex
	policies map[string][]json.RawMessage        // role name -> inline policies, cleared by any IAM write
	tags     map[string]map[string]string        // resource ARN -> tags, learned from the requests
	taskDefs map[string]taskDef                  // "family:revision" -> what RunTask must pass
	latest   map[string]int                      // task definition family -> latest revision
	secrets  map[string]string                   // secret name -> full ARN, learned from answers
	jobDefs  map[string]map[int]bool             // Batch job definition name -> its ACTIVE revisions
	stats    map[string]*PrincipalReport         // by role name
	used     map[string]map[string]*statementUse // role -> statement label -> what it allowed
	// noted is, by role, the policies (policiesKey) whose statements used
	// already holds: note merges a role's statements only when they change.
	// Parsing them again on every request was the largest single cost of
	// the sync package's tests under the race detector.
	noted map[string]string
	// uploadKeys: multipart upload ID -> the customer managed key its
	// CreateMultipartUpload chose ("" for none), for its parts.
	uploadKeys map[string]string
}

// taskDef is what the proxy learned from RegisterTaskDefinition.
type taskDef struct {
	roles []string // task and execution role ARNs: RunTask passes them
}

func newAuthority(cfg IAM, target *url.URL, transport http.RoundTripper) *authority {
	// The proxy's own reads of the emulator, as the operator.
	creds := credentials.NewStaticCredentialsProvider("test", "test", "")
	httpClient := &http.Client{Transport: transport}
	base := aws.String(target.String())
	return &authority{
		cfg:          cfg,
		target:       iam.New(iam.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: base, HTTPClient: httpClient}),
		targetSQS:    sqs.New(sqs.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: base, HTTPClient: httpClient}),
		targetLambda: lambda.New(lambda.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: base, HTTPClient: httpClient}),
		targetS3: s3.New(s3.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: base, HTTPClient: httpClient,
			UsePathStyle: true, RetryMaxAttempts: 1}),
		targetKMS:     kms.New(kms.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: base, HTTPClient: httpClient}),
		targetSecrets: secretsmanager.New(secretsmanager.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: base, HTTPClient: httpClient}),
		targetURL:     target,
		targetHTTP:    httpClient,
		uploadKeys:    map[string]string{},
		policies:      map[string][]json.RawMessage{},
		tags:          map[string]map[string]string{},
		taskDefs:      map[string]taskDef{},
		latest:        map[string]int{},
		secrets:       map[string]string{},
		jobDefs:       map[string]map[int]bool{},
		stats:         map[string]*PrincipalReport{},
		used:          map[string]map[string]*statementUse{},
		noted:         map[string]string{},
	}
}

// rolePolicies returns the role's identity policies: fixed, or read from
// the emulator (inline policies; cloudpipe attaches no managed ones).
func (a *authority) rolePolicies(ctx context.Context, role string) ([]json.RawMessage, error) {
	if p, ok := a.cfg.Fixed[role]; ok {
		return p, nil
	}
	a.mu.Lock()
	p, ok := a.policies[role]
	a.mu.Unlock()
	if ok {
		return p, nil
	}
	names, err := a.target.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(role)})
	if err != nil {
		return nil, fmt.Errorf("read the policies of role %s: %w", role, err)
	}
	for _, name := range names.PolicyNames {
		out, err := a.target.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(name)})
		if err != nil {
			return nil, fmt.Errorf("read policy %s of role %s: %w", name, role, err)
		}
		// IAM answers the document URL-encoded.
		doc, err := url.QueryUnescape(aws.ToString(out.PolicyDocument))
		if err != nil {
			doc = aws.ToString(out.PolicyDocument)
		}
		p = append(p, json.RawMessage(doc))
	}
	a.mu.Lock()
	a.policies[role] = p
	a.mu.Unlock()
	return p, nil
}

// forgetPolicies drops the cached policies after a write to IAM.
func (a *authority) forgetPolicies() {
	a.mu.Lock()
	clear(a.policies)
	a.mu.Unlock()
}

// decide authorizes each of one request's authorizations for role, and
// returns the first denial as the error the service answers, or nil.
func (a *authority) decide(ctx context.Context, role string, c call, reqs []authz) *faultproxy.APIError {
	policies, err := a.rolePolicies(ctx, role)
	if err != nil {
		return &faultproxy.APIError{Status: http.StatusInternalServerError, Code: "InternalFailure", Message: "awsrules: " + err.Error()}
	}
	for _, q := range reqs {
		res, err := a.evaluate(ctx, role, policies, q)
		if err != nil {
			return &faultproxy.APIError{Status: http.StatusInternalServerError, Code: "InternalFailure",
				Message: fmt.Sprintf("awsrules: %s: %v", c.op, err)}
		}
		if res.Decision != iamsim.Allowed {
			if q.denied != nil {
				e := *q.denied
				return &e
			}
			e := accessDenied(c, a.sessionARN(role), q, res.Decision)
			return &e
		}
	}
	return nil
}

// evaluate asks IAM whether role, holding policies, may do q, and counts
// the decision for Report. A KMS key's own policy takes part, as it does
// in AWS (kms.go).
func (a *authority) evaluate(ctx context.Context, role string, policies []json.RawMessage, q authz) (iamsim.Result, error) {
	pols, resource := publicParameterView(policies, q.resource, a.cfg.Account)
	res, err := a.cfg.Evaluator.Evaluate(iamsim.Request{
		Principal: a.sessionARN(role), Policies: pols, ResourcePolicy: a.keyPolicy(ctx, q),
		Action: q.action, Resource: resource, Context: q.context,
	})
	if err != nil {
		return res, err
	}
	a.note(role, policies, q, res)
	return res, nil
}

// Authorize asks whether role may do action on resource, as AWS asks when
// a service acts with a role a customer passed it (ECS reading a task's
// secrets with its execution role). It returns nil when IAM allows it, a
// *Denied when it does not, and counts in Report like a request. A
// Secrets Manager resource is matched by the secret's full ARN, as IAM
// matches it, when the proxy saw the secret created; reading a secret
// encrypted with a customer managed key also needs kms:Decrypt on the key
// through Secrets Manager (kms.go), and its denial says "Access to KMS is
// not allowed", as Secrets Manager does.
func (p *Proxy) Authorize(ctx context.Context, role, action, resource string) error {
	if p.iam == nil {
		return nil
	}
	a := p.iam
	if strings.HasPrefix(action, "secretsmanager:") && strings.Contains(resource, ":secret:") {
		resource = resource[:strings.Index(resource, ":secret:")+len(":secret:")] + a.secretID(resource)
	}
	policies, err := a.rolePolicies(ctx, role)
	if err != nil {
		return fmt.Errorf("awsrules: %w", err)
	}
	q := authz{action: action, resource: resource, op: "(service) " + action}
	res, err := a.evaluate(ctx, role, policies, q)
	if err != nil {
		return fmt.Errorf("awsrules: %w", err)
	}
	if res.Decision != iamsim.Allowed {
		return &Denied{Message: accessDenied(call{op: "Service." + action}, a.sessionARN(role), q, res.Decision).Message}
	}
	if action == "secretsmanager:GetSecretValue" {
		// The service reads the secret as the role: its key must let the
		// role decrypt through Secrets Manager, as for a GetSecretValue
		// the role sends itself.
		if err := p.authorizeSecretKey(ctx, role, resource, policies); err != nil {
			return err
		}
	}
	return nil
}

// Denied is IAM's refusal, with the message services put in their errors.
type Denied struct{ Message string }

func (d *Denied) Error() string { return d.Message }

// accessDenied is the error each service answers for a denial: S3, SQS, IAM
// and STS say AccessDenied, EC2 UnauthorizedOperation, the others
// AccessDeniedException (with HTTP 403 from the REST-JSON services, Lambda
// and Batch); the message is IAM's
// (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html).
func accessDenied(c call, principal string, q authz, d iamsim.Decision) faultproxy.APIError {
	why := "no identity-based policy allows the " + q.action + " action"
	if d == iamsim.ExplicitlyDenied {
		why = "of an explicit deny in an identity-based policy"
	}
	msg := "User: " + principal + " is not authorized to perform: " + q.action + " on resource: " + q.resource + " because " + why
	service, _, _ := strings.Cut(c.op, ".")
	switch service {
	case "S3", "IAM", "STS":
		return faultproxy.APIError{Status: http.StatusForbidden, Code: "AccessDenied", Message: msg}
	case "SQS":
		return faultproxy.APIError{Status: http.StatusForbidden, Code: "AccessDenied", Type: "AccessDeniedException", Message: msg}
	case "EC2":
		return faultproxy.APIError{Status: http.StatusForbidden, Code: "UnauthorizedOperation", Message: msg}
	case "Lambda", "Batch":
		if object, ok := strings.CutPrefix(q.resource, "arn:aws:s3:::"); ok && q.action == "s3:GetObject" {
			// Lambda reading a function's code from S3 as the caller
			// relays S3's refusal in its own words.
			msg = "Your access has been denied by S3, please make sure your request credentials have permission to GetObject for " +
				object + ". S3 Error Code: AccessDenied. S3 Error Message: Access Denied"
		}
		return faultproxy.APIError{Status: http.StatusForbidden, Code: "AccessDeniedException", Message: msg}
	}
	return faultproxy.APIError{Status: http.StatusBadRequest, Code: "AccessDeniedException", Message: msg}
}

// PrincipalReport is what one role did through the proxy.
type PrincipalReport struct {
	Authorized int      // authorizations IAM allowed
	Denied     []string // "action on resource (op)" for each denial
}

// Report is what the proxy authorized, by role.
type Report struct {
	Principals map[string]PrincipalReport
	// Unused lists, by role, the Allow statements ("Sid", or "#N" without
	// one) of the policies the role held that allowed nothing, and
	// ("Sid: action") the actions of the others that no request needed.
	Unused map[string][]string
}

// Report returns what the proxy authorized so far.
func (p *Proxy) Report() Report {
	r := Report{Principals: map[string]PrincipalReport{}, Unused: map[string][]string{}}
	if p.iam == nil {
		return r
	}
	a := p.iam
	a.mu.Lock()
	defer a.mu.Unlock()
	for role, s := range a.stats {
		r.Principals[role] = PrincipalReport{Authorized: s.Authorized, Denied: slices.Clone(s.Denied)}
	}
	for role, stmts := range a.used {
		for label, st := range stmts {
			if len(st.granted) == 0 {
				r.Unused[role] = append(r.Unused[role], label)
				continue
			}
			// A statement that allowed something may still hold an
			// action nothing needed: "Sid: action".
			for _, pattern := range st.actions {
				if !slices.ContainsFunc(slices.Collect(maps.Keys(st.granted)), func(action string) bool { return actionMatches(pattern, action) }) {
					r.Unused[role] = append(r.Unused[role], label+": "+pattern)
				}
			}
		}
		slices.Sort(r.Unused[role])
	}
	return r
}

// statementUse is what one Allow statement of a role allowed.
type statementUse struct {
	actions []string        // the statement's Action patterns
	granted map[string]bool // actions of the requests it allowed
}

// note counts one decision and marks the statements that allowed it.
func (a *authority) note(role string, policies []json.RawMessage, q authz, res iamsim.Result) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stats[role]
	if s == nil {
		s = &PrincipalReport{}
		a.stats[role] = s
	}
	if res.Decision == iamsim.Allowed {
		s.Authorized++
	} else {
		s.Denied = append(s.Denied, q.action+" on "+q.resource+" ("+q.op+")")
	}
	used := a.used[role]
	if used == nil {
		used = map[string]*statementUse{}
		a.used[role] = used
	}
	if key := policiesKey(policies); a.noted[role] != key {
		noteStatements(used, policies)
		a.noted[role] = key
	}
	for _, g := range res.Grants {
		if u := used[statementLabel(g.Sid, g.Index)]; g.Policy < len(policies) && u != nil {
			u.granted[strings.ToLower(q.action)] = true
		}
	}
}

// policiesKey is the text of policies, to tell whether a role's policies
// changed since note last saw them.
func policiesKey(policies []json.RawMessage) string {
	n := 0
	for _, p := range policies {
		n += len(p) + 1
	}
	var b strings.Builder
	b.Grow(n)
	for _, p := range policies {
		b.Write(p)
		b.WriteByte(0) // no JSON text holds a NUL byte
	}
	return b.String()
}

// noteStatements adds the Allow statements of policies to used.
func noteStatements(used map[string]*statementUse, policies []json.RawMessage) {
	for _, st := range allowStatements(policies) {
		if u := used[st.label]; u == nil {
			used[st.label] = &statementUse{actions: st.actions, granted: map[string]bool{}}
		} else {
			// A policy rewritten by an update: the union of its forms.
			for _, act := range st.actions {
				if !slices.Contains(u.actions, act) {
					u.actions = append(u.actions, act)
				}
			}
		}
	}
}

// actionMatches reports whether an IAM action pattern ("s3:Get*") matches
// action, case-insensitively as IAM compares actions.
func actionMatches(pattern, action string) bool {
	pattern, action = strings.ToLower(pattern), strings.ToLower(action)
	prefix, rest, wild := strings.Cut(pattern, "*")
	if !wild {
		return pattern == action
	}
	if !strings.HasPrefix(action, prefix) {
		return false
	}
	// One wildcard is all cloudpipe's policies use; more match loosely.
	return strings.HasSuffix(action, strings.ReplaceAll(rest, "*", ""))
}

// allowStatement is one Allow statement of a policy, by label.
type allowStatement struct {
	label   string
	actions []string
}

// allowStatements lists the Allow statements of policies.
func allowStatements(policies []json.RawMessage) []allowStatement {
	var out []allowStatement
	for _, p := range policies {
		var doc struct {
			Statement json.RawMessage
		}
		if json.Unmarshal(p, &doc) != nil {
			continue
		}
		type statement struct {
			Sid, Effect string
			Action      json.RawMessage
		}
		var stmts []statement
		if json.Unmarshal(doc.Statement, &stmts) != nil {
			var one statement
			if json.Unmarshal(doc.Statement, &one) != nil {
				continue
			}
			stmts = append(stmts, one)
		}
		for i, s := range stmts {
			if s.Effect != "Allow" {
				continue
			}
			var actions []string
			if json.Unmarshal(s.Action, &actions) != nil {
				var one string
				if json.Unmarshal(s.Action, &one) == nil {
					actions = []string{one}
				}
			}
			out = append(out, allowStatement{label: statementLabel(s.Sid, i+1), actions: actions})
		}
	}
	return out
}

func statementLabel(sid string, index int) string {
	if sid != "" {
		return sid
	}
	return fmt.Sprintf("#%d", index)
}

// authorize answers the IAM decision on a call role signed: nil when every
// authorization it needs is allowed.
func (p *Proxy) authorize(r *http.Request, role string, c call) *faultproxy.APIError {
	reqs, err := p.iam.authorizations(c, faultproxy.SigningRegion(r))
	if err != nil {
		// A request the proxy cannot map fails loudly, so a new call in
		// the code shows up as a missing model, not as a silent allow.
		return &faultproxy.APIError{Status: http.StatusInternalServerError, Code: "InternalFailure", Message: "awsrules: " + err.Error()}
	}
	return p.iam.decide(r.Context(), role, c, reqs)
}

// learn keeps what later authorizations need from a successful answer: the
// tags a resource was created with, the roles of a task definition, a
// secret's full ARN; and forgets cached policies after any IAM write.
func (a *authority) learn(c call, ans *answer) {
	if ans.status >= 300 {
		return
	}
	service, op, _ := strings.Cut(c.op, ".")
	if service == "IAM" && !strings.HasPrefix(op, "Get") && !strings.HasPrefix(op, "List") {
		a.forgetPolicies()
	}
	p := readParams(c)
	region := faultproxy.SigningRegion(c.r)
	if service == "Batch" && a.learnBatch(c, p, ans) {
		return
	}
	switch c.op {
	case "ECS.RegisterTaskDefinition":
		var out struct {
			TaskDefinition struct {
				Family           string `json:"family"`
				Revision         int    `json:"revision"`
				TaskRoleArn      string `json:"taskRoleArn"`
				ExecutionRoleArn string `json:"executionRoleArn"`
			} `json:"taskDefinition"`
		}
		if json.Unmarshal(ans.body, &out) != nil || out.TaskDefinition.Family == "" {
			return
		}
		td := out.TaskDefinition
		var roles []string
		for _, r := range []string{p.str("taskRoleArn"), p.str("executionRoleArn")} {
			if r != "" {
				roles = append(roles, r)
			}
		}
		a.mu.Lock()
		a.taskDefs[td.Family+":"+strconv.Itoa(td.Revision)] = taskDef{roles: roles}
		a.latest[td.Family] = max(a.latest[td.Family], td.Revision)
		a.mu.Unlock()
		return
	case "Secrets Manager.CreateSecret":
		var out struct{ ARN, Name string }
		if json.Unmarshal(ans.body, &out) == nil && out.ARN != "" {
			a.mu.Lock()
			a.secrets[out.Name] = out.ARN
			a.mu.Unlock()
		}
	}
	tags := p.tags()
	vs, err := a.resourceVars(c, p)
	if err != nil || len(vs) == 0 {
		return
	}
	// The resource's ARN as the create action names it.
	action := actionOf[c.op]
	if action == "" {
		action = iamPrefixes[service] + ":" + op
	}
	res, err := a.resources(action, region, vs, op)
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, arn := range res {
		switch {
		case strings.HasPrefix(op, "Create") && len(tags) > 0:
			a.tags[arn] = tags
		case strings.HasPrefix(op, "Tag"):
			if a.tags[arn] == nil {
				a.tags[arn] = map[string]string{}
			}
			maps.Copy(a.tags[arn], tags)
		case deletesResource[c.op]:
			delete(a.tags, arn)
		}
	}
}

// functionTagsNeedListTags answers GetFunction without the function's tags
// to a principal that may not lambda:ListTags it, as Lambda does: "Lambda
// returns tag data only if you have explicit allow permissions for
// lambda:ListTags." https://docs.aws.amazon.com/lambda/latest/api/API_GetFunction.html
func (a *authority) functionTagsNeedListTags(ctx context.Context, role string, c call, ans *answer) {
	if c.op != "Lambda.GetFunction" || ans.status != http.StatusOK {
		return
	}
	var out map[string]json.RawMessage
	if json.Unmarshal(ans.body, &out) != nil {
		return
	}
	var conf struct{ FunctionArn string }
	if json.Unmarshal(out["Configuration"], &conf) != nil || conf.FunctionArn == "" {
		return
	}
	policies, err := a.rolePolicies(ctx, role)
	if err != nil {
		return
	}
	q := authz{op: c.op + " (tags)", action: "lambda:ListTags", resource: conf.FunctionArn}
	res, err := a.cfg.Evaluator.Evaluate(iamsim.Request{Principal: a.sessionARN(role), Policies: policies, Action: q.action, Resource: q.resource})
	if err != nil {
		return
	}
	if res.Decision == iamsim.Allowed {
		a.note(role, policies, q, res)
		return
	}
	delete(out, "Tags")
	if b, err := json.Marshal(out); err == nil {
		ans.body = b
	}
}

// deletesResource are the operations that delete the resource they name
// (DeleteRolePolicy, say, does not delete the role).
var deletesResource = map[string]bool{
	"IAM.DeleteRole": true, "SQS.DeleteQueue": true, "Lambda.DeleteFunction": true, "CloudWatch Logs.DeleteLogGroup": true,
	"S3.DeleteBucket": true, "ECS.DeleteCluster": true, "Secrets Manager.DeleteSecret": true,
	"Batch.DeleteComputeEnvironment": true, "Batch.DeleteJobQueue": true,
}

// hideMissingKey answers a missing object as S3 does to a principal that
// may not list the bucket: 403 AccessDenied, not 404 NoSuchKey. "If you
// don't have the s3:ListBucket permission, Amazon S3 returns an HTTP status
// code 403 Access Denied error."
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
func (a *authority) hideMissingKey(ctx context.Context, role string, c call, ans *answer) {
	if ans.status != http.StatusNotFound || (c.op != "S3.GetObject" && c.op != "S3.HeadObject") {
		return
	}
	p := readParams(c)
	bucket := "arn:aws:s3:::" + p.path[0]
	policies, err := a.rolePolicies(ctx, role)
	if err != nil {
		return
	}
	q := authz{op: c.op + " (missing key)", action: "s3:ListBucket", resource: bucket}
	res, err := a.cfg.Evaluator.Evaluate(iamsim.Request{Principal: a.sessionARN(role), Policies: policies, Action: q.action, Resource: q.resource})
	if err != nil || res.Decision == iamsim.Allowed {
		if err == nil {
			a.note(role, policies, q, res)
		}
		return
	}
	ans.status = http.StatusForbidden
	ans.header = http.Header{"Content-Type": {"application/xml"}}
	ans.body = []byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`)
	if c.r.Method == http.MethodHead {
		ans.body = nil
	}
}

// kumoIAMAccount is the account kumo writes into IAM ARNs; every other
// service of kumo says testenv's 000000000000. In one AWS account a role's
// ARN names that account, and IAM treats a role of another account as
// cross-account (iam:PassRole of it fails), so the proxy answers IAM's ARNs
// in the account the rest of kumo uses.
const kumoIAMAccount = "123456789012"

// sameAccountInIAM rewrites kumo's IAM account in an IAM answer.
func sameAccountInIAM(a *answer, account string) {
	a.body = bytes.ReplaceAll(a.body, []byte("arn:aws:iam::"+kumoIAMAccount+":"), []byte("arn:aws:iam::"+account+":"))
}
