package workflow

import (
	slashpath "path"
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
)

// validateAlgorithm checks the values of a decoded algorithm, whose name must
// repeat its file's base name. lk answers for instance types the table
// lacks; nil checks offline.
func validateAlgorithm(r *report, a *Algorithm, lk *typeLookup) {
	base := baseName(a.File)
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
	case a.Name == "":
		r.value(pAlgName, "name is empty: set it to %s, the file name without .json", quote(base))
	case a.Name != base:
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
	if a.CPU <= 0 {
		r.value(pCPU, "CPU must be a positive number of vCPUs, e.g. 1 or 0.5")
	}
	checkAlgorithmPlacement(r, a, lk)
	seen := make(map[string]bool, len(a.UserSpecifiedEnvironmentVariables))
	for i, v := range a.UserSpecifiedEnvironmentVariables {
		p := pEnvDecls.index(i).key("name")
		switch {
		case !validEnvName(v.Name):
			r.value(p, "%s is not a valid environment variable name: use letters, digits and underscores, not starting with a digit", quote(v.Name))
		case seen[v.Name]:
			r.value(p, "%s is declared twice: remove one", v.Name)
		}
		seen[v.Name] = true
	}
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
