package localecs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
)

// AWS Batch on one machine. kumo stores compute environments and job queues
// but has no Update calls and no tagging, makes every environment VALID at
// once, keeps no job definition's ecsProperties, accepts a job for a queue
// or definition that does not exist and never runs one. The proxy therefore
// forwards the creation, description and deletion of environments and
// queues to kumo and keeps beside them what kumo loses (state and status,
// tags, updates), serves job definitions and jobs itself, and runs each job
// as RunTask runs a task: through Options.Start.

// DefaultBatchTransition is how long a compute environment or job queue
// stays CREATING, UPDATING or DELETING before it is VALID (or gone): AWS
// makes these changes asynchronously, and a caller must wait them out
// (DeleteJobQueue refuses a queue that is being modified; a deleted queue
// holds its compute environments until it is gone).
const DefaultBatchTransition = 200 * time.Millisecond

// Compute environment and job queue statuses, as Batch names them.
const (
	BatchCreating = "CREATING"
	BatchUpdating = "UPDATING"
	BatchDeleting = "DELETING"
	BatchValid    = "VALID"
	BatchInvalid  = "INVALID"
)

// Compute environment and job queue states, as Batch names them.
const (
	BatchEnabled  = "ENABLED"
	BatchDisabled = "DISABLED"
)

// batchAccount is the account in the ARNs the proxy makes: kumo's, the one
// account it answers for.
const batchAccount = "000000000000"

// batchResource is what the proxy keeps of a compute environment or job
// queue beside kumo's record. Its fields are guarded by Proxy.mu.
type batchResource struct {
	kind    string // "compute-environment" or "job-queue", as in its ARN
	name    string
	arn     string // kumo's
	state   string // BatchEnabled or BatchDisabled
	settled string // the status when no change is under way: BatchValid or BatchInvalid
	reason  string // statusReason
	change  string // BatchCreating, BatchUpdating or BatchDeleting while one is under way
	since   time.Time
	gone    bool // deleted, and kumo is being told
	tags    map[string]string

	// Compute environments.
	computeType   string         // computeResources.type: EC2, SPOT, FARGATE, FARGATE_SPOT
	instanceTypes []string       // computeResources.instanceTypes
	instanceRole  string         // the role of computeResources.instanceRole's instance profile; "" unknown
	resources     map[string]any // computeResources fields UpdateComputeEnvironment set
	serviceRole   string

	// Job queues.
	order    []string // the names of its compute environments, in order
	priority any      // UpdateJobQueue's priority, when given
}

// status is the resource's status at now.
func (b *batchResource) status(now time.Time, transition time.Duration) string {
	if b.change != "" && now.Before(b.since.Add(transition)) {
		return b.change
	}
	if b.change == BatchDeleting {
		return "DELETED"
	}
	return b.settled
}

// begin starts a change of b at now.
func (b *batchResource) begin(change string, now time.Time) {
	b.change, b.since = change, now
}

// usable reports whether b exists for a caller at now: not gone, and not
// past its deletion.
func (b *batchResource) usable(now time.Time, transition time.Duration) bool {
	return b != nil && !b.gone && !(b.change == BatchDeleting && !now.Before(b.since.Add(transition)))
}

// batchOpRequest is one Batch call the proxy reads itself.
type batchOpRequest struct {
	op     string // "SubmitJob"
	r      *http.Request
	body   []byte
	region string // the signing region; us-east-1 for an unsigned request
	now    time.Time
}

// serveBatch answers a Batch call (op is faultproxy.Operation's name
// without "Batch."): the job and job-definition calls from the proxy's own
// table, the environment and queue calls through kumo with what kumo
// loses kept here.
func (p *Proxy) serveBatch(w http.ResponseWriter, r *http.Request, op string) {
	p.record(Request{Op: op, Time: p.opts.Now()})
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		writeBatchError(w, http.StatusBadRequest, "ClientException", "read request body: "+err.Error())
		return
	}
	if len(body) > maxBody {
		writeBatchError(w, http.StatusRequestEntityTooLarge, "ClientException", "request body too large")
		return
	}
	region := faultproxy.SigningRegion(r)
	if region == "" {
		region = "us-east-1"
	}
	p.finishDeletions(r)
	c := batchOpRequest{op: op, r: r, body: body, region: region, now: p.opts.Now()}
	handlers := map[string]func(http.ResponseWriter, batchOpRequest){
		"CreateComputeEnvironment":    p.createComputeEnvironment,
		"UpdateComputeEnvironment":    p.updateComputeEnvironment,
		"DeleteComputeEnvironment":    p.deleteComputeEnvironment,
		"DescribeComputeEnvironments": p.describeComputeEnvironments,
		"CreateJobQueue":              p.createJobQueue,
		"UpdateJobQueue":              p.updateJobQueue,
		"DeleteJobQueue":              p.deleteJobQueue,
		"DescribeJobQueues":           p.describeJobQueues,
		"TagResource":                 p.tagResource,
		"UntagResource":               p.untagResource,
		"ListTagsForResource":         p.listTagsForResource,
		"RegisterJobDefinition":       p.registerJobDefinition,
		"DescribeJobDefinitions":      p.describeJobDefinitions,
		"DeregisterJobDefinition":     p.deregisterJobDefinition,
		"SubmitJob":                   p.submitJob,
		"DescribeJobs":                p.describeJobs,
		"ListJobs":                    p.listJobs,
		"TerminateJob":                p.terminateJob,
		"CancelJob":                   p.cancelJob,
	}
	h, ok := handlers[op]
	if !ok {
		// kumo answers what it has, and refuses the rest in its way.
		resp, out, err := p.batchUpstream(r.Context(), r, r.Method, r.URL.RequestURI(), body)
		if err != nil {
			p.forwardFailed(w, r, err)
			return
		}
		copyResponse(w, resp, out)
		return
	}
	h(w, c)
}

// batchUpstream sends a Batch request to kumo with the headers of the
// client's request r (or, when r is nil, a signature scope naming Batch,
// by which kumo routes), and returns kumo's answer.
func (p *Proxy) batchUpstream(ctx context.Context, r *http.Request, method, uri string, body []byte) (*http.Response, []byte, error) {
	u := p.upstream.String() + uri
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if r != nil {
		req.Header = r.Header.Clone()
		req.Host = r.Host
	} else {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=localecs/20260101/us-east-1/batch/aws4_request, SignedHeaders=host, Signature=0")
	}
	req.Header.Del("Accept-Encoding")
	return p.send(req, body)
}

// batchCall is batchUpstream for a JSON request of op (POST
// /v1/<op lowercased>) that decodes kumo's answer into out. A refusal of
// kumo's is returned as a *batchError.
func (p *Proxy) batchCall(ctx context.Context, r *http.Request, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	resp, b, err := p.batchUpstream(ctx, r, http.MethodPost, "/v1/"+strings.ToLower(op), body)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(b, &e)
		if e.Type == "" {
			e.Type = "ServerException"
		}
		return &batchError{status: resp.StatusCode, code: e.Type, msg: e.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s: kumo's answer: %w", op, err)
	}
	return nil
}

// batchError is a Batch error to answer as it is.
type batchError struct {
	status    int
	code, msg string
}

func (e *batchError) Error() string { return e.code + ": " + e.msg }

// clientException is Batch's ClientException: "These errors are usually
// caused by a client action ... specifying an identifier that's not
// valid." https://docs.aws.amazon.com/batch/latest/APIReference/CommonErrors.html
func clientException(format string, a ...any) *batchError {
	return &batchError{status: http.StatusBadRequest, code: "ClientException", msg: fmt.Sprintf(format, a...)}
}

// answerBatchError writes err: a *batchError as it is, anything else as
// kumo being unreachable.
func (p *Proxy) answerBatchError(w http.ResponseWriter, r *http.Request, err error) {
	var be *batchError
	if errors.As(err, &be) {
		writeBatchError(w, be.status, be.code, be.msg)
		return
	}
	p.forwardFailed(w, r, err)
}

func writeBatchJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic("localecs: marshal answer: " + err.Error()) // only the proxy's own types: a bug
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// writeBatchError writes a REST-JSON error, which the SDK reads from
// X-Amzn-ErrorType.
func writeBatchError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("X-Amzn-ErrorType", code)
	b, _ := json.Marshal(map[string]string{"__type": code, "message": msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// batchName is the name in a Batch name-or-ARN reference.
func batchName(ref string) string {
	if !strings.HasPrefix(ref, "arn:") {
		return ref
	}
	return ref[strings.LastIndex(ref, "/")+1:]
}

// resourceName is the pattern of compute environment, job queue and job
// definition names: "up to 128 letters (uppercase and lowercase), numbers,
// hyphens, and underscores".
// https://docs.aws.amazon.com/batch/latest/APIReference/API_CreateJobQueue.html
var resourceName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// signalLocked wakes the jobs waiting for a compute environment or queue
// to change.
func (p *Proxy) signalLocked() {
	close(p.batchChanged)
	p.batchChanged = make(chan struct{})
}

// --- compute environments ---

type computeEnvironmentInput struct {
	ComputeEnvironmentName string            `json:"computeEnvironmentName"`
	Type                   string            `json:"type"`
	State                  string            `json:"state"`
	ServiceRole            string            `json:"serviceRole"`
	Tags                   map[string]string `json:"tags"`
	ComputeResources       *struct {
		Type          string   `json:"type"`
		InstanceTypes []string `json:"instanceTypes"`
		InstanceRole  string   `json:"instanceRole"`
		MaxvCpus      *int     `json:"maxvCpus"`
		Subnets       []string `json:"subnets"`
	} `json:"computeResources"`
}

// createComputeEnvironment checks the request as Batch does, forwards it
// to kumo and keeps the new environment CREATING for a while. An instance
// profile that does not exist, or holds no role, makes it INVALID, as Batch
// cannot launch instances with it.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_CreateComputeEnvironment.html
func (p *Proxy) createComputeEnvironment(w http.ResponseWriter, c batchOpRequest) {
	var in computeEnvironmentInput
	if err := json.Unmarshal(c.body, &in); err != nil {
		writeBatchError(w, http.StatusBadRequest, "ClientException", "CreateComputeEnvironment: "+err.Error())
		return
	}
	if err := checkComputeEnvironment(in); err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	if err := checkTags(in.Tags); err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	settled, reason, role := BatchValid, "", ""
	if cr := in.ComputeResources; cr != nil && cr.InstanceRole != "" {
		var err error
		if role, err = p.instanceProfileRole(c.r.Context(), cr.InstanceRole); err != nil {
			settled, reason = BatchInvalid, "CLIENT_ERROR - "+err.Error()
		}
	}
	var out struct {
		ComputeEnvironmentArn  string `json:"computeEnvironmentArn"`
		ComputeEnvironmentName string `json:"computeEnvironmentName"`
	}
	if err := p.batchCall(c.r.Context(), c.r, c.op, json.RawMessage(c.body), &out); err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	b := &batchResource{
		kind: "compute-environment", name: in.ComputeEnvironmentName, arn: out.ComputeEnvironmentArn,
		state: in.State, settled: settled, reason: reason, tags: maps.Clone(in.Tags),
		instanceRole: role, serviceRole: in.ServiceRole,
	}
	if b.state == "" {
		b.state = BatchEnabled
	}
	if cr := in.ComputeResources; cr != nil {
		b.computeType, b.instanceTypes = cr.Type, slices.Clone(cr.InstanceTypes)
	}
	b.begin(BatchCreating, c.now)
	p.mu.Lock()
	p.envs[b.name] = b
	p.signalLocked()
	p.mu.Unlock()
	writeBatchJSON(w, out)
}

// checkComputeEnvironment refuses what Batch refuses of a new compute
// environment: a name outside the pattern, an unknown type or state, and a
// managed environment without its compute resources (type, maxvCpus,
// subnets; instance types and an instance role on EC2 and Spot).
// https://docs.aws.amazon.com/batch/latest/APIReference/API_ComputeResource.html
func checkComputeEnvironment(in computeEnvironmentInput) error {
	switch {
	case !resourceName.MatchString(in.ComputeEnvironmentName):
		return clientException("computeEnvironmentName %q must be 1 to 128 letters, numbers, hyphens and underscores", in.ComputeEnvironmentName)
	case in.Type != "MANAGED" && in.Type != "UNMANAGED":
		return clientException("type must be MANAGED or UNMANAGED, not %q", in.Type)
	case in.State != "" && in.State != BatchEnabled && in.State != BatchDisabled:
		return clientException("state must be ENABLED or DISABLED, not %q", in.State)
	case in.Type == "UNMANAGED":
		return nil
	}
	cr := in.ComputeResources
	switch {
	case cr == nil:
		return clientException("computeResources is required for a MANAGED compute environment")
	case !slices.Contains([]string{"EC2", "SPOT", "FARGATE", "FARGATE_SPOT"}, cr.Type):
		return clientException("computeResources.type must be EC2, SPOT, FARGATE or FARGATE_SPOT, not %q", cr.Type)
	case cr.MaxvCpus == nil:
		return clientException("computeResources.maxvCpus is required")
	case len(cr.Subnets) == 0:
		return clientException("computeResources.subnets is required")
	case (cr.Type == "EC2" || cr.Type == "SPOT") && len(cr.InstanceTypes) == 0:
		return clientException("computeResources.instanceTypes is required for %s resources", cr.Type)
	case (cr.Type == "EC2" || cr.Type == "SPOT") && cr.InstanceRole == "":
		return clientException("computeResources.instanceRole is required for %s resources", cr.Type)
	}
	return nil
}

// instanceProfileRole returns the ARN of the role in the instance profile
// profile (a name or an ARN), as EC2 gives it to the instances of a
// compute environment, read from kumo's IAM.
func (p *Proxy) instanceProfileRole(ctx context.Context, profile string) (string, error) {
	name := profile[strings.LastIndex(profile, "/")+1:]
	form := url.Values{"Action": {"GetInstanceProfile"}, "Version": {"2010-05-08"}, "InstanceProfileName": {name}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.upstream.String()+"/", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=localecs/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := p.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("the instance profile %s does not exist", name)
	}
	// <Roles><member><Arn>...: the first Arn under Roles is the role's.
	_, roles, ok := strings.Cut(string(b), "<Roles>")
	if !ok {
		return "", fmt.Errorf("the instance profile %s holds no role", name)
	}
	_, arn, ok := strings.Cut(roles, "<Arn>")
	if !ok {
		return "", fmt.Errorf("the instance profile %s holds no role", name)
	}
	arn, _, _ = strings.Cut(arn, "</Arn>")
	return arn, nil
}

// adoptEnvs makes sure the proxy keeps a record of each named compute
// environment kumo holds (one made before the proxy started, or directly
// in kumo), from kumo's description.
func (p *Proxy) adoptEnvs(ctx context.Context, r *http.Request, names []string) error {
	var missing []string
	p.mu.Lock()
	for _, n := range names {
		if p.envs[n] == nil {
			missing = append(missing, n)
		}
	}
	p.mu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	var out struct {
		ComputeEnvironments []map[string]any `json:"computeEnvironments"`
	}
	if err := p.batchCall(ctx, r, "DescribeComputeEnvironments", map[string]any{"computeEnvironments": missing}, &out); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.adoptEnvsLocked(out.ComputeEnvironments)
	return nil
}

// adoptEnvsLocked records kumo's compute environments the proxy has no
// record of, as kumo describes them.
func (p *Proxy) adoptEnvsLocked(items []map[string]any) {
	for _, it := range items {
		name, _ := it["computeEnvironmentName"].(string)
		if name == "" || p.envs[name] != nil {
			continue
		}
		b := &batchResource{kind: "compute-environment", name: name, settled: BatchValid, state: BatchEnabled}
		b.arn, _ = it["computeEnvironmentArn"].(string)
		if s, _ := it["state"].(string); s != "" {
			b.state = s
		}
		if s, _ := it["status"].(string); s == BatchInvalid {
			b.settled = s
		}
		b.tags = stringMap(it["tags"])
		if cr, ok := it["computeResources"].(map[string]any); ok {
			b.computeType, _ = cr["type"].(string)
			b.instanceTypes = stringList(cr["instanceTypes"])
		}
		b.serviceRole, _ = it["serviceRole"].(string)
		p.envs[name] = b
	}
}

func stringMap(v any) map[string]string {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k], _ = v.(string)
	}
	return out
}

func stringList(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// describeComputeEnvironments asks kumo and answers its list with what the
// proxy keeps: state, status and reason, tags and updates (service role,
// compute resources); environments deleted here are left out.
func (p *Proxy) describeComputeEnvironments(w http.ResponseWriter, c batchOpRequest) {
	p.describeBatch(w, c, batchListing{
		list: "computeEnvironments", name: "computeEnvironmentName", adopt: p.adoptEnvsLocked, table: p.envs,
		overlay: func(it map[string]any, b *batchResource) {
			setOrDelete(it, "serviceRole", b.serviceRole)
			if len(b.resources) > 0 {
				cr, _ := it["computeResources"].(map[string]any)
				if cr == nil {
					cr = map[string]any{}
				}
				maps.Copy(cr, b.resources)
				it["computeResources"] = cr
			}
		},
	})
}

// batchListing is what describeBatch needs of one kind of resource: the
// answer's list and name fields, how to adopt what kumo lists that the
// proxy does not know, the proxy's table of that kind, and what the kind
// adds to an item (under Proxy.mu).
type batchListing struct {
	list, name string
	adopt      func(items []map[string]any)
	table      map[string]*batchResource
	overlay    func(it map[string]any, b *batchResource)
}

// describeBatch asks kumo and answers its list with what the proxy keeps
// of each item: state, status and reason, tags, and what l.overlay adds;
// items deleted here are left out.
func (p *Proxy) describeBatch(w http.ResponseWriter, c batchOpRequest, l batchListing) {
	var out map[string]any
	if err := p.batchCall(c.r.Context(), c.r, c.op, json.RawMessage(c.body), &out); err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	items := mapList(out[l.list])
	p.mu.Lock()
	l.adopt(items)
	kept := []map[string]any{}
	for _, it := range items {
		name, _ := it[l.name].(string)
		b := l.table[name]
		if b == nil {
			kept = append(kept, it)
			continue
		}
		if !b.usable(c.now, p.opts.BatchTransition) {
			continue
		}
		it["state"], it["status"] = b.state, b.status(c.now, p.opts.BatchTransition)
		setOrDelete(it, "statusReason", b.reason)
		if len(b.tags) > 0 {
			it["tags"] = maps.Clone(b.tags)
		} else {
			delete(it, "tags")
		}
		l.overlay(it, b)
		kept = append(kept, it)
	}
	p.mu.Unlock()
	out[l.list] = kept
	writeBatchJSON(w, out)
}

func mapList(v any) []map[string]any {
	l, _ := v.([]any)
	var out []map[string]any
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func setOrDelete(m map[string]any, k, v string) {
	if v == "" {
		delete(m, k)
		return
	}
	m[k] = v
}

// updateComputeEnvironment applies state, serviceRole and computeResources
// changes (kumo has no UpdateComputeEnvironment) and keeps the environment
// UPDATING for a while.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_UpdateComputeEnvironment.html
func (p *Proxy) updateComputeEnvironment(w http.ResponseWriter, c batchOpRequest) {
	var in struct {
		ComputeEnvironment string         `json:"computeEnvironment"`
		State              string         `json:"state"`
		ServiceRole        string         `json:"serviceRole"`
		ComputeResources   map[string]any `json:"computeResources"`
	}
	if err := json.Unmarshal(c.body, &in); err != nil {
		writeBatchError(w, http.StatusBadRequest, "ClientException", "UpdateComputeEnvironment: "+err.Error())
		return
	}
	if in.State != "" && in.State != BatchEnabled && in.State != BatchDisabled {
		p.answerBatchError(w, c.r, clientException("state must be ENABLED or DISABLED, not %q", in.State))
		return
	}
	name := batchName(in.ComputeEnvironment)
	if err := p.adoptEnvs(c.r.Context(), c.r, []string{name}); err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	p.mu.Lock()
	b := p.envs[name]
	if !b.usable(c.now, p.opts.BatchTransition) || b.change == BatchDeleting {
		p.mu.Unlock()
		p.answerBatchError(w, c.r, clientException("Compute environment %s not found", in.ComputeEnvironment))
		return
	}
	if in.State != "" {
		b.state = in.State
	}
	if in.ServiceRole != "" {
		b.serviceRole = in.ServiceRole
	}
	if len(in.ComputeResources) > 0 {
		if b.resources == nil {
			b.resources = map[string]any{}
		}
		maps.Copy(b.resources, in.ComputeResources)
		if it := stringList(in.ComputeResources["instanceTypes"]); len(it) > 0 {
			b.instanceTypes = it
		}
	}
	b.begin(BatchUpdating, c.now)
	p.signalLocked()
	out := map[string]string{"computeEnvironmentName": b.name, "computeEnvironmentArn": b.arn}
	p.mu.Unlock()
	writeBatchJSON(w, out)
}

// deleteComputeEnvironment refuses, as Batch does, an environment that is
// ENABLED, that a job queue still names (a queue being deleted included,
// until it is gone), or that is being modified; otherwise the environment
// is DELETING for a while and then gone. "Before you can delete a compute
// environment, you must set its state to DISABLED with the
// UpdateComputeEnvironment API operation and disassociate it from any job
// queues with the UpdateJobQueue API operation."
// https://docs.aws.amazon.com/batch/latest/APIReference/API_DeleteComputeEnvironment.html
// Batch's message for a queue that still names it is "Cannot delete, found
// existing JobQueue relationship", and for a resource mid-change "Cannot
// delete, resource is being modified"; the one for an ENABLED environment
// is the proxy's own.
func (p *Proxy) deleteComputeEnvironment(w http.ResponseWriter, c batchOpRequest) {
	var in struct {
		ComputeEnvironment string `json:"computeEnvironment"`
	}
	if err := json.Unmarshal(c.body, &in); err != nil {
		writeBatchError(w, http.StatusBadRequest, "ClientException", "DeleteComputeEnvironment: "+err.Error())
		return
	}
	name := batchName(in.ComputeEnvironment)
	if err := p.adoptEnvs(c.r.Context(), c.r, []string{name}); err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	// Every queue kumo holds, so a queue made elsewhere counts too.
	if err := p.adoptAllQueues(c.r.Context(), c.r); err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.envs[name]
	var err error
	switch {
	case !b.usable(c.now, p.opts.BatchTransition):
		err = clientException("Compute environment %s not found", in.ComputeEnvironment)
	case b.change == BatchDeleting:
		// Already on its way: nothing more to do.
	case b.state != BatchDisabled:
		err = clientException("Cannot delete, compute environment %s is ENABLED: disable it first (UpdateComputeEnvironment state DISABLED)", b.name)
	case b.status(c.now, p.opts.BatchTransition) != b.settled:
		err = clientException("Cannot delete, resource is being modified")
	case p.queueNamingLocked(b.name, c.now) != "":
		err = clientException("Cannot delete, found existing JobQueue relationship")
	default:
		b.begin(BatchDeleting, c.now)
		p.signalLocked()
	}
	if err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	writeBatchJSON(w, struct{}{})
}

// queueNamingLocked is a job queue that still names the compute
// environment env, or "".
func (p *Proxy) queueNamingLocked(env string, now time.Time) string {
	for _, q := range p.queues {
		if q.usable(now, p.opts.BatchTransition) && slices.Contains(q.order, env) {
			return q.name
		}
	}
	return ""
}

// finishDeletions removes from kumo the environments and queues whose
// deletion has run its course, queues first (a queue holds its
// environments), and forgets them.
func (p *Proxy) finishDeletions(r *http.Request) {
	now := p.opts.Now()
	var done []*batchResource
	p.mu.Lock()
	for _, m := range []map[string]*batchResource{p.queues, p.envs} {
		for _, b := range m {
			if b.change == BatchDeleting && !b.gone && !now.Before(b.since.Add(p.opts.BatchTransition)) {
				b.gone = true
				done = append(done, b)
			}
		}
	}
	p.mu.Unlock()
	slices.SortStableFunc(done, func(a, b *batchResource) int { return strings.Compare(b.kind, a.kind) }) // job-queue first
	for _, b := range done {
		op, field := "DeleteJobQueue", "jobQueue"
		if b.kind == "compute-environment" {
			op, field = "DeleteComputeEnvironment", "computeEnvironment"
		}
		if err := p.batchCall(r.Context(), r, op, map[string]string{field: b.name}, nil); err != nil {
			var be *batchError
			if !errors.As(err, &be) {
				// kumo unreachable: try again with the next request.
				p.mu.Lock()
				b.gone = false
				p.mu.Unlock()
				continue
			}
		}
		p.mu.Lock()
		m := p.queues
		if b.kind == "compute-environment" {
			m = p.envs
		}
		if m[b.name] == b {
			delete(m, b.name)
		}
		p.signalLocked()
		p.mu.Unlock()
	}
}

// --- job queues ---

type computeEnvironmentOrder struct {
	ComputeEnvironment string `json:"computeEnvironment"`
	Order              int    `json:"order"`
}

// envOrder is the names of the environments of a queue, by order.
func envOrder(order []computeEnvironmentOrder) []string {
	sorted := slices.Clone(order)
	slices.SortStableFunc(sorted, func(a, b computeEnvironmentOrder) int { return a.Order - b.Order })
	names := make([]string, len(sorted))
	for i, o := range sorted {
		names[i] = batchName(o.ComputeEnvironment)
	}
	return names
}

// checkQueueEnvsLocked refuses environments a queue may not hold: ones
// that do not exist, and ones not VALID. "Compute environments must be in
// the VALID state before you can associate them with a job queue."
// https://docs.aws.amazon.com/batch/latest/APIReference/API_ComputeEnvironmentOrder.html
// At most 3 per queue:
// https://docs.aws.amazon.com/batch/latest/APIReference/API_CreateJobQueue.html
func (p *Proxy) checkQueueEnvsLocked(names []string, now time.Time) error {
	if len(names) == 0 || len(names) > 3 {
		return clientException("computeEnvironmentOrder must name 1 to 3 compute environments")
	}
	for _, n := range names {
		b := p.envs[n]
		switch {
		case !b.usable(now, p.opts.BatchTransition) || b.change == BatchDeleting:
			return clientException("computeEnvironmentOrder: compute environment %s does not exist", n)
		case b.status(now, p.opts.BatchTransition) != BatchValid:
			return clientException("computeEnvironmentOrder: compute environment %s is %s, not VALID", n, b.status(now, p.opts.BatchTransition))
		}
	}
	return nil
}

// createJobQueue checks the queue's environments, forwards it to kumo and
// keeps it CREATING for a while.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_CreateJobQueue.html
func (p *Proxy) createJobQueue(w http.ResponseWriter, c batchOpRequest) {
	var in struct {
		JobQueueName            string                    `json:"jobQueueName"`
		State                   string                    `json:"state"`
		Priority                *int                      `json:"priority"`
		ComputeEnvironmentOrder []computeEnvironmentOrder `json:"computeEnvironmentOrder"`
		Tags                    map[string]string         `json:"tags"`
	}
	if err := json.Unmarshal(c.body, &in); err != nil {
		writeBatchError(w, http.StatusBadRequest, "ClientException", "CreateJobQueue: "+err.Error())
		return
	}
	names := envOrder(in.ComputeEnvironmentOrder)
	var err error
	switch {
	case !resourceName.MatchString(in.JobQueueName):
		err = clientException("jobQueueName %q must be 1 to 128 letters, numbers, hyphens and underscores", in.JobQueueName)
	case in.State != "" && in.State != BatchEnabled && in.State != BatchDisabled:
		err = clientException("state must be ENABLED or DISABLED, not %q", in.State)
	case in.Priority == nil:
		err = clientException("priority is required")
	default:
		err = checkTags(in.Tags)
	}
	if err == nil {
		err = p.adoptEnvs(c.r.Context(), c.r, names)
	}
	if err == nil {
		p.mu.Lock()
		err = p.checkQueueEnvsLocked(names, c.now)
		p.mu.Unlock()
	}
	if err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	var out struct {
		JobQueueArn  string `json:"jobQueueArn"`
		JobQueueName string `json:"jobQueueName"`
	}
	if err := p.batchCall(c.r.Context(), c.r, c.op, json.RawMessage(c.body), &out); err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	q := &batchResource{kind: "job-queue", name: in.JobQueueName, arn: out.JobQueueArn, state: in.State,
		settled: BatchValid, tags: maps.Clone(in.Tags), order: names}
	if q.state == "" {
		q.state = BatchEnabled
	}
	q.begin(BatchCreating, c.now)
	p.mu.Lock()
	p.queues[q.name] = q
	p.signalLocked()
	p.mu.Unlock()
	writeBatchJSON(w, out)
}

// adoptQueues makes sure the proxy keeps a record of each named job queue
// kumo holds, and of its compute environments.
func (p *Proxy) adoptQueues(ctx context.Context, r *http.Request, names []string) error {
	var missing []string
	p.mu.Lock()
	for _, n := range names {
		if p.queues[n] == nil {
			missing = append(missing, n)
		}
	}
	p.mu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	return p.adoptQueuesFrom(ctx, r, map[string]any{"jobQueues": missing})
}

// adoptAllQueues is adoptQueues for every queue kumo holds.
func (p *Proxy) adoptAllQueues(ctx context.Context, r *http.Request) error {
	return p.adoptQueuesFrom(ctx, r, map[string]any{})
}

func (p *Proxy) adoptQueuesFrom(ctx context.Context, r *http.Request, in map[string]any) error {
	var out struct {
		JobQueues []map[string]any `json:"jobQueues"`
	}
	if err := p.batchCall(ctx, r, "DescribeJobQueues", in, &out); err != nil {
		return err
	}
	var envs []string
	p.mu.Lock()
	p.adoptQueuesLocked(out.JobQueues)
	for _, it := range out.JobQueues {
		name, _ := it["jobQueueName"].(string)
		if q := p.queues[name]; q != nil {
			envs = append(envs, q.order...)
		}
	}
	p.mu.Unlock()
	return p.adoptEnvs(ctx, r, envs)
}

func (p *Proxy) adoptQueuesLocked(items []map[string]any) {
	for _, it := range items {
		name, _ := it["jobQueueName"].(string)
		if name == "" || p.queues[name] != nil {
			continue
		}
		q := &batchResource{kind: "job-queue", name: name, settled: BatchValid, state: BatchEnabled}
		q.arn, _ = it["jobQueueArn"].(string)
		if s, _ := it["state"].(string); s != "" {
			q.state = s
		}
		q.tags = stringMap(it["tags"])
		var order []computeEnvironmentOrder
		for _, o := range mapList(it["computeEnvironmentOrder"]) {
			ce, _ := o["computeEnvironment"].(string)
			n, _ := o["order"].(float64)
			order = append(order, computeEnvironmentOrder{ComputeEnvironment: ce, Order: int(n)})
		}
		q.order = envOrder(order)
		p.queues[name] = q
	}
}

// describeJobQueues asks kumo and answers with what the proxy keeps:
// describeBatch's, the priority and the environments' order.
func (p *Proxy) describeJobQueues(w http.ResponseWriter, c batchOpRequest) {
	p.describeBatch(w, c, batchListing{
		list: "jobQueues", name: "jobQueueName", adopt: p.adoptQueuesLocked, table: p.queues,
		overlay: func(it map[string]any, q *batchResource) {
			if q.priority != nil {
				it["priority"] = q.priority
			}
			order := make([]map[string]any, len(q.order))
			for i, n := range q.order {
				arn := n
				if e := p.envs[n]; e != nil && e.arn != "" {
					arn = e.arn
				}
				order[i] = map[string]any{"computeEnvironment": arn, "order": i + 1}
			}
			it["computeEnvironmentOrder"] = order
		},
	})
}

// updateJobQueue applies state, priority and computeEnvironmentOrder
// changes (kumo has no UpdateJobQueue) and keeps the queue UPDATING for a
// while.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_UpdateJobQueue.html
func (p *Proxy) updateJobQueue(w http.ResponseWriter, c batchOpRequest) {
	var in struct {
		JobQueue                string                    `json:"jobQueue"`
		State                   string                    `json:"state"`
		Priority                any                       `json:"priority"`
		ComputeEnvironmentOrder []computeEnvironmentOrder `json:"computeEnvironmentOrder"`
	}
	if err := json.Unmarshal(c.body, &in); err != nil {
		writeBatchError(w, http.StatusBadRequest, "ClientException", "UpdateJobQueue: "+err.Error())
		return
	}
	if in.State != "" && in.State != BatchEnabled && in.State != BatchDisabled {
		p.answerBatchError(w, c.r, clientException("state must be ENABLED or DISABLED, not %q", in.State))
		return
	}
	name := batchName(in.JobQueue)
	order := envOrder(in.ComputeEnvironmentOrder)
	err := p.adoptQueues(c.r.Context(), c.r, []string{name})
	if err == nil {
		err = p.adoptEnvs(c.r.Context(), c.r, order)
	}
	if err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queues[name]
	switch {
	case !q.usable(c.now, p.opts.BatchTransition) || q.change == BatchDeleting:
		err = clientException("Job queue %s not found", in.JobQueue)
	case in.ComputeEnvironmentOrder != nil:
		err = p.checkQueueEnvsLocked(order, c.now)
	}
	if err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	if in.State != "" {
		q.state = in.State
	}
	if in.Priority != nil {
		q.priority = in.Priority
	}
	if in.ComputeEnvironmentOrder != nil {
		q.order = order
	}
	q.begin(BatchUpdating, c.now)
	p.signalLocked()
	writeBatchJSON(w, map[string]string{"jobQueueName": q.name, "jobQueueArn": q.arn})
}

// deleteJobQueue refuses, as Batch does, a queue that is ENABLED or being
// modified; otherwise the queue is DELETING for a while and then gone, and
// its unfinished jobs are terminated. "You must first disable submissions
// for a queue with the UpdateJobQueue operation. All jobs in the queue are
// eventually terminated when you delete a job queue."
// https://docs.aws.amazon.com/batch/latest/APIReference/API_DeleteJobQueue.html
// Batch's message for a queue mid-change is "Cannot delete, resource is
// being modified"; the one for an ENABLED queue is the proxy's own.
func (p *Proxy) deleteJobQueue(w http.ResponseWriter, c batchOpRequest) {
	var in struct {
		JobQueue string `json:"jobQueue"`
	}
	if err := json.Unmarshal(c.body, &in); err != nil {
		writeBatchError(w, http.StatusBadRequest, "ClientException", "DeleteJobQueue: "+err.Error())
		return
	}
	name := batchName(in.JobQueue)
	if err := p.adoptQueues(c.r.Context(), c.r, []string{name}); err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queues[name]
	var err error
	switch {
	case !q.usable(c.now, p.opts.BatchTransition):
		err = clientException("Job queue %s not found", in.JobQueue)
	case q.change == BatchDeleting:
	case q.state != BatchDisabled:
		err = clientException("Cannot delete, job queue %s is ENABLED: disable it first (UpdateJobQueue state DISABLED)", q.name)
	case q.status(c.now, p.opts.BatchTransition) != q.settled:
		err = clientException("Cannot delete, resource is being modified")
	default:
		q.begin(BatchDeleting, c.now)
		for _, j := range p.jobs {
			if j.queue == q.name {
				p.stopJobLocked(j, stopTerminated, "The job queue was deleted")
			}
		}
		p.signalLocked()
	}
	if err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	writeBatchJSON(w, struct{}{})
}

// --- tags ---

// checkTags refuses tags Batch refuses: more than 50, keys of 1 to 128
// characters not starting with "aws:", values of at most 256.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_TagResource.html
func checkTags(tags map[string]string) error {
	if len(tags) > 50 {
		return clientException("at most 50 tags, not %d", len(tags))
	}
	for k, v := range tags {
		if k == "" || len(k) > 128 || len(v) > 256 || strings.HasPrefix(strings.ToLower(k), "aws:") {
			return clientException("tag %q=%q: keys are 1 to 128 characters not starting with aws:, values at most 256", k, v)
		}
	}
	return nil
}

// taggedLocked returns the tags of the Batch resource arn names, for the
// tag calls to read and change, or an error when there is none.
func (p *Proxy) taggedLocked(arn string, now time.Time) (*map[string]string, error) {
	_, res, ok := strings.Cut(arn, ":batch:")
	if ok {
		parts := strings.SplitN(res, ":", 3) // REGION:ACCOUNT:KIND/ID
		ok = len(parts) == 3
		if ok {
			res = parts[2]
		}
	}
	kind, id, _ := strings.Cut(res, "/")
	if ok {
		switch kind {
		case "compute-environment":
			if b := p.envs[id]; b.usable(now, p.opts.BatchTransition) {
				return &b.tags, nil
			}
		case "job-queue":
			if q := p.queues[id]; q.usable(now, p.opts.BatchTransition) {
				return &q.tags, nil
			}
		case "job-definition":
			if d := p.jobDefs[id]; d != nil {
				return &d.tags, nil
			}
		case "job":
			if j := p.jobs[id]; j != nil {
				return &j.Tags, nil
			}
		}
	}
	return nil, clientException("Resource %s not found", arn)
}

// tagArn is the resource ARN of a tag call: the path after /v1/tags/.
func tagArn(r *http.Request) string {
	return strings.TrimPrefix(r.URL.Path, "/v1/tags/")
}

// adoptTagged records the environment or queue a tag call names, when
// kumo holds it and the proxy has no record of it yet.
func (p *Proxy) adoptTagged(r *http.Request, arn string) error {
	switch {
	case strings.Contains(arn, ":compute-environment/"):
		return p.adoptEnvs(r.Context(), r, []string{batchName(arn)})
	case strings.Contains(arn, ":job-queue/"):
		return p.adoptQueues(r.Context(), r, []string{batchName(arn)})
	}
	return nil
}

func (p *Proxy) tagResource(w http.ResponseWriter, c batchOpRequest) {
	var in struct {
		Tags map[string]string `json:"tags"`
	}
	if err := json.Unmarshal(c.body, &in); err != nil {
		writeBatchError(w, http.StatusBadRequest, "ClientException", "TagResource: "+err.Error())
		return
	}
	arn := tagArn(c.r)
	err := checkTags(in.Tags)
	if err == nil {
		err = p.adoptTagged(c.r, arn)
	}
	if err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	tags, err := p.taggedLocked(arn, c.now)
	if err == nil {
		merged := maps.Clone(*tags)
		if merged == nil {
			merged = map[string]string{}
		}
		maps.Copy(merged, in.Tags)
		if err = checkTags(merged); err == nil {
			*tags = merged
		}
	}
	if err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	writeBatchJSON(w, struct{}{})
}

func (p *Proxy) untagResource(w http.ResponseWriter, c batchOpRequest) {
	arn := tagArn(c.r)
	if err := p.adoptTagged(c.r, arn); err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	tags, err := p.taggedLocked(arn, c.now)
	if err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	for _, k := range c.r.URL.Query()["tagKeys"] {
		delete(*tags, k)
	}
	writeBatchJSON(w, struct{}{})
}

func (p *Proxy) listTagsForResource(w http.ResponseWriter, c batchOpRequest) {
	arn := tagArn(c.r)
	if err := p.adoptTagged(c.r, arn); err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	tags, err := p.taggedLocked(arn, c.now)
	if err != nil {
		p.answerBatchError(w, c.r, err)
		return
	}
	out := maps.Clone(*tags)
	if out == nil {
		out = map[string]string{}
	}
	writeBatchJSON(w, map[string]any{"tags": out})
}
