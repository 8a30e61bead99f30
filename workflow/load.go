package workflow

import (
	"cmp"
	"errors"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"
)

// The config repository's directories (docs/design.md, "The config repository").
const (
	WorkflowsDir  = "workflows"
	AlgorithmsDir = "algorithms"
)

// Config is the desired state read from a config repository.
type Config struct {
	Workflows  []*Workflow           // the valid workflows, sorted by Name, with Stages and SpecHash
	Algorithms map[string]*Algorithm // the valid algorithms by name
	// Notes are every note of every file, sorted like problems: what the
	// original cloud_pipe format allowed and cloudpipe reads its own way.
	// A file with notes only is valid.
	Notes Problems
}

// Load reads workflows/*.json and algorithms/*.json from fsys, which is
// rooted at the config repository's top, checks every file on its own and
// against the others, and returns the valid workflows and algorithms together
// with every problem found, sorted. One bad file never hides another's
// problems, and a workflow is left out of Config.Workflows when its file has
// any problem, its own or a cross-file one (an unknown or invalid algorithm,
// a bucket another workflow uses).
//
// A missing workflows/ or algorithms/ directory counts as empty. Files not
// ending in .json and subdirectories are ignored; files over 1 MiB are
// refused without being read. Errors reading fsys are reported as problems
// of the directory or file concerned, so Config is never nil.
func Load(fsys fs.FS) (*Config, Problems) {
	cfg, probs, _ := LoadWith(fsys, LoadOptions{}) // no lookup, no error
	return cfg, probs
}

// LoadOptions configure LoadWith. The zero value loads offline, as Load.
type LoadOptions struct {
	// InstanceTypes, if set, is asked about an algorithm's instance_type
	// that cloudpipe's table lacks (EC2 DescribeInstanceTypes when the
	// agent can reach AWS); without it such a type is a problem.
	InstanceTypes InstanceTypeLookup
}

// LoadWith is Load with options. Its error is InstanceTypes' first error:
// AWS could not be asked about a type, so the files cannot be judged; the
// Config and Problems are then incomplete and must not be applied.
func LoadWith(fsys fs.FS, o LoadOptions) (*Config, Problems, error) {
	lk := &typeLookup{fn: o.InstanceTypes}
	var probs Problems
	cfg := &Config{Algorithms: make(map[string]*Algorithm)}

	// invalid remembers the algorithm files with problems, by base name, so
	// a workflow naming one is told to fix that file rather than that the
	// algorithm does not exist.
	invalid := make(map[string]string)
	markInvalid := func(file string) {
		for _, n := range algorithmFileNames(file) {
			invalid[n] = file
		}
	}
	files, failed := jsonFiles(fsys, AlgorithmsDir, &probs)
	for _, file := range failed {
		markInvalid(file)
	}
	var algs []parsedAlgorithm
	for _, file := range files {
		data, ok := readFile(fsys, file.name, file.size, &probs)
		if !ok {
			markInvalid(file.name)
			continue
		}
		a, r := parseAlgorithm(file.name, data, lk)
		algs = append(algs, parsedAlgorithm{a, r})
	}
	checkAlgorithmClaims(algs)
	for _, pa := range algs {
		probs = append(probs, pa.r.probs...)
		cfg.Notes = append(cfg.Notes, pa.r.notes...)
		if pa.a != nil && pa.r.ok() {
			cfg.Algorithms[pa.a.Name] = pa.a
		} else {
			markInvalid(pa.r.file)
		}
	}
	names := slices.Sorted(maps.Keys(cfg.Algorithms))
	for n := range invalid {
		names = append(names, n)
	}
	slices.Sort(names)

	var parsed []parsedWorkflow
	files, _ = jsonFiles(fsys, WorkflowsDir, &probs)
	for _, file := range files {
		data, ok := readFile(fsys, file.name, file.size, &probs)
		if !ok {
			continue
		}
		w, r := parseWorkflow(file.name, data)
		if w == nil {
			probs = append(probs, r.probs...)
			continue
		}
		parsed = append(parsed, parsedWorkflow{w, r})
	}

	checkBucketClaims(parsed)
	for _, pw := range parsed {
		stages := resolveSteps(pw.r, pw.w, cfg.Algorithms, invalid, names)
		probs = append(probs, pw.r.probs...)
		cfg.Notes = append(cfg.Notes, pw.r.notes...)
		if pw.r.ok() {
			pw.w.Stages = stages
			pw.w.SpecHash = specHash(pw.w)
			pw.w.Notes = append(pw.w.Notes, credentialNotes(pw.w)...)
			pw.w.Notes.sort()
			cfg.Workflows = append(cfg.Workflows, pw.w)
		} else {
			pw.w.Notes = nil
		}
	}
	slices.SortFunc(cfg.Workflows, func(a, b *Workflow) int { return cmp.Compare(a.Name, b.Name) })
	probs.sort()
	cfg.Notes.sort()
	return cfg, probs, lk.err
}

// parsedAlgorithm is an algorithm file that was read, with its report; a is
// nil when the file could not be decoded.
type parsedAlgorithm struct {
	a *Algorithm
	r *report
}

// checkAlgorithmClaims reports every algorithm name that two files hold, in
// each of them: algorithms/x.json and the original wrap's
// algorithms/x_info.json both define x, and which one a workflow means
// cannot be guessed.
func checkAlgorithmClaims(algs []parsedAlgorithm) {
	claims := make(map[string][]parsedAlgorithm)
	for _, pa := range algs {
		if pa.a != nil && slices.Contains(algorithmFileNames(pa.r.file), pa.a.Name) {
			claims[pa.a.Name] = append(claims[pa.a.Name], pa)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(claims)) {
		cs := claims[name]
		for _, c := range cs {
			for _, o := range cs {
				if o.r != c.r {
					c.r.value(pAlgName, "algorithm %s is defined by both %s and %s: keep one of the two files", quote(name), c.r.file, o.r.file)
				}
			}
		}
	}
}

// credentialNotes returns the notes of w's algorithms that their required
// access-key variables are dropped, unless w maps both keys from a secret,
// which gives the algorithm keys as the original runtime did.
func credentialNotes(w *Workflow) Problems {
	if providedBySecret(w, "AWS_ACCESS_KEY_ID") && providedBySecret(w, "AWS_SECRET_ACCESS_KEY") {
		return nil
	}
	var notes Problems
	seen := map[*Algorithm]bool{}
	for _, st := range w.Stages {
		if a := st.Algorithm; a.credentialNote != nil && !seen[a] {
			seen[a] = true
			notes = append(notes, *a.credentialNote)
		}
	}
	return notes
}

// parsedWorkflow is a workflow file that could be decoded, valid or not, with
// the report that holds its bytes and problems.
type parsedWorkflow struct {
	w *Workflow
	r *report
}

// jsonFiles lists the regular *.json files directly in dir, sorted, after
// checking their size, and the *.json files it reported a problem for
// (failed). Directories (even one called x.json) are skipped; anything else
// that is not a regular file is reported, since reading a named pipe or
// device could block or never end.
func jsonFiles(fsys fs.FS, dir string, probs *Problems) (files []sizedFile, failed []string) {
	entries, err := fs.ReadDir(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		*probs = append(*probs, Problem{File: dir, Msg: "cannot read the directory: " + err.Error()})
		// fs.ReadDir may still return the entries it read.
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		file := dir + "/" + e.Name()
		info, err := fs.Stat(fsys, file) // follows symbolic links on os.DirFS
		msg := ""
		switch {
		case err != nil:
			msg = "cannot read the file: " + err.Error()
		case info.IsDir():
			continue
		case !info.Mode().IsRegular():
			msg = "is not a regular file: replace it with a JSON file or remove it"
		case info.Size() > maxFileSize:
			msg = sizeMessage(info.Size())
		default:
			files = append(files, sizedFile{file, info.Size()})
			continue
		}
		*probs = append(*probs, Problem{File: file, Msg: msg})
		failed = append(failed, file)
	}
	return files, failed
}

// sizedFile is a file to read and the size fs.Stat gave for it.
type sizedFile struct {
	name string
	size int64
}

// readFile reads file into a buffer sized from its Stat size, so reading
// costs one allocation of the file's size, and never reads more than
// maxFileSize+1 bytes, so a file that grew after its size was checked still
// cannot take more memory than that.
func readFile(fsys fs.FS, file string, size int64, probs *Problems) ([]byte, bool) {
	fail := func(err error) ([]byte, bool) {
		*probs = append(*probs, Problem{File: file, Msg: "cannot read the file: " + err.Error()})
		return nil, false
	}
	f, err := fsys.Open(file)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	data := make([]byte, 0, min(max(size, 0), maxFileSize)+1) // +1 to see EOF without growing
	for {
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
		n, err := f.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if len(data) > maxFileSize {
			*probs = append(*probs, Problem{File: file, Msg: sizeMessage(int64(len(data)))})
			return nil, false
		}
		if err == io.EOF {
			return data, true
		}
		if err != nil {
			return fail(err)
		}
	}
}

// checkBucketClaims reports every bucket named by more than one workflow, in
// each file involved: S3 notifications and outputs of two pipelines on one
// bucket would trigger each other's runs.
func checkBucketClaims(parsed []parsedWorkflow) {
	type claim struct {
		pw    parsedWorkflow
		field path
	}
	claims := make(map[string][]claim)
	for _, pw := range parsed {
		for _, c := range []struct {
			field  path
			bucket string
		}{{pInput, pw.w.InputBucket}, {pOutput, pw.w.OutputBucket}} {
			if bucketProblem(c.bucket) == "" {
				claims[c.bucket] = append(claims[c.bucket], claim{pw, c.field})
			}
		}
	}
	for _, bucket := range slices.Sorted(maps.Keys(claims)) {
		cs := claims[bucket]
		for _, c := range cs {
			var others []string
			for _, o := range cs {
				if o.pw.w != c.pw.w {
					others = append(others, o.pw.w.File+" ("+o.field.String()+")")
				}
			}
			if len(others) > 0 {
				c.pw.r.value(c.field, "bucket %s is also used by %s: a bucket belongs to one workflow, choose another name", quote(bucket), list(others, 5))
			}
		}
	}
}

// resolveSteps finds the algorithm of each step and checks the step against
// it: required variables given, no undeclared variable, ports among the
// algorithm's. names lists every algorithm file's base name, for messages.
func resolveSteps(r *report, w *Workflow, algs map[string]*Algorithm, invalid map[string]string, names []string) []Stage {
	stages := make([]Stage, 0, len(w.Process.Algorithms))
	for i, st := range w.Process.Algorithms {
		p := pSteps.index(i)
		if st.Name == "" {
			continue // reported by validateWorkflow
		}
		a := algs[st.Name]
		if a == nil {
			if file, ok := invalid[st.Name]; ok {
				r.value(p.key("name"), "algorithm %s is invalid: fix the problems reported for %s first", quote(st.Name), file)
			} else {
				hint := ""
				if guess := closest(st.Name, names); guess != "" {
					hint = " (did you mean " + quote(guess) + "?)"
				}
				r.value(p.key("name"), "unknown algorithm %s%s: expected the file %s/%s.json; the algorithms are: %s", quote(st.Name), hint, AlgorithmsDir, st.Name, list(names, 10))
			}
			continue
		}
		checkStep(r, p, w, st, a)
		stages = append(stages, Stage{Index: i, Step: st, Algorithm: a})
	}
	if len(stages) == len(w.Process.Algorithms) {
		checkSecretsDeclared(r, w, stages)
	}
	noteKeyPair(r, w, stages)
	return stages
}

// checkStep checks one step's variables, ports and capacity against its
// algorithm.
func checkStep(r *report, p path, w *Workflow, st Step, a *Algorithm) {
	checkStepPlacement(r, p, w, st, a)
	declared := make([]string, 0, len(a.UserSpecifiedEnvironmentVariables))
	for _, v := range a.UserSpecifiedEnvironmentVariables {
		declared = append(declared, v.Name)
		if _, ok := st.Variables[v.Name]; ok {
			if iv, _ := Injected(v.Name); iv.Wiring {
				// The original setup-pipe set these over the workflow's
				// value; the runner gives a value already in the
				// environment precedence.
				n := r.note(p.key("variables").key(v.Name), "%s is set by the runner to %s when a workflow leaves it out (the original setup-pipe always set it): this value replaces that", v.Name, iv.Provided)
				w.Notes = append(w.Notes, n)
			}
		}
		if !v.Required || providedBySecret(w, v.Name) {
			continue
		}
		if _, ok := st.Variables[v.Name]; ok {
			continue
		}
		how := "add it under variables"
		if credentialLike(v.Name) {
			how = "map it from AWS Secrets Manager under secrets"
		}
		r.value(p.key("variables"), "%s is required by algorithm %s: %s", v.Name, a.Name, how)
	}
	slices.Sort(declared)
	for _, k := range slices.Sorted(maps.Keys(st.Variables)) {
		if _, ok := slices.BinarySearch(declared, k); ok {
			continue
		}
		if r.full {
			break // the hint costs an edit distance per name; no one would see it
		}
		hint := ""
		if guess := closest(k, declared); guess != "" {
			hint = " (did you mean " + guess + "?)"
		}
		r.key(p.key("variables").key(k), "%s is not declared by algorithm %s%s; declared: %s", envName(k), a.Name, hint, list(declared, 10))
	}
	for j, pt := range st.Port {
		if slices.Contains(a.Port, pt) || !validPort(pt) {
			continue // a malformed port is reported by checkPorts already
		}
		ports := make([]string, len(a.Port))
		for i, ap := range a.Port {
			ports[i] = portString(ap)
		}
		r.value(p.key("port").index(j), "port %s is not a port of algorithm %s; its ports: %s", portString(pt), a.Name, list(ports, 10))
	}
}

// providedBySecret reports whether the workflow supplies variable name from
// Secrets Manager: through secrets, or through task_credentials_secret for the
// two AWS key variables.
func providedBySecret(w *Workflow, name string) bool {
	if _, ok := w.Secrets[name]; ok {
		return true
	}
	return w.TaskCredentialsSecret != "" && (name == "AWS_ACCESS_KEY_ID" || name == "AWS_SECRET_ACCESS_KEY")
}

// checkSecretsDeclared reports secrets no algorithm of the workflow reads:
// like an undeclared variable, that is almost always a typo.
func checkSecretsDeclared(r *report, w *Workflow, stages []Stage) {
	if len(w.Secrets) == 0 {
		return
	}
	var declared, algs []string
	for _, s := range stages {
		algs = append(algs, s.Algorithm.Name)
		for _, v := range s.Algorithm.UserSpecifiedEnvironmentVariables {
			declared = append(declared, v.Name)
		}
	}
	slices.Sort(declared)
	declared = slices.Compact(declared)
	for _, k := range slices.Sorted(maps.Keys(w.Secrets)) {
		if _, ok := slices.BinarySearch(declared, k); ok || !validEnvName(k) {
			continue
		}
		r.key(pSecrets.key(k), "%s is not declared by any algorithm of this workflow (%s); declared: %s", k, strings.Join(slices.Compact(algs), ", "), list(declared, 10))
	}
}
