package workflow

// This file declares the shape of workflow and algorithm files. The schema
// pass (check.go) walks a file against it before anything is decoded, so that
// unknown fields, duplicate keys, wrong types and missing fields are reported
// at the exact key or value, with the exact spelling the format uses
// (encoding/json alone would match field names case-insensitively and report
// none of these with a position).

// shape is what a schema accepts.
type shape uint8

const (
	shapeString shape = iota
	shapeInt          // a whole number that fits in 32 bits
	shapeNumber       // any finite number
	shapeBool
	shapeObject // fixed fields
	shapeMap    // free-form keys, one value schema
	shapeList
	shapePort // a port number, or a port object (elem)
)

// schema describes one value.
type schema struct {
	shape  shape
	fields []field // shapeObject
	elem   *schema // shapeMap and shapeList: each value; shapePort: the object form
	max    int     // shapeMap, shapeList: most entries; shapeString: most bytes
	what   string  // overrides the "must be ..." wording
	// emptyObject also accepts {}: the original format's own example wrote
	// "CPU": {} for "not set". Validation says what it stands for.
	emptyObject bool
	items       string // shapeMap, shapeList: what the entries are, for the limit message
}

// field is one member of an object schema.
type field struct {
	name     string
	s        *schema
	required bool
	example  string // shown when the field is missing: "name": example
	typeHint string // appended when the value has the wrong type
}

// Limits. They keep every accepted file small once decoded (see the memory
// test) and are far above what a real pipeline needs.
const (
	maxStringLen   = 4096     // any string not listed below
	maxVarValueLen = 32 << 10 // an ECS task definition is at most 64 KiB in all
	maxSteps       = 20       // stages of one sequence_run
	maxVariables   = 200      // variables of one step, or secrets of a workflow
	maxPorts       = 100      // ports of an algorithm or a step
	maxEnvDecls    = 200      // user_specified_environment_variables
	maxFileSize    = 1 << 20  // bytes; larger files are refused unread
	maxNumberLen   = 32       // bytes of a number literal
	maxFields      = 64       // fields of one object schema (a bit mask tracks them)
	maxKeyLen      = 4096     // bytes of a key in a map
	maxKMSKeys     = 20       // kms_key_arns of a workflow
)

func str() *schema { return &schema{shape: shapeString, max: maxStringLen} }

func obj(fields ...field) *schema {
	if len(fields) > maxFields {
		panic("workflow: object schema with more fields than the seen-mask holds") // programmer error
	}
	return &schema{shape: shapeObject, fields: fields}
}

func mapOf(elem *schema, max int, items string) *schema {
	return &schema{shape: shapeMap, elem: elem, max: max, items: items}
}

func listOf(elem *schema, max int, items string) *schema {
	return &schema{shape: shapeList, elem: elem, max: max, items: items}
}

func req(name string, s *schema, example string) field {
	return field{name: name, s: s, required: true, example: example}
}

func opt(name string, s *schema) field { return field{name: name, s: s} }

var (
	intSchema  = &schema{shape: shapeInt}
	boolSchema = &schema{shape: shapeBool}
)

// portObject is {"port": 9090, "protocol": "tcp"}. In an algorithm the
// protocol is required (the original format always has it); in a workflow
// step it defaults to tcp.
func portObject(protocolRequired bool) *schema {
	protocol := opt("protocol", str())
	if protocolRequired {
		protocol = req("protocol", str(), `"tcp"`)
	}
	return obj(req("port", intSchema, "9090"), protocol)
}

// workflowSchema is the shape of workflows/<name>.json.
var workflowSchema = obj(
	req("input_s3_name", str(), `"my-pipeline-input"`),
	req("output_s3_name", str(), `"my-pipeline-output"`),
	opt("key_pair", str()),
	field{name: "account_id", s: str(), typeHint: `; write the 12-digit id in quotes, e.g. "123456789012"`},
	req("region", str(), `"us-east-1"`),
	req("process", obj(
		req("type", str(), `"single_run"`),
		req("algorithms", listOf(obj(
			req("name", str(), `"my-algorithm"`),
			opt("port", listOf(&schema{
				shape: shapePort,
				elem:  portObject(false),
				what:  `a port number or {"port": 9090, "protocol": "tcp"}`,
			}, maxPorts, "ports")),
			opt("variables", mapOf(&schema{shape: shapeString, max: maxVarValueLen}, maxVariables, "variables")),
			opt("capacity", str()),
		), maxSteps, "algorithms"), `[{"name": "my-algorithm", "variables": {}}]`),
	), `{"type": "single_run", "algorithms": [...]}`),
	opt("secrets", mapOf(str(), maxVariables, "secrets")),
	opt("task_credentials_secret", str()),
	opt("retain_buckets", boolSchema),
	opt("max_tasks", intSchema),
	opt("suspend", boolSchema),
	opt("kms_key_arns", listOf(str(), maxKMSKeys, "keys")),
	opt("capacity", str()),
)

// algorithmSchema is the shape of algorithms/<name>.json, the original wrap
// format.
var algorithmSchema = obj(
	req("container_name", str(), `"registry/image:tag"`),
	opt("system", str()),
	req("input_file_path", str(), `"/data/in"`),
	req("output_file_path", str(), `"/data/out"`),
	opt("executable_path", str()),
	req("run_command", str(), `"python /app/run.py $input $output"`),
	req("name", str(), `"<the file name without .json>"`),
	opt("instance_type", str()),
	req("memory", obj(
		req("minimal", intSchema, "512"),
		req("suggested", intSchema, "1024"),
	), `{"minimal": 512, "suggested": 1024}`),
	// Optional: the original format's example leaves it unset ({}), and
	// validation notes the default it gets.
	opt("CPU", &schema{shape: shapeNumber, emptyObject: true}),
	opt("user_specified_environment_variables", listOf(obj(
		req("name", str(), `"MY_SETTING"`),
		opt("required", boolSchema),
	), maxEnvDecls, "variables")),
	opt("port", listOf(portObject(true), maxPorts, "ports")),
	opt("ephemeral_storage_gib", intSchema),
	opt("privileged", boolSchema),
)

// accepts reports whether a value of kind k can match s.
func (s *schema) accepts(k jsonKind) bool {
	switch s.shape {
	case shapeString:
		return k == kindString
	case shapeInt, shapeNumber:
		return k == kindNumber
	case shapeBool:
		return k == kindBool
	case shapeObject, shapeMap:
		return k == kindObject
	case shapeList:
		return k == kindArray
	case shapePort:
		return k == kindNumber || k == kindObject
	}
	return false
}

// want names what s accepts, for "must be ..." messages.
func (s *schema) want() string {
	if s.what != "" {
		return s.what
	}
	switch s.shape {
	case shapeString:
		return "a string"
	case shapeInt:
		return "a whole number"
	case shapeNumber:
		return "a number"
	case shapeBool:
		return "true or false"
	case shapeObject, shapeMap:
		return "an object {...}"
	case shapeList:
		return "a list [...]"
	}
	return "a value"
}

// fieldIndex finds the field spelled exactly like raw, or -1.
func (s *schema) fieldIndex(raw []byte, esc bool) int {
	for i, f := range s.fields {
		if keyEqual(raw, esc, f.name) {
			return i
		}
	}
	return -1
}

// fieldNames lists the fields of an object schema in declaration order.
func (s *schema) fieldNames() []string {
	names := make([]string, len(s.fields))
	for i, f := range s.fields {
		names[i] = f.name
	}
	return names
}
