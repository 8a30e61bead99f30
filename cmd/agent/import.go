package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing/fstest"

	"github.com/cloudpipe/cloudpipe/workflow"
)

var importCommand = &command{
	name:     "import",
	synopsis: "--from OLD --out DIR [WORKFLOW.json...]",
	summary:  "turn the original cloud_pipe's files into a config repository",
	help: `Turn a user's files of the original cloud_pipe into a config repository in
DIR. OLD is its directory (usually ~/.cloud_pipe): each algorithms/<name>_info.json
that its 'wrap' wrote becomes DIR/algorithms/<name>.json, without the eight
variables 'wrap' injected (cloudpipe provides what they stood for; the access
keys are replaced by each stage's task role) and with container_name kept.
Each WORKFLOW.json given (cloud_pipe took them on its command line) becomes
DIR/workflows/<name>.json, with the guide's placeholder account_id
"your-aws-account-id" dropped (a real 12-digit one is kept).

The report on stdout says, per file, what changed, then what is left to do:
the problems 'agent validate' would still find, and, when OLD/task holds
access keys, how to replace them. The keys themselves are never copied or
printed.

Nothing is written outside DIR, and nothing in it is overwritten: if any
file to write exists, or a name would lead out of DIR, nothing is written.

Exit status: 0 imported, 1 nothing written (a file exists, a name or a file
is unusable), 2 usage error (OLD is not a directory, a WORKFLOW.json is
missing).`,
	flags: []string{"from", "out"},
	run:   runImport,
}

// maxImportFile bounds what import reads of one file: the limit of
// 'agent validate', far above any real workflow or algorithm.
const maxImportFile = 1 << 20

// placeholderAccount is the account_id of the original guide's sample
// workflow, which its users copied as it was.
const placeholderAccount = "your-aws-account-id"

// importFile is one file import writes, with what it changed.
type importFile struct {
	target  string // slash path inside DIR, e.g. "algorithms/x.json"
	source  string // where it came from, as the user named it
	data    []byte
	changes []string
}

func runImport(_ context.Context, cfg Config, args []string, out streams) error {
	// Checked here rather than marked required in the option table, which
	// would make them required of every test that parses all options.
	for _, o := range []struct{ flag, value string }{{"from", cfg.From}, {"out", cfg.Out}} {
		if o.value == "" {
			return usagef("--%s (or %s) is required", o.flag, envName(o.flag))
		}
	}
	if !isDir(cfg.From) {
		return usagef("--from %s: not a directory (want the original cloud_pipe's directory, usually ~/.cloud_pipe)", cfg.From)
	}
	for _, a := range args {
		if !strings.HasSuffix(a, ".json") {
			return usagef("%s: a workflow file ends in .json", a)
		}
		if _, err := os.Stat(a); err != nil {
			return usagef("%s: no such file", a)
		}
	}
	algs, err := importAlgorithms(cfg.From)
	if err != nil {
		return err
	}
	var files []importFile
	files = append(files, algs...)
	for _, a := range args {
		f, err := importWorkflow(a)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	if err := checkTargets(files); err != nil {
		return err
	}
	keys, err := taskKeyNames(filepath.Join(cfg.From, "task"))
	if err != nil {
		return err
	}
	if err := writeImport(cfg.Out, files); err != nil {
		return err
	}
	writeImportReport(out.stdout, cfg, files, keys)
	fmt.Fprintf(out.stderr, "imported %s and %s into %s\n",
		plural(count(files, "algorithms/"), "algorithm"), plural(count(files, "workflows/"), "workflow"), cfg.Out)
	return nil
}

func count(files []importFile, dir string) int {
	n := 0
	for _, f := range files {
		if strings.HasPrefix(f.target, dir) {
			n++
		}
	}
	return n
}

// importAlgorithms reads OLD/algorithms: <name>_info.json as the original
// wrap wrote them, and <name>.json. A directory without algorithms is fine
// (a user who only ran other people's).
func importAlgorithms(old string) ([]importFile, error) {
	dir := filepath.Join(old, "algorithms")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	var files []importFile
	from := map[string]string{} // name -> source, to find a name written twice
	for _, e := range entries {
		base := e.Name()
		name, ok := strings.CutSuffix(base, "_info.json")
		if !ok {
			name, ok = strings.CutSuffix(base, ".json")
		}
		if !ok || !e.Type().IsRegular() {
			continue // not an algorithm file (or a link, which could lead anywhere)
		}
		src := filepath.Join(dir, base)
		if err := checkImportName(src, name); err != nil {
			return nil, err
		}
		if prev, dup := from[name]; dup {
			return nil, fmt.Errorf("%s and %s both define algorithm %s: remove one and import again", prev, src, name)
		}
		from[name] = src
		f, err := importAlgorithm(src, name)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// checkImportName refuses a name that cannot be a file in algorithms/ or
// workflows/: the names import writes are those of the files it reads, and
// a name like ".." would write outside DIR. The rule is an algorithm's
// (letters, digits, hyphens, underscores); a workflow's stricter one is left
// to validation, which explains it.
func checkImportName(src, name string) error {
	ok := name != ""
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok = ok && (c == '-' || c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9')
	}
	if !ok {
		return fmt.Errorf("%s: name %q may hold only letters, digits, hyphens and underscores; nothing was written", src, name)
	}
	return nil
}

// importAlgorithm converts one algorithm file: the injected variables are
// removed, "CPU": {} becomes the default, and name must be the file's.
func importAlgorithm(src, name string) (importFile, error) {
	f := importFile{target: "algorithms/" + name + ".json", source: src}
	obj, err := readObject(src)
	if err != nil {
		return f, err
	}
	if v, ok := obj.get("name"); ok {
		var inFile string
		if json.Unmarshal(v, &inFile) != nil || inFile != name {
			return f, fmt.Errorf("%s: name %s is not the file's name %q; nothing was written", src, shortJSON(v), name)
		}
	}
	if v, ok := obj.get("user_specified_environment_variables"); ok {
		kept, removed, creds, err := dropInjected(v)
		if err != nil {
			return f, fmt.Errorf("%s: user_specified_environment_variables: %w", src, err)
		}
		if len(removed) > 0 {
			obj.set("user_specified_environment_variables", kept)
			f.changes = append(f.changes, "removed the variables cloud_pipe's wrap added: "+strings.Join(removed, ", ")+
				" (cloudpipe provides them at run time; no workflow has to give them)")
		}
		if len(creds) > 0 {
			f.changes = append(f.changes, "removed "+strings.Join(creds, ", ")+
				": the stage's task role gives the algorithm its AWS access (a workflow's task_credentials_secret, if keys are a must)")
		}
	}
	// The original example algorithm says "CPU": {}, which meant "the
	// default": validation reads it as workflow.DefaultCPU, the original
	// wrap's default, with a note; the imported file says so outright.
	if v, ok := obj.get("CPU"); !ok || isEmptyObject(v) {
		was := "no CPU"
		if ok {
			was = `"CPU": {}`
		}
		def := strconv.FormatFloat(float64(workflow.DefaultCPU), 'g', -1, 64)
		obj.set("CPU", json.RawMessage(def))
		f.changes = append(f.changes, was+` became "CPU": `+def+`, the original wrap's default`)
	}
	if v, ok := obj.get("container_name"); ok {
		f.changes = append(f.changes, "container_name "+shortJSON(v)+" kept: the image must be in a registry the tasks can pull from")
	}
	f.data, err = obj.encode()
	if err != nil {
		return f, fmt.Errorf("%s: %w", src, err)
	}
	return f, nil
}

// dropInjected removes the variables the original wrap injected from a
// user_specified_environment_variables list, returning the list and the
// names removed (credentials apart).
func dropInjected(v json.RawMessage) (json.RawMessage, []string, []string, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(v, &list); err != nil {
		return nil, nil, nil, errors.New("not a list")
	}
	var kept []json.RawMessage
	var removed, creds []string
	for _, item := range list {
		var decl struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(item, &decl) // an entry of another shape is kept for validation to report
		iv, ok := workflow.Injected(decl.Name)
		switch {
		case !ok:
			kept = append(kept, item)
		case iv.Credential:
			creds = append(creds, iv.Name)
		default:
			removed = append(removed, iv.Name)
		}
	}
	if kept == nil {
		kept = []json.RawMessage{}
	}
	out, err := json.Marshal(kept)
	return out, removed, creds, err
}

// importWorkflow converts one workflow file given on the command line: the
// guide's placeholder account id is dropped. A file that needs no change is
// copied byte for byte.
func importWorkflow(src string) (importFile, error) {
	name := strings.TrimSuffix(filepath.Base(src), ".json")
	f := importFile{target: "workflows/" + name + ".json", source: src}
	if err := checkImportName(src, name); err != nil {
		return f, err
	}
	obj, err := readObject(src)
	if err != nil {
		return f, err
	}
	if v, ok := obj.get("account_id"); ok {
		var id string
		_ = json.Unmarshal(v, &id)
		switch {
		case id == placeholderAccount:
			obj.remove("account_id")
			f.changes = append(f.changes, `account_id "your-aws-account-id" (the guide's placeholder) dropped: the workflow deploys into the account of the agent's credentials`)
		case isAccountID(id):
			f.changes = append(f.changes, "account_id "+id+" kept: the agent deploys it only into that account")
		}
	}
	if len(f.changes) == 0 {
		f.data = obj.raw
		return f, nil
	}
	f.data, err = obj.encode()
	if err != nil {
		return f, fmt.Errorf("%s: %w", src, err)
	}
	return f, nil
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkTargets refuses two sources for one target.
func checkTargets(files []importFile) error {
	seen := map[string]string{}
	for _, f := range files {
		if prev, dup := seen[f.target]; dup {
			return fmt.Errorf("%s and %s would both become %s: nothing was written", prev, f.source, f.target)
		}
		seen[f.target] = f.source
	}
	return nil
}

// writeImport writes files into dir, all or nothing as far as a check
// beforehand can make it: any target that exists stops the import before
// the first write. Writes go through os.Root, so no symbolic link inside dir
// can lead one outside it, and each file is created exclusively, so one that
// appears meanwhile is not overwritten either.
func writeImport(dir string, files []importFile) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer root.Close()
	var exist []string
	for _, f := range files {
		if !filepath.IsLocal(filepath.FromSlash(f.target)) {
			return fmt.Errorf("%s: %s is not inside %s; nothing was written", f.source, f.target, dir)
		}
		if _, err := root.Lstat(f.target); err == nil {
			exist = append(exist, f.target)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check %s: %w", filepath.Join(dir, f.target), err)
		}
	}
	if len(exist) > 0 {
		return fmt.Errorf("%s already holds %s: nothing was written (import into a new directory, or move them away)", dir, strings.Join(exist, ", "))
	}
	for _, f := range files {
		if err := root.MkdirAll(path.Dir(f.target), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Join(dir, path.Dir(f.target)), err)
		}
		w, err := root.OpenFile(f.target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("write %s: %w", filepath.Join(dir, f.target), err)
		}
		_, err = w.Write(f.data)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", filepath.Join(dir, f.target), err)
		}
	}
	return nil
}

// taskKeyNames returns the names of the settings in the original
// cloud_pipe's task file (an INI file of the credentials its tasks got), or
// nil when there is none. Values are never kept: only the part before '='
// or ':' of each line is looked at.
func taskKeyNames(file string) ([]string, error) {
	fh, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	defer fh.Close()
	var names []string
	sc := bufio.NewScanner(io.LimitReader(fh, maxImportFile))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '[' || line[0] == '#' || line[0] == ';' {
			continue
		}
		if i := strings.IndexAny(line, "=:"); i > 0 {
			names = append(names, strings.ToLower(strings.TrimSpace(line[:i])))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if names == nil {
		names = []string{}
	}
	return names, nil
}

// writeImportReport prints what changed per file, then what is left to do.
func writeImportReport(w io.Writer, cfg Config, files []importFile, taskKeys []string) {
	for _, f := range files {
		fmt.Fprintf(w, "%s  (from %s)\n", f.target, f.source)
		if len(f.changes) == 0 {
			fmt.Fprintln(w, "  - copied unchanged")
		}
		for _, c := range f.changes {
			fmt.Fprintf(w, "  - %s\n", c)
		}
	}
	var todo []string
	mfs := fstest.MapFS{}
	for _, f := range files {
		mfs[f.target] = &fstest.MapFile{Data: f.data, Mode: 0o644}
	}
	_, problems := workflow.Load(mfs)
	for _, p := range problems {
		todo = append(todo, "fix "+p.String())
	}
	if taskKeys != nil {
		todo = append(todo, taskTodo(filepath.Join(cfg.From, "task"), taskKeys)...)
	}
	todo = append(todo,
		"commit "+cfg.Out+" to a Git repository and point the agent at it (agent plan --repo, agent run --repo): a merge now deploys what setup-pipe did",
		"algorithm images that read NAME, output_s3_name, sqs, AWS_DEFAULT_REGION or LOG_LVL get them from the runner; none needs access keys")
	fmt.Fprintln(w, "\nstill to do:")
	for _, t := range todo {
		fmt.Fprintf(w, "  - %s\n", t)
	}
}

// taskTodo says what to do about the credentials of the old task file,
// naming the settings it holds and none of their values.
func taskTodo(file string, keys []string) []string {
	var creds []string
	for _, k := range keys {
		if k == "aws_access_key_id" || k == "aws_secret_access_key" {
			creds = append(creds, k)
		}
	}
	if len(creds) == 0 {
		return nil
	}
	sort.Strings(creds)
	return []string{
		fmt.Sprintf("%s holds %s (not copied, not shown): tasks now get AWS access from each stage's task role, so deactivate that key pair in IAM once nothing else uses it", file, strings.Join(creds, " and ")),
		`only if an algorithm insists on keys: store a pair in Secrets Manager as JSON {"AWS_ACCESS_KEY_ID": ..., "AWS_SECRET_ACCESS_KEY": ...} (aws secretsmanager create-secret --name NAME --secret-string file://keys.json) and set "task_credentials_secret": "<the secret's ARN>" in that algorithm's workflows`,
	}
}

// object is a JSON object's members in file order, so an imported file
// reads like the one it came from.
type object []member

type member struct {
	key   string
	value json.RawMessage
}

// objectData holds a decoded object and the bytes it came from.
type objectData struct {
	object
	raw []byte
}

func readObject(file string) (objectData, error) {
	fh, err := os.Open(file)
	if err != nil {
		return objectData{}, fmt.Errorf("read %s: %w", file, err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxImportFile+1))
	if err != nil {
		return objectData{}, fmt.Errorf("read %s: %w", file, err)
	}
	if len(data) > maxImportFile {
		return objectData{}, fmt.Errorf("%s: larger than 1 MiB; nothing was written", file)
	}
	obj, err := decodeObject(data)
	if err != nil {
		return objectData{}, fmt.Errorf("%s: %w; fix it ('agent validate' shows where) and import again; nothing was written", file, err)
	}
	return objectData{object: obj, raw: data}, nil
}

func decodeObject(data []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var obj object
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not valid JSON: %w", err)
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("not valid JSON: %w", err)
		}
		obj = append(obj, member{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not valid JSON: more after the object")
	}
	return obj, nil
}

func (o object) get(key string) (json.RawMessage, bool) {
	for _, m := range o {
		if m.key == key {
			return m.value, true
		}
	}
	return nil, false
}

// set replaces key's value, or adds key at the end.
func (o *objectData) set(key string, v json.RawMessage) {
	for i := range o.object {
		if o.object[i].key == key {
			o.object[i].value = v
			return
		}
	}
	o.object = append(o.object, member{key, v})
}

func (o *objectData) remove(key string) {
	o.object = slices.DeleteFunc(o.object, func(m member) bool { return m.key == key })
}

// encode writes the object indented as the original project's files are.
func (o object) encode() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(m.key)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "    "); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func isEmptyObject(v json.RawMessage) bool {
	return string(bytes.Join(bytes.Fields(v), nil)) == "{}"
}

// shortJSON shows a JSON value in a message, shortened.
func shortJSON(v json.RawMessage) string {
	s := string(bytes.Join(bytes.Fields(v), []byte(" ")))
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}
