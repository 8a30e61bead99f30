package archtest

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/cloudpipe/cloudpipe/"

// allowedImports is the one-way import graph of docs/design.md: for each
// package, the cloudpipe packages its non-test code may import. The arrows
// run cmd -> sync -> {workflow, provision, inventory, gitsource, status}, and
// the three processes (agent, stage function, runner) share only the wire
// formats of internal/contract. A new package, or a new arrow, is a line
// here, and a reason in docs/design.md.
var allowedImports = map[string][]string{
	"cmd/agent": {"sync", "workflow", "provision", "inventory", "gitsource", "status", "webhook", "metrics", "notify",
		"lambda", "runner", "internal/backoff", "internal/contract", "internal/secret"},
	"cmd/demo": {"sync", "workflow", "provision", "inventory", "gitsource", "status", "lambda", "runner",
		"internal/localecs", "internal/awsrules", "internal/backoff", "internal/contract", "internal/secret"},
	"sync":      {"workflow", "provision", "inventory", "gitsource", "status", "notify", "internal/backoff", "internal/contract"},
	"inventory": {"provision", "internal/contract"},
	"provision": {"workflow", "internal/backoff", "internal/contract", "internal/stagetask"},
	"workflow":  {},
	"gitsource": {"internal/secret"},
	"status":    {"internal/backoff", "internal/secret"},
	"webhook":   {"internal/secret"},
	"metrics":   {},
	"notify":    {"internal/backoff"},
	"lambda":    {"internal/backoff", "internal/contract", "internal/stagetask"},
	"runner":    {"internal/backoff", "internal/contract"},

	"internal/archtest":       {},
	"internal/awsrules":       {"deploy", "internal/faultproxy", "internal/iamsim"},
	"internal/iamsim":         {},
	"internal/backoff":        {},
	"internal/contract":       {},
	"internal/stagetask":      {"internal/contract"},
	"internal/secret":         {},
	"internal/faultproxy":     {},
	"internal/localecs":       {"internal/faultproxy"},
	"internal/testenv":        {"internal/awsrules", "internal/iamsim", "internal/localecs"},
	"internal/testenv/nulls3": {}, // a command the benchmarks start: an S3 endpoint that keeps no data
	"deploy":                  {}, // the operator's files; embeds the agent policy for tests
}

// TestImportsAreOneWay lists every package's imports with go list and fails
// on an import the table does not allow, and on a package it does not know.
func TestImportsAreOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	seen := 0
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		allowed, known := allowedImports[pkg]
		if !known {
			t.Errorf("package %s is not in the import table: add it with the packages it may import", pkg)
			continue
		}
		seen++
		for _, imp := range fields[1:] {
			dep, ours := strings.CutPrefix(imp, module)
			if ours && !slices.Contains(allowed, dep) {
				t.Errorf("%s imports %s, which the one-way graph does not allow", pkg, dep)
			}
		}
	}
	if seen < 15 {
		t.Fatalf("go list found %d known packages; the listing is broken:\n%s", seen, out)
	}
}
