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
}

// InjectedVariables are the eight, in the order `wrap` wrote them.
var InjectedVariables = []InjectedVariable{
	{Name: "output_s3_name"},
	{Name: "sqs"},
	{Name: "NAME"},
	{Name: "AWS_DEFAULT_REGION"},
	{Name: "AWS_DEFAULT_OUTPUT"},
	{Name: "AWS_ACCESS_KEY_ID", Credential: true},
	{Name: "AWS_SECRET_ACCESS_KEY", Credential: true},
	{Name: "LOG_LVL"},
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
