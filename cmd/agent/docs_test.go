package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cliDoc is the command-line reference, generated from the commands table.
var cliDoc = filepath.Join("..", "..", "docs", "cli.md")

// cliReference renders docs/cli.md: the output of `agent help` and of
// `agent COMMAND --help` for every command in the table, run in-process with
// an empty environment so that nothing on the test machine leaks in.
func cliReference(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(`# agent command-line reference

<!-- Generated from cmd/agent by 'go test ./cmd/agent -run TestDocsCLI -update'; do not edit by hand. -->

This is the output of ` + "`agent help`" + ` and of ` + "`agent COMMAND --help`" + ` for every command.
Every flag has an environment variable ` + "`CLOUDPIPE_<FLAG>`" + ` (` + "`--state-bucket`" + ` reads
` + "`CLOUDPIPE_STATE_BUCKET`" + `); a flag wins over its variable, which wins over the default.
AWS settings come from the SDK's default chain (` + "`AWS_REGION`" + `, credentials,
` + "`AWS_ENDPOINT_URL`" + `). Exit codes: 0 success, 1 problems found or failure, 2 usage error.

`)
	for _, c := range commands {
		fmt.Fprintf(&b, "- [`agent %s`](#agent-%s): %s\n", c.name, c.name, c.summary)
	}
	section := func(title string, args ...string) {
		var stdout, stderr bytes.Buffer
		code := dispatch(t.Context(), args, func(string) string { return "" }, streams{&stdout, &stderr})
		if code != exitOK || stderr.Len() > 0 {
			t.Fatalf("agent %s: exit %d, stderr %q", strings.Join(args, " "), code, stderr.String())
		}
		if strings.Contains(stdout.String(), "```") {
			t.Fatalf("agent %s: help text holds a code fence, which would break the Markdown", strings.Join(args, " "))
		}
		fmt.Fprintf(&b, "\n## %s\n\n```\n$ agent %s\n%s```\n", title, strings.Join(args, " "), stdout.String())
	}
	section("agent help", "help")
	for _, c := range commands {
		section("agent "+c.name, c.name, "--help")
	}
	return b.Bytes()
}

// TestDocsCLI keeps docs/cli.md equal to what the binary prints; -update
// rewrites it.
func TestDocsCLI(t *testing.T) {
	want := cliReference(t)
	if *update {
		if err := os.WriteFile(cliDoc, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(cliDoc)
	if err != nil {
		t.Fatalf("%v: run 'go test ./cmd/agent -run TestDocsCLI -update' to write it", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("docs/cli.md is not what the agent prints (%s); run 'go test ./cmd/agent -run TestDocsCLI -update' and review the diff", firstDifference(got, want))
	}
}

// TestDocsCLIListsEveryCommand guards the generator itself: each command of
// the table gets its own section, so a command added later is documented by
// the next -update without touching this file.
func TestDocsCLIListsEveryCommand(t *testing.T) {
	doc := string(cliReference(t))
	for _, c := range commands {
		if !strings.Contains(doc, "\n## agent "+c.name+"\n") || !strings.Contains(doc, "\nUsage: agent "+c.name+" ") {
			t.Errorf("the reference has no section with the usage of %s", c.name)
		}
		for _, name := range c.flags {
			if !strings.Contains(doc, envName(name)) {
				t.Errorf("the reference does not name %s (flag --%s of %s)", envName(name), name, c.name)
			}
		}
	}
}

// firstDifference describes the first line where got and want differ.
func firstDifference(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d: file has %q, agent prints %q", i+1, gl, wl)
		}
	}
	return "they differ"
}
