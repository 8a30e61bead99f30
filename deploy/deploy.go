// Package deploy holds what an operator deploys the agent with: its IAM
// policies and ECS task definition (the JSON files beside this one), and
// the tests that hold them to what the agent does. The Go side only
// embeds the agent's policies, so the AWS-rules test layer can authorize
// the agent's requests by the very files an operator attaches.
package deploy

import "embed"

// The agent's task role holds several customer managed policies rather than
// one: a managed policy holds at most 6,144 characters (white space not
// counted), and a role's inline policies 10,240 together, which the agent's
// statements outgrow. A role may have 10 managed policies attached by
// default.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
//
//go:embed agent-iam-policy.json agent-bootstrap-policy.json agent-batch-policy.json
var agentPolicies embed.FS

// AgentPolicyFiles are the files of the agent task role's managed policies:
// what it does to pipelines, what bootstrap does once per region, and what
// it does to AWS Batch (compute environments, job queues, job definitions).
var AgentPolicyFiles = []string{"agent-iam-policy.json", "agent-bootstrap-policy.json", "agent-batch-policy.json"}

// AgentPolicies returns the documents of AgentPolicyFiles, in that order.
func AgentPolicies() [][]byte {
	docs := make([][]byte, len(AgentPolicyFiles))
	for i, f := range AgentPolicyFiles {
		b, err := agentPolicies.ReadFile(f)
		if err != nil {
			panic("deploy: embedded policy " + f + ": " + err.Error()) // the embed line lists every file
		}
		docs[i] = b
	}
	return docs
}

// statusReaderPolicy is the policy of a principal that may run `agent
// status` and nothing else: read the inventory and run records in the
// state bucket, and count the stages' queue messages. It is not the
// agent's (whose policies allow all of it too), but an operator's or a
// dashboard's (docs/operations.md).
//
//go:embed status-readonly-policy.json
var statusReaderPolicy []byte

// StatusReaderPolicy returns the document of status-readonly-policy.json.
func StatusReaderPolicy() []byte { return statusReaderPolicy }
