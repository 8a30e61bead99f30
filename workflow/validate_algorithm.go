package workflow

import (
	"cmp"
	slashpath "path"
	"slices"
	"strings"
)

var (
	pAlgName   = path{}.key("name")
	pRunCmd    = path{}.key("run_command")
	pMinimal   = path{}.key("memory").key("minimal")
	pSuggested = path{}.key("memory").key("suggested")
	pCPU       = path{}.key("CPU")
	pEnvDecls  = path{}.key("user_specified_environment_variables")
	pAlgPorts  = path{}.key("port")
	pStorage   = path{}.key("ephemeral_storage_gib")
)

// Fargate's range of a task's ephemeral storage, in GiB: "The minimum
// supported value is 21 GiB and the maximum supported value is 200 GiB";
// without the parameter a task gets 20 GiB.
// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-task-storage.html
// https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_EphemeralStorage.html
const (
	MinEphemeralStorageGiB = 21
	MaxEphemeralStorageGiB = 200
)

// validateAlgorithm checks the values of a decoded algorithm, whose name must
// repeat its file's base name (or, for a <name>_info.json file as the
// original wrap wrote it, <name>), puts the defaults of what the original
// format left unset, and notes what cloudpipe reads its own way. lk answers
// for instance types the table lacks; nil checks offline.
func validateAlgorithm(r *report, a *Algorithm, lk *typeLookup) {
	base := baseName(a.File)
	wrapName, fromWrap := wrapFileName(a.File)
	for _, f := range []struct {
		name, value, example string
	}{
		{"container_name", a.ContainerName, `"registry/image:tag"`},
		{"input_file_path", a.InputFilePath, `"/data/in"`},
		{"output_file_path", a.OutputFilePath, `"/data/out"`},
	} {
		if strings.TrimSpace(f.value) == "" {
			r.value(path{}.key(f.name), "%s is empty: set it, e.g. %s", f.name, f.example)
		}
	}
	if strings.ContainsAny(a.ContainerName, " \t\r\n") {
		r.value(path{}.key("container_name"), "container image %s contains white space: give one image reference such as \"registry/image:tag\"", quote(a.ContainerName))
	}
	switch {
	case a.Name == "" && fromWrap:
		r.value(pAlgName, "name is empty: set it to %s, the file name without %s", quote(wrapName), wrapSuffix)
	case a.Name == "":
		r.value(pAlgName, "name is empty: set it to %s, the file name without .json", quote(base))
	case a.Name != base && fromWrap && a.Name != wrapName:
		r.value(pAlgName, "name %s does not match the file name: set it to %s (the original wrap saved algorithm NAME as NAME%s), or rename the file to %s", quote(a.Name), quote(wrapName), wrapSuffix, slashpath.Join(slashpath.Dir(a.File), a.Name+".json"))
	case a.Name != base && !fromWrap:
		r.value(pAlgName, "name %s does not match the file name: set it to %s, or rename the file to %s", quote(a.Name), quote(base), slashpath.Join(slashpath.Dir(a.File), a.Name+".json"))
	default:
		if why := algorithmNameProblem(a.Name); why != "" {
			r.value(pAlgName, "name %s %s: rename the file and the name", quote(a.Name), why)
		}
	}
	checkRunCommand(r, a.RunCommand)
	checkPorts(r, pAlgPorts, a.Port)
	if a.Memory.Minimal <= 0 {
		r.value(pMinimal, "memory.minimal must be a positive number of MiB, not %d", a.Memory.Minimal)
	}
	if a.Memory.Suggested <= 0 {
		r.value(pSuggested, "memory.suggested must be a positive number of MiB, not %d", a.Memory.Suggested)
	}
	if a.Memory.Minimal > 0 && a.Memory.Suggested > 0 && a.Memory.Minimal > a.Memory.Suggested {
		r.value(pSuggested, "memory.suggested (%d MiB) is below memory.minimal (%d MiB): raise suggested or lower minimal", a.Memory.Suggested, a.Memory.Minimal)
	}
	checkCPU(r, a)
	if g := a.EphemeralStorageGiB; g != nil && (*g < MinEphemeralStorageGiB || *g > MaxEphemeralStorageGiB) {
		r.value(pStorage, "ephemeral_storage_gib must be between %d and %d GiB (Fargate's range), not %d: leave it out for Fargate's default of 20 GiB",
			MinEphemeralStorageGiB, MaxEphemeralStorageGiB, *g)
	}
	noteIgnoredFields(r, a)
	checkAlgorithmPlacement(r, a, lk)
	seen := make(map[string]bool, len(a.UserSpecifiedEnvironmentVariables))
	var dropped []string // required access-key variables, which are dropped
	var droppedAt path
	for i, v := range a.UserSpecifiedEnvironmentVariables {
		p := pEnvDecls.index(i).key("name")
		switch {
		case !validEnvName(v.Name):
			r.value(p, "%s is not a valid environment variable name: use letters, digits and underscores, not starting with a digit", quote(v.Name))
		case seen[v.Name]:
			r.value(p, "%s is declared twice: remove one", v.Name)
		}
		seen[v.Name] = true
		if iv, ok := Injected(v.Name); ok && iv.Credential && v.Required {
			if dropped == nil {
				droppedAt = p
			}
			dropped = append(dropped, v.Name)
		}
	}
	if len(dropped) > 0 {
		n := r.note(droppedAt, "%s dropped: cloudpipe passes no access keys; the algorithm's AWS calls use the stage's task role, or the keys of the workflow's task_credentials_secret", andList(dropped, "is", "are"))
		a.credentialNote = &n
	}
}

// checkCPU puts the default in place of an unset CPU, with a note: the
// original format's own example wrote "CPU": {}, and its wrap command
// offered 1 as the default.
func checkCPU(r *report, a *Algorithm) {
	_, off, found := locate(r.data, pCPU)
	switch {
	case !found:
		a.CPU = DefaultCPU
		r.note(pCPU, "CPU is not set: the task gets the default, %v vCPU", float64(DefaultCPU))
	case off >= 0 && off < len(r.data) && r.data[off] == '{':
		a.CPU = DefaultCPU
		r.note(pCPU, "CPU {} means not set: the task gets the default, %v vCPU", float64(DefaultCPU))
	case a.CPU <= 0:
		r.value(pCPU, "CPU must be a positive number of vCPUs, e.g. 1 or 0.5")
	}
}

// noteIgnoredFields names, in one note, the fields that the original
// runtime used and cloudpipe does not: the image runs unmodified on Fargate
// with the runner as its entry point, whatever its system, and is sized
// from CPU and memory rather than an instance type. Empty fields lose
// nothing and are not named.
func noteIgnoredFields(r *report, a *Algorithm) {
	type field struct {
		name string
		off  int // of the key in the file: the note names them in file order
	}
	var fields []field
	for _, f := range []struct{ name, value string }{
		{"system", a.System},
		{"executable_path", a.ExecutablePath},
	} {
		if strings.TrimSpace(f.value) != "" {
			k, _, _ := locate(r.data, path{}.key(f.name))
			fields = append(fields, field{f.name, k})
		}
	}
	if len(fields) == 0 {
		return
	}
	slices.SortStableFunc(fields, func(x, y field) int { return cmp.Compare(x.off, y.off) })
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	r.note(path{}.key(names[0]), "%s ignored: the image runs unmodified, started by run_command", andList(names, "is", "are"))
}

// wrapSuffix ends the name of an algorithm file as the original wrap
// command saved it: algorithms/<name>_info.json holds algorithm <name>.
const wrapSuffix = "_info.json"

// wrapFileName returns <name> for a file <name>_info.json.
func wrapFileName(file string) (string, bool) {
	name, ok := strings.CutSuffix(slashpath.Base(file), wrapSuffix)
	return name, ok && name != ""
}

// algorithmFileNames are the algorithm names a file may hold: its base name,
// and <name> for <name>_info.json. A workflow naming either of an invalid
// file is told to fix that file.
func algorithmFileNames(file string) []string {
	names := []string{baseName(file)}
	if n, ok := wrapFileName(file); ok {
		names = append(names, n)
	}
	return names
}

// provideInjected makes the variables the original wrap injected optional:
// cloudpipe's runner sets them (docs/workflow-reference.md, "Runtime
// environment"), or, for the access keys, the task role replaces them, so a
// workflow never has to give them. It runs after validation, which notes
// the required access keys that are dropped.
func provideInjected(a *Algorithm) {
	for i, v := range a.UserSpecifiedEnvironmentVariables {
		if _, ok := Injected(v.Name); ok {
			a.UserSpecifiedEnvironmentVariables[i].Required = false
		}
	}
}

// andList joins names as "a", "a and b" or "a, b and c", followed by the
// verb for one or for several.
func andList(names []string, one, several string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0] + " " + one
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1] + " " + several
}

// checkRunCommand requires $input as an argument of its own: the runner
// splits run_command on white space, without a shell, and replaces the
// arguments that are exactly $input and $output with file paths. $output may
// be left out: then the runner uploads what the program leaves in
// output_file_path.
func checkRunCommand(r *report, cmd string) {
	args := strings.Fields(cmd)
	if len(args) == 0 {
		r.value(pRunCmd, "run_command is empty: give the command that processes one file, e.g. \"python /app/run.py $input $output\"")
		return
	}
	hasInput := false
	for _, a := range args {
		switch {
		case a == "$input":
			hasInput = true
		case a == "$output":
		case strings.Contains(a, "$input") || strings.Contains(a, "$output"):
			r.value(pRunCmd, "argument %s: $input and $output are replaced only when they are whole arguments (there is no shell); separate them with spaces, e.g. \"--in $input\"", quote(a))
			hasInput = hasInput || strings.Contains(a, "$input")
		}
	}
	if !hasInput {
		r.value(pRunCmd, "run_command does not use $input: add $input as the argument where the program expects the input file, e.g. \"python /app/run.py $input $output\"")
	}
}
