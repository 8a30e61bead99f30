package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/sivchari/kumo"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/internal/localecs"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
	"github.com/cloudpipe/cloudpipe/status"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// Settings of the local AWS the demo sets up.
const (
	// region is the agent's region, where its state bucket is. A
	// workflow may name another (see regions.go).
	region = "us-east-1"
	// runnerImage goes into the task definitions' init container, as the
	// agent's --runner-image would; the local ECS skips that container.
	runnerImage = "cloudpipe/agent:demo"
	agentID     = "cloudpipe-demo"
	// pollSchedule is how often the demo looks for new commits: the
	// agent's default is every minute, too slow to watch a change land.
	pollSchedule = "@every 5s"
	// defaultRunStatusEvery is the loop's run-status tick, which also
	// starts tasks again for files left waiting (the agent's is a minute),
	// so that a task that cannot start is retried, and its file
	// dead-lettered, while one watches.
	defaultRunStatusEvery = 2 * time.Second
)

// demo is one run of the demo: the local AWS and what it runs.
type demo struct {
	opts     options
	out      *console
	log      *slog.Logger
	stderr   io.Writer
	exe      string
	dir      string     // the demo's temporary directory: repository and task directories
	baseEnv  []string   // of every child process
	endpoint string     // the demo's port (front.go, then the AWS rules, the local ECS, kumo): every client's endpoint
	awsCfg   aws.Config // the operator's: uploads, the network; IAM does not check it
	op       *operator  // the operator's clients, per region
	agentCfg aws.Config // the agent's, signed as its role
	rules    *awsrules.Proxy
	stages   deployment
	tracker  *tracker
}

// run runs the demo until ctx ends, or with --once until the sample has
// been processed. Progress goes to stdout, logs to opts.stderr.
func run(ctx context.Context, opts options, stdout io.Writer) error {
	if opts.once {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.timeout)
		defer cancel()
	}
	d, err := newDemo(opts, stdout)
	if err != nil {
		return err
	}
	defer d.removeDir()

	// Deferred calls stop what they stand for in reverse order of start:
	// the loop and the handlers before the tasks and the emulator.
	stopAWS, err := d.startAWS()
	if err != nil {
		return err
	}
	defer stopAWS()
	code := d.zipCode(d.codeFile())
	defer code() // the zipping goroutine is ours: wait for it on every path
	d.printIntro()
	a, err := d.startAgent(ctx, code)
	if err != nil {
		return err
	}
	defer a.handlers.stop()
	first, err := d.firstPass(ctx, a)
	if err != nil {
		return err
	}
	if opts.once {
		return d.finish(ctx, a.loop, first)
	}
	d.stayUp(ctx, a.loop, a.repoDir)
	return nil
}

// newDemo returns a demo with its options' defaults filled in and its
// temporary directory made; removeDir removes that directory.
func newDemo(opts options, stdout io.Writer) (*demo, error) {
	if opts.stderr == nil {
		opts.stderr = os.Stderr
	}
	d := &demo{
		opts:   opts,
		out:    &console{w: stdout},
		log:    newLogger(opts.stderr, opts.logLevel.String()),
		stderr: opts.stderr,
		exe:    opts.executable,
	}
	var err error
	if d.exe == "" {
		if d.exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the demo's executable: %w", err)
		}
	}
	if d.dir, err = os.MkdirTemp("", "cloudpipe-demo-"); err != nil {
		return nil, err
	}
	return d, nil
}

// removeDir removes the demo's temporary directory.
func (d *demo) removeDir() {
	if err := os.RemoveAll(d.dir); err != nil {
		d.log.Warn("temporary directory not removed", "dir", d.dir, "err", err)
	}
}

// codeFile is the file zipped as the stage functions' code: --code-file,
// or the demo's own executable, as the agent zips itself.
func (d *demo) codeFile() string {
	if d.opts.codeFile != "" {
		return d.opts.codeFile
	}
	return d.exe
}

// printIntro says what the demo runs and where.
func (d *demo) printIntro() {
	d.out.printf("cloudpipe demo: AWS is the kumo emulator in this process, at %s.\n", d.endpoint)
	d.out.printf("Nothing runs in a container: stage functions and tasks are processes of this program on this machine.\n")
	if d.opts.port != defaultPort {
		d.out.printf("warning: kumo delivers S3 events only to localhost:%d, so uploads trigger nothing unless something there forwards to %s\n",
			defaultPort, d.endpoint)
	}
}

// localAgent is the agent the demo runs: its reconcile loop, what the loop
// reads and deploys to, and the stage functions' handlers.
type localAgent struct {
	loop        *pipesync.Loop
	inv         *inventory.Store
	handlers    *lambdas
	repoDir     string
	stateBucket string
}

// startAgent does what deploying the agent does: the config repository,
// bootstrap, and the reconcile loop with the zip that code returns as the
// stage functions' code. The caller stops the returned handlers.
func (d *demo) startAgent(ctx context.Context, code func() ([]byte, error)) (*localAgent, error) {
	repoDir, err := d.configRepo()
	if err != nil {
		return nil, err
	}
	stateBucket, network, err := d.bootstrap(ctx)
	if err != nil {
		return nil, err
	}
	// The other regions the workflows name, as an operator prepares them
	// before deploying there; a later commit's new region is prepared
	// when the agent first deploys to it (preparingProvisioner).
	regions := newRegionPrep(d, stateBucket)
	if err := regions.prepareRepo(ctx, repoDir); err != nil {
		return nil, err
	}
	zip, err := code()
	if err != nil {
		return nil, err
	}
	handlers := newLambdas(d.exe, strings.TrimPrefix(d.rules.URL(), "http://"), d.baseEnv, d.awsCfg, d.stderr, d.log)
	if d.opts.iam {
		handlers.authorize = d.rules.Authorize
	}
	loop, inv, err := d.newLoop(ctx, repoDir, stateBucket, network, zip, handlers, regions)
	if err != nil {
		handlers.stop()
		return nil, err
	}
	return &localAgent{loop: loop, inv: inv, handlers: handlers, repoDir: repoDir, stateBucket: stateBucket}, nil
}

// firstPass deploys the repository's workflows, starts their stage
// functions' handlers and uploads the sample.
func (d *demo) firstPass(ctx context.Context, a *localAgent) (pipesync.PassResult, error) {
	d.out.printf("deploying the workflows of %s (a Git repository, branch main)\n", a.repoDir)
	first := a.loop.Pass(ctx)
	if first.Err != nil {
		return first, fmt.Errorf("first reconcile pass: %w", first.Err)
	}
	d.passDone(first)
	if err := d.refresh(ctx, a.inv, a.handlers); err != nil {
		return first, err
	}
	d.tracker.bucket = a.stateBucket
	if err := d.tracker.skipExisting(ctx); err != nil {
		return first, err
	}
	if d.opts.beforeUpload != nil {
		if err := d.opts.beforeUpload(ctx, d.awsCfg); err != nil {
			return first, err
		}
	}
	err := d.uploadSample(ctx)
	if errors.Is(err, errNothingDeployed) && !d.opts.once {
		// Staying up still makes sense: a commit may add a workflow.
		d.out.printf("no workflow is deployed, so no sample is sent\n")
		err = nil
	}
	return first, err
}

// startAWS starts the local AWS: kumo (unless options name one) behind the
// local ECS proxy, the AWS rules and, on the demo's port, which every
// client uses, the front (front.go). stop stops them all, the tasks first.
func (d *demo) startAWS() (stop func(), err error) {
	// The port first: without it nothing works, and kumo is not worth
	// starting.
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(d.opts.port))
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("port %d is in use: %w; kumo delivers S3 event notifications only to localhost:4566, "+
			"so the demo needs that port: stop what holds it (another demo, a kumo or a LocalStack)", d.opts.port, err)
	}
	if err != nil {
		return nil, err
	}
	closeKumo := func() {}
	kumoURL := d.opts.kumoURL
	if kumoURL == "" {
		// kumo keeps its state in the process, so this emulator starts
		// empty and ends with the demo.
		emu := kumo.NewServer()
		kumoURL, closeKumo = emu.URL, emu.Close
	}
	// Everything a task or its callback reads is set before the local ECS
	// starts serving: its goroutines see it as it is now.
	d.endpoint = "http://" + addr
	d.baseEnv = baseEnv(d.endpoint, region, d.opts.logLevel.String())
	d.awsCfg = aws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(d.endpoint),
		Retryer:      func() aws.Retryer { return retry.NewStandard() },
	}
	d.op = newOperator(d.awsCfg)
	d.tracker = newTracker(d.op, d.opts.download, &d.stages, d.out, d.log, d.opts.logLevel)
	d.agentCfg = d.awsCfg.Copy()
	d.agentCfg.Credentials = awsrules.RoleCredentials(awsrules.AgentRole)
	var iam *awsrules.IAM
	if d.opts.iam {
		cache, err := cacheDir()
		if err == nil {
			iam, err = awsrules.EmulatorIAM(context.Background(), cache)
		}
		if err != nil {
			ln.Close()
			closeKumo()
			return nil, fmt.Errorf("%w (or run the demo with --iam=false, which checks no policy)", err)
		}
	}
	// Clients reach AWS through the rules (IAM first), then the local ECS,
	// which runs tasks, then kumo. The local ECS asks the rules whether ECS
	// may assume a task's roles (their trust policies) and whether its
	// execution role may read its secrets and write its logs, as ECS does
	// before a container starts.
	var rules *awsrules.Proxy
	proxy, err := localecs.Listen(localecs.Options{
		Addr:        "127.0.0.1:0",
		Upstream:    kumoURL,
		Start:       d.startTask,
		OnTask:      d.onTask,
		OnJob:       d.onJob,
		StopTimeout: 3 * time.Second,
		Logger:      d.log,
		Authorize: func(ctx context.Context, role, action, resource string) error {
			return rules.Authorize(ctx, role, action, resource)
		},
		AssumeRole: func(ctx context.Context, roleARN, service string, keys map[string]string) error {
			return rules.AssumeRole(ctx, roleARN, service, keys)
		},
	})
	if err != nil {
		ln.Close()
		closeKumo()
		return nil, err
	}
	rules, err = awsrules.New(proxy.URL(), awsrules.Options{IAM: iam})
	if err != nil {
		_ = proxy.Close()
		ln.Close()
		closeKumo()
		return nil, err
	}
	d.rules = rules
	// The demo's port is the front's, which hands kumo's S3 event
	// deliveries to the rules as S3 makes them (front.go).
	fr, err := serveFront(ln, rules.URL(), func(fn string) string {
		st, _ := d.stages.byFunction(fn)
		return st.region
	}, d.log)
	if err != nil {
		_ = rules.Close()
		_ = proxy.Close()
		ln.Close()
		closeKumo()
		return nil, err
	}
	stop = func() {
		if err := proxy.Close(); err != nil {
			d.log.Warn("local ECS not closed cleanly", "err", err)
		}
		if d.opts.iamReport != nil {
			d.opts.iamReport(rules.Report())
		}
		_ = rules.Close()
		if err := fr.close(); err != nil {
			d.log.Warn("the demo's port not closed cleanly", "err", err)
		}
		if iam != nil {
			_ = iam.Evaluator.Close()
		}
		closeKumo()
	}
	return stop, nil
}

// zipCode starts zipping file as the stage functions' code, as the agent
// zips itself; it takes seconds of CPU, so it runs while the rest starts
// up. The returned function waits for the zip.
func (d *demo) zipCode(file string) func() ([]byte, error) {
	done := make(chan struct{})
	var b []byte
	var err error
	go func() {
		defer close(done)
		b, err = lambdaZip(file, d.log)
	}()
	return func() ([]byte, error) {
		<-done
		return b, err
	}
}

// configRepo makes the demo's config repository from --repo's (or the
// checkout's) workflows and algorithms, and returns its directory.
func (d *demo) configRepo() (string, error) {
	src := d.opts.repo
	if src == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		if src, err = findConfigRepo(wd); err != nil {
			return "", err
		}
	}
	dir := filepath.Join(d.dir, "repo")
	if _, err := makeRepo(src, dir, d.opts.algorithmImage); err != nil {
		return "", err
	}
	return dir, nil
}

// bootstrap does what `agent bootstrap` does, with a network made for the
// purpose, and returns the state bucket and the network.
func (d *demo) bootstrap(ctx context.Context) (string, provision.Network, error) {
	subnets, groups, err := d.createNetwork(ctx, region)
	if err != nil {
		return "", provision.Network{}, err
	}
	bucket := d.opts.stateBucket
	if bucket == "" {
		// The agent's default name; kumo's account is always 000000000000.
		account, err := provision.New(d.agentCfg, provision.Options{}).CallerAccount(ctx, region)
		if err != nil {
			return "", provision.Network{}, err
		}
		bucket = provision.DefaultStateBucket(account, region)
	}
	boot, err := provision.New(d.agentCfg, provision.Options{S3UsePathStyle: true, Logger: d.log.With("component", "provision")}).
		Bootstrap(ctx, region, provision.BootstrapOptions{StateBucket: bucket, Subnets: subnets, SecurityGroups: groups})
	if err != nil {
		return "", provision.Network{}, err
	}
	d.out.printf("bootstrap: state bucket s3://%s, cluster %s, subnet %s, security group %s\n",
		bucket, provision.DefaultCluster, strings.Join(subnets, ","), strings.Join(groups, ","))
	return bucket, boot.Network, nil
}

// newLoop wires the agent's reconcile loop as `agent run` does, with
// statuses printed instead of posted to GitHub. After every pass that
// changed something, the stage functions' handlers are brought in line.
func (d *demo) newLoop(ctx context.Context, repoDir, stateBucket string, network provision.Network, zip []byte,
	handlers *lambdas, regions *regionPrep) (*pipesync.Loop, *inventory.Store, error) {
	prov := provision.New(d.agentCfg, provision.Options{
		Network:        network,
		StateBucket:    stateBucket,
		LambdaCode:     provision.NewLambdaCode(zip),
		RunnerImage:    runnerImage,
		S3UsePathStyle: true,
		Logger:         d.log.With("component", "provision"),
	})
	inv := inventory.NewStore(d.agentCfg, stateBucket, true)
	repo, err := pipesync.OpenRepo(ctx, gitsource.Options{URL: repoDir, Branch: gitsource.DefaultBranch})
	if err != nil {
		return nil, nil, err
	}
	loop, err := pipesync.NewDaemon(pipesync.DaemonOptions{Reconciler: pipesync.Options{
		Provisioner: preparingProvisioner{Provisioner: prov, regions: regions},
		Inventory:   inv,
		AgentID:     agentID,
		Logger:      d.log,
	}, Loop: pipesync.LoopOptions{
		Repo:           repo,
		Statuses:       &status.Console{W: d.out},
		Schedule:       pollSchedule,
		RunStatusEvery: d.runStatusEvery(),
		Logger:         d.log,
		OnPass: func(res pipesync.PassResult) {
			switch {
			case res.Err != nil: // the loop logs it
				return
			case res.Skipped && !handlers.anyExited():
				return
			case !res.Skipped:
				d.passDone(res)
			}
			if err := d.refresh(ctx, inv, handlers); err != nil && ctx.Err() == nil {
				d.log.Error("stage functions not updated", "err", err)
			}
		},
	}})
	if err != nil {
		return nil, nil, err
	}
	return loop, inv, nil
}

// stayUp follows the sample's way through the pipelines, says how to use
// the demo, then polls the repository like the agent and reports every run
// until ctx ends.
func (d *demo) stayUp(ctx context.Context, loop *pipesync.Loop, repoDir string) {
	wctx, cancel := context.WithTimeout(ctx, d.opts.timeout)
	err := d.tracker.wait(wctx)
	cancel()
	switch {
	case ctx.Err() != nil:
		return
	case errors.Is(err, context.DeadlineExceeded):
		d.out.printf("the sample has not come through in %v; the demo stays up\n", d.opts.timeout)
	case err != nil:
		d.log.Warn("progress not followed", "err", err)
	}
	d.printInstructions(repoDir)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = loop.Run(ctx) // returns nil when ctx ends
	}()
	go func() {
		defer wg.Done()
		d.tracker.follow(ctx)
	}()
	wg.Wait()
	d.out.printf("stopping: stage functions, tasks and the emulator; removing %s\n", d.dir)
}

// passDone reports a reconcile pass that changed something, or failed to:
// the statuses have been printed already.
func (d *demo) passDone(res pipesync.PassResult) {
	rep := res.Report
	if rep == nil {
		return
	}
	for _, r := range rep.Results {
		if r.Err != nil {
			d.out.printf("%s: %s failed: %v\n", r.Workflow, r.Action, r.Err)
		}
	}
	if !rep.Plan.HasWrites() && rep.Failed() == 0 {
		return
	}
	d.out.printf("commit %s: %s, %d failed, in %s\n", gitsource.ShortCommit(rep.Commit), rep.Plan.Summary(), rep.Failed(),
		rep.Duration.Round(time.Millisecond))
}

// refresh re-reads what is deployed and makes the stage functions' handlers
// match it.
func (d *demo) refresh(ctx context.Context, inv *inventory.Store, handlers *lambdas) error {
	if err := d.stages.load(ctx, inv); err != nil {
		return err
	}
	started, err := handlers.sync(ctx, d.stages.functions())
	if err != nil {
		return err
	}
	if len(started) > 0 {
		d.out.printf("stage functions ready: %s (handlers polling kumo's Lambda Runtime API)\n", strings.Join(started, ", "))
	}
	return nil
}

// errNothingDeployed says no workflow could take the sample.
var errNothingDeployed = errors.New("no workflow is deployed: nothing to upload to")

// uploadSample uploads the sample to the input bucket of each chosen
// workflow and adds a watch for it to the tracker.
func (d *demo) uploadSample(ctx context.Context) error {
	tr := d.tracker
	targets := d.stages.names()
	if w := d.opts.workflow; w != "" {
		if _, ok := d.stages.stagesOf(w); !ok {
			return fmt.Errorf("--workflow %s: no such workflow is deployed (deployed: %s)", w, strings.Join(targets, ", "))
		}
		targets = []string{w}
	}
	if len(targets) == 0 {
		return errNothingDeployed
	}
	name, body := "sample.txt", sampleText
	if d.opts.upload != "" {
		b, err := os.ReadFile(d.opts.upload)
		if err != nil {
			return fmt.Errorf("--upload: %w", err)
		}
		name, body = filepath.Base(d.opts.upload), b
	}
	for _, wf := range targets {
		stages, _ := d.stages.stagesOf(wf)
		w := &watch{workflow: wf, stages: stages, key: name, uploaded: time.Now()}
		tr.watches = append(tr.watches, w)
		d.out.printf("%s: uploading %s to %s\n", wf, name, s3URI(stages[0].input, name))
		_, err := d.op.s3In(stages[0].region).PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(stages[0].input),
			Key:    aws.String(name),
			Body:   bytes.NewReader(body),
		})
		if err != nil {
			return fmt.Errorf("upload %s: %w", s3URI(stages[0].input, name), err)
		}
	}
	return nil
}

// runStatusEvery is the loop's run-status tick.
func (d *demo) runStatusEvery() time.Duration {
	if d.opts.runStatusEvery > 0 {
		return d.opts.runStatusEvery
	}
	return defaultRunStatusEvery
}

// finish waits, with --once, for every upload to come out of its workflow,
// or go to a dead-letter queue, and says how it went. Meanwhile the loop's
// run-status tick runs as in the agent: it counts runs, and starts tasks
// again for files left waiting, then dead-letters them.
func (d *demo) finish(ctx context.Context, loop *pipesync.Loop, first pipesync.PassResult) error {
	tr := d.tracker
	update := func() {
		if err := loop.UpdateRunStatuses(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("run statuses not updated", "err", err)
		}
	}
	// The ticks stop between two updates, not in one: an update may be
	// moving files to a dead-letter queue.
	stopTicks := make(chan struct{})
	var ticks sync.WaitGroup
	ticks.Add(1)
	go func() {
		defer ticks.Done()
		t := time.NewTicker(d.runStatusEvery())
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-stopTicks:
				return
			case <-t.C:
				update()
			}
		}
	}()
	err := tr.wait(ctx)
	close(stopTicks)
	ticks.Wait()
	// The run statuses as they end, dead letters included.
	update()
	if errors.Is(err, context.Canceled) {
		d.out.printf("interrupted\n")
		return errReported
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	failed, total := 0, len(tr.watches)
	if rep := first.Report; rep != nil && d.opts.workflow == "" {
		// A workflow that could not be deployed got no upload: it failed.
		failed, total = rep.Failed(), total+rep.Failed()
	}
	for _, w := range tr.watches {
		switch {
		case w.result != "":
		case w.failed != "":
			failed++
		default:
			failed++
			d.out.printf("%s: no result from stage %d (%s) after %v\n", w.workflow, w.stage, w.stages[w.stage].algorithm, d.opts.timeout)
		}
	}
	if failed > 0 {
		d.out.printf("%d of %d workflows failed\n", failed, total)
		return errReported
	}
	d.out.printf("all %d results arrived\n", total)
	return nil
}

// printInstructions says how to use the running demo.
func (d *demo) printInstructions(repoDir string) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nThe demo is up; Ctrl-C stops it.\n")
	if names := d.stages.names(); len(names) > 0 {
		fmt.Fprintf(&b, "To upload more input (any credentials do):\n")
		for _, wf := range names {
			stages, _ := d.stages.stagesOf(wf)
			fmt.Fprintf(&b, "  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=%s aws --endpoint-url %s s3 cp FILE s3://%s/\n",
				stages[0].region, d.endpoint, stages[0].input)
			fmt.Fprintf(&b, "    (%s: results in s3://%s)\n", wf, stages[len(stages)-1].output)
		}
	}
	fmt.Fprintf(&b, "To change the pipelines, commit to the config repository (branch main); the demo deploys it within %s, as the agent would:\n",
		strings.TrimPrefix(pollSchedule, "@every "))
	fmt.Fprintf(&b, "  cd %s\n", repoDir)
	if _, err := os.Stat(filepath.Join(repoDir, "workflows", "hello-sort.json")); err == nil {
		fmt.Fprintf(&b, "  cp workflows/hello-sort.json workflows/my-sort.json   # and give it two new bucket names\n")
		fmt.Fprintf(&b, "  git add -A && git commit -m 'Add my-sort'\n")
	} else {
		fmt.Fprintf(&b, "  $EDITOR workflows/NAME.json && git add -A && git commit -m 'Change NAME'\n")
	}
	fmt.Fprintf(&b, "The repository is removed when the demo stops.\n")
	d.out.printf("%s", b.String())
}

// createNetwork creates in region what bootstrap would take from the
// default VPC, which kumo lacks: a VPC, a subnet and a security group, as
// an operator would pass them with --subnets and --security-groups. EC2
// resources are regional, so the client is signed for region.
func (d *demo) createNetwork(ctx context.Context, region string) (subnets, groups []string, err error) {
	client := ec2.NewFromConfig(d.op.in(region))
	tags := func(rt ec2types.ResourceType) []ec2types.TagSpecification {
		return []ec2types.TagSpecification{{ResourceType: rt, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(agentID)}}}}
	}
	vpc, err := client.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16"), TagSpecifications: tags(ec2types.ResourceTypeVpc)})
	if err != nil {
		return nil, nil, fmt.Errorf("create vpc: %w", err)
	}
	subnet, err := client.CreateSubnet(ctx, &ec2.CreateSubnetInput{
		VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.0.1.0/24"), TagSpecifications: tags(ec2types.ResourceTypeSubnet),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("create subnet: %w", err)
	}
	sg, err := client.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		// Named after its VPC: kumo wants group names unique in the region,
		// and an emulator shared by several runs (tests) has several.
		GroupName: aws.String(agentID + "-" + aws.ToString(vpc.Vpc.VpcId)), Description: aws.String("cloudpipe demo tasks"),
		VpcId: vpc.Vpc.VpcId, TagSpecifications: tags(ec2types.ResourceTypeSecurityGroup),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("create security group: %w", err)
	}
	return []string{aws.ToString(subnet.Subnet.SubnetId)}, []string{aws.ToString(sg.GroupId)}, nil
}

// sampleText is the default upload: unsorted lines with repeats, so each
// example algorithm (sort, uniq, reverse sort) visibly changes it.
var sampleText = []byte(`pear
apple
fig
banana
apple
cherry
kiwi
banana
date
apple
`)

// console serialises the lines written to stdout from the demo's
// goroutines (task callbacks, the loop, the tracker).
type console struct {
	mu sync.Mutex
	w  io.Writer
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Write(p)
}

func (c *console) printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Nothing to be done about a stdout that fails.
	_, _ = fmt.Fprintf(c.w, format, args...)
}

// cacheDir is where the IAM evaluator is installed once: $CLOUDPIPE_CACHE,
// default the user's cache directory's cloudpipe/ (the tests use the same).
func cacheDir() (string, error) {
	if dir := os.Getenv("CLOUDPIPE_CACHE"); dir != "" {
		return dir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find a cache directory for the IAM evaluator: %w", err)
	}
	return filepath.Join(base, "cloudpipe"), nil
}
