// Package deploy holds what an operator deploys the agent with: its IAM
// policies and ECS task definition (the JSON files beside this one), and
// the tests that hold them to what the agent does. The Go side only
// embeds the agent's policy, so the AWS-rules test layer can authorize the
// agent's requests by the very file an operator attaches.
package deploy

import _ "embed"

// AgentPolicy is agent-iam-policy.json: the identity policy of the agent's
// task role.
//
//go:embed agent-iam-policy.json
var AgentPolicy []byte
