package workflow

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// maxMaxTasks caps max_tasks: a runaway value would let one upload burst
// start thousands of Fargate tasks.
const maxMaxTasks = 1000

// accountPlaceholder is the account_id of the original user guide's sample,
// which users copy verbatim.
const accountPlaceholder = "your-aws-account-id"

var (
	pInput    = path{}.key("input_s3_name")
	pOutput   = path{}.key("output_s3_name")
	pKeyPair  = path{}.key("key_pair")
	pAccount  = path{}.key("account_id")
	pRegion   = path{}.key("region")
	pProcess  = path{}.key("process")
	pType     = pProcess.key("type")
	pSteps    = pProcess.key("algorithms")
	pSecrets  = path{}.key("secrets")
	pTaskCred = path{}.key("task_credentials_secret")
	pMaxTasks = path{}.key("max_tasks")
	pKMSKeys  = path{}.key("kms_key_arns")
)

// validateWorkflow checks the values of a decoded workflow that need no other
// file.
func validateWorkflow(r *report, w *Workflow) {
	if why := bucketProblem(w.InputBucket); why != "" {
		r.value(pInput, "bucket name %s %s", quote(w.InputBucket), why)
	}
	if why := bucketProblem(w.OutputBucket); why != "" {
		r.value(pOutput, "bucket name %s %s", quote(w.OutputBucket), why)
	}
	if w.InputBucket != "" && w.InputBucket == w.OutputBucket {
		r.value(pOutput, "is the same bucket as input_s3_name: a result written to the input bucket would trigger the pipeline again, without end; use a separate output bucket")
	}
	checkAccountID(r, w.AccountID)
	checkRegion(r, w.Region)
	checkProcess(r, w)
	checkSecrets(r, w)
	checkKMSKeys(r, w)
	checkCapacity(r, pCapacity, w.Capacity)
	if w.MaxTasks < 0 || w.MaxTasks > maxMaxTasks {
		r.value(pMaxTasks, "must be between 0 (the default limit) and %d, not %d", maxMaxTasks, w.MaxTasks)
	}
}

func checkAccountID(r *report, id string) {
	switch {
	case id == accountPlaceholder:
		r.value(pAccount, "account_id %s is the sample's placeholder: put your real 12-digit AWS account id, or drop the field to deploy into the account the agent's credentials belong to", quote(id))
	case id != "" && !allDigits(id, 12):
		r.value(pAccount, "account_id %s must be a 12-digit AWS account id such as \"123456789012\", or drop the field to deploy into the account the agent's credentials belong to", quote(id))
	}
}

func checkRegion(r *report, region string) {
	switch {
	case region == "":
		r.value(pRegion, "region is empty: name the AWS region to deploy to, e.g. \"us-east-1\"")
	case regionPartition[region] != "":
	default:
		if s := regionSuggestion(region); s != "" {
			r.value(pRegion, "%s is not an AWS region: did you mean %q?", quote(region), s)
		} else {
			r.value(pRegion, "%s is not an AWS region: use a region code such as \"us-east-1\" or \"eu-west-1\"", quote(region))
		}
	}
}

// checkProcess checks the process type against the number of steps, and
// each step on its own.
func checkProcess(r *report, w *Workflow) {
	n := len(w.Process.Algorithms)
	switch w.Process.Type {
	case SingleRun:
		if n != 1 {
			r.value(pSteps, "a single_run runs exactly one algorithm, this lists %d: list one, or set process.type to sequence_run", n)
		}
	case SequenceRun:
		if n < 2 {
			r.value(pSteps, "a sequence_run chains two or more algorithms, this lists %d: add one, or set process.type to single_run", n)
		}
	default:
		r.value(pType, "process type %s is not known: use \"single_run\" (one algorithm) or \"sequence_run\" (two or more, each reading the previous one's output)", quote(w.Process.Type))
	}
	for i, st := range w.Process.Algorithms {
		p := pSteps.index(i)
		if st.Name == "" {
			r.value(p.key("name"), "algorithm name is empty: name a file of algorithms/ without .json")
		}
		checkPorts(r, p.key("port"), st.Port)
		checkCapacity(r, p.key("capacity"), st.Capacity)
		for _, k := range slices.Sorted(maps.Keys(st.Variables)) {
			if r.full {
				break // nothing more can be reported; do not build paths for it
			}
			vp := p.key("variables").key(k)
			switch {
			case !validEnvName(k):
				r.key(vp, "%s is not a valid environment variable name: use letters, digits and underscores, not starting with a digit", quote(k))
			case credentialLike(k):
				r.key(vp, "%s looks like a credential: do not put its value in the repository; store it in AWS Secrets Manager and map it under \"secrets\": {%q: \"arn:aws:secretsmanager:...\"}", k, k)
			}
			if _, ok := w.Secrets[k]; ok {
				r.key(vp, "%s is also set under secrets: give it in one place (secrets, if it is sensitive)", k)
			}
		}
	}
}

// checkPorts checks port numbers and protocols, in a step or an algorithm.
func checkPorts(r *report, p path, ports []Port) {
	seen := make(map[Port]bool, len(ports))
	for j, pt := range ports {
		pj := p.index(j)
		if pt.Port < 1 || pt.Port > 65535 {
			at := pj.key("port")
			if !r.has(at) {
				at = pj // a bare number in a step: [8080]
			}
			r.value(at, "port %d is out of range: use 1 to 65535", pt.Port)
		}
		if pt.Protocol != "tcp" && pt.Protocol != "udp" {
			r.value(pj.key("protocol"), "protocol %s is not supported: use \"tcp\" or \"udp\"", quote(pt.Protocol))
		}
		if seen[pt] {
			r.value(pj, "port %s is listed twice: remove one", portString(pt))
		}
		seen[pt] = true
	}
}

func validPort(p Port) bool {
	return 1 <= p.Port && p.Port <= 65535 && (p.Protocol == "tcp" || p.Protocol == "udp")
}

func portString(p Port) string { return strconv.Itoa(p.Port) + "/" + p.Protocol }

// checkSecrets checks secrets and task_credentials_secret: names, ARNs, and
// that the ARNs are in the workflow region's partition (a secret of aws-cn
// cannot be read from us-east-1). Messages never repeat a value that is not
// an ARN: it may be the very password someone pasted in by mistake.
func checkSecrets(r *report, w *Workflow) {
	partition := regionPartition[w.Region]
	for _, k := range slices.Sorted(maps.Keys(w.Secrets)) {
		p := pSecrets.key(k)
		if !validEnvName(k) {
			r.key(p, "%s is not a valid environment variable name: use letters, digits and underscores, not starting with a digit", quote(k))
		}
		if w.TaskCredentialsSecret != "" && (k == "AWS_ACCESS_KEY_ID" || k == "AWS_SECRET_ACCESS_KEY") {
			r.key(p, "%s is already provided by task_credentials_secret: remove one of the two", k)
		}
		arn, why := parseSecretARN(w.Secrets[k])
		switch {
		case why != "":
			r.value(p, "the value %s: use a secret ARN like %s (optionally ending in :json-key:: to pick one key of a JSON secret)", why, secretARNExample)
		case partition != "" && arn.partition != partition:
			r.value(p, "the secret is in partition %s but region %s is in %s: use a secret of the workflow's partition", arn.partition, w.Region, partition)
		}
	}
	if w.TaskCredentialsSecret == "" {
		return
	}
	arn, why := parseSecretARN(w.TaskCredentialsSecret)
	switch {
	case why != "":
		r.value(pTaskCred, "the value %s: use the ARN of a secret holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, like %s", why, secretARNExample)
	case arn.key:
		r.value(pTaskCred, "name the whole secret, without a :json-key:: suffix: cloudpipe maps its AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY keys itself")
	case partition != "" && arn.partition != partition:
		r.value(pTaskCred, "the secret is in partition %s but region %s is in %s: use a secret of the workflow's partition", arn.partition, w.Region, partition)
	}
}

// checkKMSKeys checks kms_key_arns: each a KMS key ARN (not an alias), in
// the workflow's region, listed once. A KMS key is used in its own region
// only, and S3 and Secrets Manager of the workflow's region are what the
// roles' grants name (kms:ViaService), so a key of another region would
// grant nothing; a multi-Region key's replica there has its own ARN.
// https://docs.aws.amazon.com/kms/latest/developerguide/multi-region-keys-overview.html
func checkKMSKeys(r *report, w *Workflow) {
	seen := make(map[string]bool, len(w.KMSKeyARNs))
	for i, k := range w.KMSKeyARNs {
		p := pKMSKeys.index(i)
		arn, why := parseKMSKeyARN(k)
		switch {
		case arn.alias:
			r.value(p, "the value %s; use the key ARN, which aws kms describe-key --key-id alias/NAME shows, like %s", why, kmsKeyARNExample)
		case why != "":
			r.value(p, "the value %s: use a key ARN like %s", why, kmsKeyARNExample)
		case regionPartition[w.Region] != "" && arn.region != w.Region:
			r.value(p, "the key is in region %s but the workflow runs in %s: a KMS key serves its own region only; give the key (or the multi-Region key's replica) in %s", arn.region, w.Region, w.Region)
		case seen[k]:
			r.value(p, "the key is listed twice: remove one")
		}
		seen[k] = true
	}
}

// noteKeyPair notes a key_pair that nothing uses: only a stage on AWS
// Batch has instances, whose compute environment gets the key pair (SSH to
// the workers); a Fargate task has no instance to log in to. It needs the
// stages' algorithms, so it runs once the steps are resolved.
func noteKeyPair(r *report, w *Workflow, stages []Stage) {
	if strings.TrimSpace(w.KeyPair) == "" {
		return
	}
	for _, s := range stages {
		if s.Placement(w).Platform == PlatformBatch {
			return
		}
	}
	r.note(pKeyPair, "key_pair is ignored: stages run on Fargate, there is no instance to log in to")
}
