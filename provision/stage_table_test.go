package provision

import (
	"slices"
	"testing"
)

func TestStageTable(t *testing.T) {
	const (
		in    = "wf-in"
		mid   = "wf-mid" // between stage 0 and stage 1
		out   = "wf-out"
		td1   = "arn:aws:ecs:us-east-1:000000000000:task-definition/cp-wf-0:1"
		td2   = "arn:aws:ecs:us-east-1:000000000000:task-definition/cp-wf-0:2"
		td1s1 = "arn:aws:ecs:us-east-1:000000000000:task-definition/cp-wf-1:1"
		dlq   = "arn:aws:sqs:us-east-1:000000000000:cp-wf-0-dlq"
	)
	stage0 := StageSpec{Workflow: "wf", Stage: 0, InputBucket: in, OutputBucket: mid, OutputOwned: true}
	stage1 := StageSpec{Workflow: "wf", Stage: 1, InputBucket: mid, InputOwned: true, OutputBucket: out}
	suspended := stage0
	suspended.Suspend = true
	moved := stage0
	moved.InputBucket = "wf-new-in"

	// stage0Table is stage 0's table with its revisions and notification
	// entries left out.
	stage0Table := func(revisions, notifications []string) []string {
		t := []string{
			"s3 bucket " + mid, "s3 bucket " + in,
			"log group /aws/lambda/cp-wf-0", "log group /cloudpipe/wf",
			"iam role cp-wf-0-task", "iam role cp-wf-0-exec", "iam role cp-wf-0-lambda",
			"sqs queue cp-wf-0-dlq", "sqs queue cp-wf-0",
		}
		t = append(t, revisions...)
		t = append(t, "lambda function cp-wf-0", "lambda event invoke config cp-wf-0")
		return append(t, notifications...)
	}
	stage0Report := []string{
		"s3 bucket " + in, "s3 bucket " + mid,
		"sqs queue cp-wf-0", "sqs queue cp-wf-0-dlq",
		"iam role cp-wf-0-lambda", "iam role cp-wf-0-exec", "iam role cp-wf-0-task",
		"lambda function cp-wf-0",
		"log group /cloudpipe/wf", "log group /aws/lambda/cp-wf-0",
	}
	// withInvokeConfig is a report with the function's asynchronous
	// invocation configuration, checked when the DLQ is recorded.
	withInvokeConfig := func(report []string, fn string) []string {
		i := slices.Index(report, "lambda function "+fn)
		return slices.Insert(slices.Clone(report), i+1, "lambda event invoke config "+fn)
	}
	tests := []struct {
		name  string
		spec  StageSpec
		res   StageResources
		table []string // in dependency order
		// report is what MissingResources says when every resource it
		// checks is gone.
		report []string
	}{
		{
			name:   "stage 0 owns the workflow log group",
			spec:   stage0,
			res:    StageResources{InputBucket: in, OutputBucket: mid, TaskDefinitionARN: td1, TaskDefinitionARNs: []string{td1}, DLQARN: dlq},
			table:  stage0Table([]string{"ecs task definition " + td1}, []string{"s3 notification cloudpipe-cp-wf-0 on " + in}),
			report: withInvokeConfig(append(slices.Clone(stage0Report), "s3 notification cloudpipe-cp-wf-0 on "+in), "cp-wf-0"),
		},
		{
			name: "stage 1 leaves it to stage 0",
			spec: stage1,
			res:  StageResources{InputBucket: mid, OutputBucket: out, TaskDefinitionARN: td1s1, TaskDefinitionARNs: []string{td1s1}},
			table: []string{
				"s3 bucket " + out, "s3 bucket " + mid,
				"log group /aws/lambda/cp-wf-1",
				"iam role cp-wf-1-task", "iam role cp-wf-1-exec", "iam role cp-wf-1-lambda",
				"sqs queue cp-wf-1-dlq", "sqs queue cp-wf-1",
				"ecs task definition " + td1s1,
				"lambda function cp-wf-1", "lambda event invoke config cp-wf-1",
				"s3 notification cloudpipe-cp-wf-1 on " + mid,
			},
			report: []string{
				"s3 bucket " + mid, "s3 bucket " + out,
				"sqs queue cp-wf-1", "sqs queue cp-wf-1-dlq",
				"iam role cp-wf-1-lambda", "iam role cp-wf-1-exec", "iam role cp-wf-1-task",
				"lambda function cp-wf-1",
				"log group /aws/lambda/cp-wf-1",
				"s3 notification cloudpipe-cp-wf-1 on " + mid,
			},
		},
		{
			name:   "suspended: the notification is deleted but not checked",
			spec:   suspended,
			res:    StageResources{InputBucket: in, OutputBucket: mid, TaskDefinitionARN: td1, TaskDefinitionARNs: []string{td1}},
			table:  stage0Table([]string{"ecs task definition " + td1}, []string{"s3 notification cloudpipe-cp-wf-0 on " + in}),
			report: stage0Report,
		},
		{
			name: "two revisions: both deregistered, the current one last",
			spec: stage0,
			res:  StageResources{InputBucket: in, OutputBucket: mid, TaskDefinitionARN: td2, TaskDefinitionARNs: []string{td1, td2}},
			table: stage0Table(
				[]string{"ecs task definition " + td2, "ecs task definition " + td1},
				[]string{"s3 notification cloudpipe-cp-wf-0 on " + in}),
			report: append(slices.Clone(stage0Report), "s3 notification cloudpipe-cp-wf-0 on "+in),
		},
		{
			name:   "nothing recorded: names from spec",
			spec:   stage0,
			table:  stage0Table(nil, []string{"s3 notification cloudpipe-cp-wf-0 on " + in}),
			report: append(slices.Clone(stage0Report), "s3 notification cloudpipe-cp-wf-0 on "+in),
		},
		{
			name: "input bucket moved: the entry goes from both, the recorded one is checked",
			spec: moved,
			res:  StageResources{InputBucket: in, OutputBucket: mid},
			table: stage0Table(nil, []string{
				"s3 notification cloudpipe-cp-wf-0 on wf-new-in", "s3 notification cloudpipe-cp-wf-0 on " + in,
			}),
			report: append(slices.Clone(stage0Report), "s3 notification cloudpipe-cp-wf-0 on "+in),
		},
	}
	p := &Provisioner{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table := p.stageTable(nil, tt.spec, tt.res, nil)
			var got, report []string
			for _, r := range table {
				got = append(got, r.String())
				if r.delete == nil {
					t.Errorf("%s has no delete", r)
				}
			}
			for _, r := range inReportOrder(table) {
				if r.exists != nil {
					report = append(report, r.String())
				}
			}
			if !slices.Equal(got, tt.table) {
				t.Errorf("table:\n%q\nwant\n%q", got, tt.table)
			}
			if !slices.Equal(report, tt.report) {
				t.Errorf("checked for drift:\n%q\nwant\n%q", report, tt.report)
			}
		})
	}
}
