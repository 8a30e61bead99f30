package provision

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
)

// ErrNotLambdaExecutable matches the error CheckLambdaExecutable returns for
// a file that cannot be the stage functions' code.
var ErrNotLambdaExecutable = errors.New("not a static Linux executable")

// DefaultLambdaArchitecture is the Lambda architecture of the running
// agent's own executable, the stage functions' code: "arm64" when it was
// built for arm64, else "x86_64". Options.LambdaArchitecture defaults to it.
func DefaultLambdaArchitecture() string {
	if runtime.GOARCH == "arm64" {
		return "arm64"
	}
	return "x86_64"
}

// lambdaMachines are the ELF machines of Lambda's instruction set
// architectures, and the GOARCH that builds for each.
// https://docs.aws.amazon.com/lambda/latest/dg/foundation-arch.html
var lambdaMachines = map[string]struct {
	machine elf.Machine
	goarch  string
}{
	"x86_64": {elf.EM_X86_64, "amd64"},
	"arm64":  {elf.EM_AARCH64, "arm64"},
}

// StaticBuildCommand is the command that builds the agent as its image is
// built (the Dockerfile's go build line) for the Lambda architecture arch:
// a static Linux executable, which Lambda's provided.al2023 runtime runs as
// the stage function and every algorithm image runs as the runner, whatever
// C library either has.
func StaticBuildCommand(arch string) string {
	goarch := "amd64"
	if m, ok := lambdaMachines[arch]; ok {
		goarch = m.goarch
	}
	return "GOOS=linux GOARCH=" + goarch + " CGO_ENABLED=0 go build -tags lambda.norpc -trimpath -ldflags='-s -w' -o agent ./cmd/agent"
}

// CheckLambdaExecutable checks that the file at path can be the stage
// functions' code on Lambda architecture arch ("x86_64" or "arm64"): an ELF
// executable for Linux and that architecture, statically linked (no program
// interpreter, no shared libraries). The agent deploys its own executable,
// so a laptop's `go run` build (macOS, or Linux with cgo and so glibc)
// would deploy functions that cannot start; the error, matching
// ErrNotLambdaExecutable, names the file and the build command to run
// instead. A file that cannot be read gives its own error.
func CheckLambdaExecutable(path, arch string) error {
	want, ok := lambdaMachines[arch]
	if !ok {
		return fmt.Errorf("lambda architecture %q: want x86_64 or arm64", arch)
	}
	f, err := elf.Open(path)
	var formatErr *elf.FormatError
	if errors.As(err, &formatErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return notLambdaExecutable(path, arch, "it is not an ELF file, so not a Linux executable (a macOS or Windows build?)")
	}
	if err != nil {
		return fmt.Errorf("check the lambda executable %s: %w", path, err)
	}
	defer f.Close()
	switch {
	case f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX:
		return notLambdaExecutable(path, arch, "it is an executable for "+strings.TrimPrefix(f.OSABI.String(), "ELFOSABI_")+", not Linux")
	case f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN:
		return notLambdaExecutable(path, arch, "it is an ELF "+f.Type.String()+" file, not an executable")
	case f.Machine != want.machine:
		return notLambdaExecutable(path, arch, fmt.Sprintf("it is built for %s, and the stage functions run on %s", f.Machine, arch))
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return notLambdaExecutable(path, arch, "it is dynamically linked (it names a program interpreter, as cgo builds do)")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("check the lambda executable %s: %w", path, err)
	}
	if len(libs) > 0 {
		return notLambdaExecutable(path, arch, "it is dynamically linked against "+strings.Join(libs, ", "))
	}
	return nil
}

func notLambdaExecutable(path, arch, why string) error {
	return fmt.Errorf("the agent deploys its own executable %s as the stage functions' code, but %s: %w; "+
		"build the agent with `%s` (or scripts/build-binary, or use the image) and run that",
		path, why, ErrNotLambdaExecutable, StaticBuildCommand(arch))
}
