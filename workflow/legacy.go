package workflow

// The original cloud_pipe's `wrap` command saved each algorithm with eight
// entries added to user_specified_environment_variables, which its
// `setup-pipe` then filled itself. Users' saved algorithm files still carry
// them; cloudpipe provides what they stood for at run time.

// InjectedVariable is one variable the original `wrap` added to an
// algorithm.
type InjectedVariable struct {
	Name string
	// Credential marks the access-key variables: cloudpipe never passes
	// keys in the environment; the task role, or the workflow's
	// task_credentials_secret, replaces them.
	Credential bool
	// Provided says what cloudpipe's runner sets the variable to when the
	// container's environment does not already hold it ("" for the
	// credentials, which it never sets). docs/workflow-reference.md,
	// "Runtime environment", is the table of these values.
	Provided string
	// Wiring marks the variables whose value the original setup-pipe set
	// from the pipeline it built, over anything the workflow gave. In
	// cloudpipe a workflow's own value wins, so setting one is noted.
	Wiring bool
}

// InjectedVariables are the eight: the seven `wrap` marked required, then
// the optional LOG_LVL.
var InjectedVariables = []InjectedVariable{
	{Name: "output_s3_name", Provided: "the stage's output bucket", Wiring: true},
	{Name: "sqs", Provided: "the URL of the stage's work queue", Wiring: true},
	{Name: "NAME", Provided: "the algorithm's name", Wiring: true},
	{Name: "AWS_DEFAULT_REGION", Provided: "the stage's region", Wiring: true},
	{Name: "AWS_DEFAULT_OUTPUT", Provided: `"json"`},
	{Name: "AWS_ACCESS_KEY_ID", Credential: true},
	{Name: "AWS_SECRET_ACCESS_KEY", Credential: true},
	{Name: "LOG_LVL", Provided: `"WARNING"`},
}

// Injected returns the entry of InjectedVariables named name, if any.
func Injected(name string) (InjectedVariable, bool) {
	for _, v := range InjectedVariables {
		if v.Name == name {
			return v, true
		}
	}
	return InjectedVariable{}, false
}
