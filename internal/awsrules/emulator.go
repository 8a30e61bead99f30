package awsrules

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/cloudpipe/cloudpipe/deploy"
	"github.com/cloudpipe/cloudpipe/internal/iamsim"
)

// EmulatorAccount is the account ID kumo answers with.
const EmulatorAccount = "000000000000"

// AgentRole is the role the agent's requests are signed as in front of the
// emulator (tests and the demo). Its policies are deploy's agent policies
// (deploy.AgentPolicyFiles), as an operator attaches them.
const AgentRole = "cloudpipe-agent"

// EmulatorIAM starts the IAM evaluator (installed under cacheDir on first
// use; see iamsim.Start) and returns IAM for kumo's account, with the
// agent's role holding its policy. The evaluator runs until ctx's process
// ends or Close of the returned evaluator.
func EmulatorIAM(ctx context.Context, cacheDir string) (*IAM, error) {
	eval, err := iamsim.Start(ctx, cacheDir)
	if err != nil {
		return nil, fmt.Errorf("the IAM evaluator is required (Node.js, and the npm registry once): %w", err)
	}
	var agent []json.RawMessage
	for _, doc := range deploy.AgentPolicies() {
		agent = append(agent, json.RawMessage(doc))
	}
	return &IAM{Evaluator: eval, Account: EmulatorAccount, Fixed: map[string][]json.RawMessage{AgentRole: agent}}, nil
}
