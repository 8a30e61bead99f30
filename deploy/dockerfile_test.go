package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/cloudpipe/cloudpipe/provision"
)

// There is no Docker engine where the tests run, so these tests check the
// Dockerfile as text: the build line is the script's, the context keeps
// every file the build reads, and the final image is what the agent's task
// and every stage task definition expect of it.

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Cmd  string // upper-case: FROM, RUN, COPY, ...
	Args string
}

// dockerfile is the parsed Dockerfile, split into build stages.
type dockerfile struct {
	Stages [][]instruction // Stages[len-1] is the final image
}

func (d dockerfile) final() []instruction { return d.Stages[len(d.Stages)-1] }

// last returns the arguments of the final stage's last cmd instruction.
func (d dockerfile) last(cmd string) string {
	out := ""
	for _, in := range d.final() {
		if in.Cmd == cmd {
			out = in.Args
		}
	}
	return out
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var d dockerfile
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		if in.Cmd == "FROM" {
			d.Stages = append(d.Stages, nil)
		}
		if len(d.Stages) == 0 {
			if in.Cmd != "ARG" {
				t.Fatalf("Dockerfile: %s before the first FROM", in.Cmd)
			}
			return
		}
		d.Stages[len(d.Stages)-1] = append(d.Stages[len(d.Stages)-1], in)
	}
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // a comment (also inside a continued instruction)
		}
		if rest, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	if len(d.Stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a builder and a final stage", len(d.Stages))
	}
	return d
}

// execForm decodes an exec-form instruction argument (["a", "b"]).
func execForm(t *testing.T, what, args string) []string {
	t.Helper()
	var out []string
	if err := json.Unmarshal([]byte(args), &out); err != nil {
		t.Fatalf("Dockerfile %s %s is not in exec form (a JSON list): %v", what, args, err)
	}
	return out
}

// goBuildRE matches a go build command line up to its -o flag: the part that
// decides what kind of binary comes out.
var goBuildRE = regexp.MustCompile(`CGO_ENABLED=0 go build [^\n]*? -o `)

// TestDeployBuildFlagsMatch checks that scripts/build-binary builds with
// exactly the Dockerfile's flags, so the sizes it reports are the image's.
func TestDeployBuildFlagsMatch(t *testing.T) {
	dockerfileData, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("../scripts/build-binary")
	if err != nil {
		t.Fatal(err)
	}
	inDockerfile := goBuildRE.FindAllString(string(dockerfileData), -1)
	inScript := goBuildRE.FindAllString(string(script), -1)
	if len(inDockerfile) != 1 || len(inScript) != 1 {
		t.Fatalf("want one go build line in each; Dockerfile has %q, scripts/build-binary has %q", inDockerfile, inScript)
	}
	if inDockerfile[0] != inScript[0] {
		t.Errorf("build flags differ:\n  Dockerfile:           %s\n  scripts/build-binary: %s", inDockerfile[0], inScript[0])
	}
	// lambda.norpc keeps net/rpc, and with it html/template's reflection,
	// out of the binary: without it the linker keeps every SDK method (64 MB
	// instead of 22 MB).
	for _, flag := range []string{"-tags lambda.norpc", "-trimpath", "-ldflags='-s -w'"} {
		if !strings.Contains(inDockerfile[0], flag) {
			t.Errorf("the Dockerfile's go build lacks %s", flag)
		}
	}
	if n := strings.Count(stripComments(string(script)), "go build"); n != 1 {
		t.Errorf("scripts/build-binary runs go build %d times, want once (with the Dockerfile's flags)", n)
	}
	if !strings.Contains(string(dockerfileData), "-o /out/agent ./cmd/agent") || !strings.Contains(string(script), `-o "$out" ./cmd/agent`) {
		t.Error("both must build ./cmd/agent")
	}
	// The command run and sync tell a laptop's build to run instead
	// (provision.CheckLambdaExecutable) builds the image's binary.
	for _, arch := range []string{"x86_64", "arm64"} {
		hint := provision.StaticBuildCommand(arch)
		if got := goBuildRE.FindString(hint); got != inDockerfile[0] || !strings.HasSuffix(hint, " ./cmd/agent") {
			t.Errorf("provision.StaticBuildCommand(%s) = %q, want the Dockerfile's %q ... ./cmd/agent", arch, hint, inDockerfile[0])
		}
	}
}

// TestDeployDockerfileImage checks the final image: distroless static,
// nonroot, only the agent, started as `agent run` unless told otherwise.
func TestDeployDockerfileImage(t *testing.T) {
	d := readDockerfile(t)
	builder := d.Stages[0][0].Args
	if !strings.Contains(builder, "golang:") {
		t.Errorf("builder stage FROM %s, want golang", builder)
	}
	if got := d.final()[0].Args; got != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static-debian12:nonroot", got)
	}
	if got := d.last("USER"); got != "nonroot:nonroot" {
		t.Errorf("USER %q, want nonroot:nonroot", got)
	}
	if got := execForm(t, "ENTRYPOINT", d.last("ENTRYPOINT")); !slices.Equal(got, []string{"/agent"}) {
		t.Errorf("ENTRYPOINT %v, want [/agent]", got)
	}
	if got := execForm(t, "CMD", d.last("CMD")); !slices.Equal(got, []string{"run"}) {
		t.Errorf("CMD %v, want [run]", got)
	}
	for _, in := range d.final() {
		switch in.Cmd {
		case "FROM", "COPY", "USER", "ENTRYPOINT", "CMD", "VOLUME", "EXPOSE", "LABEL", "ENV", "ARG":
		default:
			t.Errorf("final stage runs %s %s: distroless has no shell; build in the builder stage", in.Cmd, in.Args)
		}
		if in.Cmd == "COPY" && !strings.HasPrefix(in.Args, "--from=") {
			t.Errorf("final stage copies from the context (%s): only the builder's output belongs in the image", in.Args)
		}
	}
}

// checkStageTaskUsesImage checks a stage task definition the agent
// registered against the image: the init container runs this image's
// ENTRYPOINT with "runner install DIR", DIR is a VOLUME of the image (so on
// Fargate the nonroot init container may write to it), and the algorithm
// container starts DIR/agent runner from the same volume.
func checkStageTaskUsesImage(t *testing.T, td *ecs.RegisterTaskDefinitionInput, d dockerfile) {
	t.Helper()
	var initC, algC *ecstypes.ContainerDefinition
	for i := range td.ContainerDefinitions {
		c := &td.ContainerDefinitions[i]
		if aws.ToString(c.Image) == runnerImage {
			initC = c
		} else {
			algC = c
		}
	}
	if initC == nil || algC == nil {
		t.Fatalf("task definition %s: want an init container with image %s and an algorithm container", aws.ToString(td.Family), runnerImage)
	}
	cmd := initC.Command
	if len(cmd) != 3 || cmd[0] != "runner" || cmd[1] != "install" || !path.IsAbs(cmd[2]) {
		t.Fatalf("init container command %v, want [runner install DIR]", cmd)
	}
	dir := cmd[2]
	entry := execForm(t, "ENTRYPOINT", d.last("ENTRYPOINT"))
	t.Logf("init container runs: %s", strings.Join(append(slices.Clone(entry), cmd...), " "))
	if len(entry) != 1 || entry[0] != "/agent" {
		t.Errorf("image ENTRYPOINT %v: the init container's command assumes the agent binary as entry point", entry)
	}
	mounts := func(c *ecstypes.ContainerDefinition, readOnly bool) bool {
		return slices.ContainsFunc(c.MountPoints, func(m ecstypes.MountPoint) bool {
			return aws.ToString(m.ContainerPath) == dir && aws.ToBool(m.ReadOnly) == readOnly
		})
	}
	if !mounts(initC, false) {
		t.Errorf("init container does not mount %s read-write: %+v", dir, initC.MountPoints)
	}
	if !mounts(algC, true) {
		t.Errorf("algorithm container does not mount %s read-only: %+v", dir, algC.MountPoints)
	}
	if want := []string{dir + "/agent", "runner"}; !slices.Equal(algC.EntryPoint, want) {
		t.Errorf("algorithm entry point %v, want %v", algC.EntryPoint, want)
	}
	if got := execForm(t, "VOLUME", d.last("VOLUME")); !slices.Contains(got, dir) {
		t.Errorf("image VOLUME %v lacks %s: on Fargate the volume would be root-owned 0755 and the nonroot init container could not install the runner", got, dir)
	}
	owned := slices.ContainsFunc(d.final(), func(in instruction) bool {
		return in.Cmd == "COPY" && strings.Contains(in.Args, "--chown=65532:65532") && strings.HasSuffix(in.Args, " "+dir)
	})
	if !owned {
		t.Errorf("the image does not create %s owned by nonroot (65532): ECS copies the VOLUME's owner into the task volume", dir)
	}
}

// TestDeployDockerignoreKeepsBuildInputs checks that .dockerignore leaves in
// the build context every file `go build ./cmd/agent` reads: go.mod, go.sum
// and the Go files of each of the module's packages it depends on.
func TestDeployDockerignoreKeepsBuildInputs(t *testing.T) {
	data, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: exceptions (%s) are not modelled by this test", line)
		}
		patterns = append(patterns, strings.TrimPrefix(path.Clean(line), "/"))
	}
	out, err := exec.Command("go", "list", "-deps", "-f", `{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}{{end}}`, "../cmd/agent").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"go.mod", "go.sum"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		rel, err := filepath.Rel(root, fields[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fields[1:] {
			files = append(files, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(files) < 10 {
		t.Fatalf("go list found only %v", files)
	}
	for _, f := range files {
		if p := dockerIgnored(patterns, f); p != "" {
			t.Errorf(".dockerignore pattern %q drops %s, which the build needs", p, f)
		}
	}
	// And the things that must stay out do.
	for _, f := range []string{".git/config", "bin/agent", "cmd/agent/main_test.go", "workflow/testdata/seed/x.json", "runner.test"} {
		if dockerIgnored(patterns, f) == "" {
			t.Errorf(".dockerignore keeps %s in the build context", f)
		}
	}
}

// dockerIgnored returns the pattern that excludes file (slash-separated,
// relative to the context root) from the build context, or "". Like Docker,
// a pattern matching a parent directory excludes everything below it, "**"
// matches any number of directories, and other wildcards follow path.Match.
func dockerIgnored(patterns []string, file string) string {
	parts := strings.Split(file, "/")
	for _, p := range patterns {
		for n := 1; n <= len(parts); n++ {
			if matchDockerPattern(strings.Split(p, "/"), parts[:n]) {
				return p
			}
		}
	}
	return ""
}

func matchDockerPattern(pat, parts []string) bool {
	if len(pat) == 0 {
		return len(parts) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(parts); i++ {
			if matchDockerPattern(pat[1:], parts[i:]) {
				return true
			}
		}
		return false
	}
	if len(parts) == 0 {
		return false
	}
	ok, err := path.Match(pat[0], parts[0])
	return err == nil && ok && matchDockerPattern(pat[1:], parts[1:])
}

// stripComments drops the comment lines of a shell script.
func stripComments(script string) string {
	var b strings.Builder
	for _, line := range strings.Split(script, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
