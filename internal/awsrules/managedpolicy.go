package awsrules

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// AWS managed policies exist in every account under the account "aws"
// (arn:aws:iam::aws:policy/...), and a role may have one attached like its
// own; kumo has none of them and answers NoSuchEntity. The proxy keeps a
// stand-in for each one it knows as a customer managed policy in kumo,
// under the path /aws-managed/, attaches that one instead, and names it by
// its AWS ARN again in ListAttachedRolePolicies. The attachment lives in
// kumo, so every proxy in front of it sees it.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_managed-vs-inline.html#aws-managed-policies
// https://docs.aws.amazon.com/IAM/latest/APIReference/API_AttachRolePolicy.html

// awsManagedPolicies are the AWS managed policies the proxy attaches, by
// the part of the ARN after "policy/".
var awsManagedPolicies = map[string]bool{
	// ECS container instances, and so Batch's compute environments:
	// https://docs.aws.amazon.com/batch/latest/userguide/instance_IAM_role.html
	"service-role/AmazonEC2ContainerServiceforEC2Role": true,
}

// standInPath is where the stand-ins live in kumo.
const standInPath = "/aws-managed/"

// standInDocument is every stand-in's document: the proxy never authorizes
// by an attached policy, so it only has to be valid.
const standInDocument = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:DiscoverPollEndpoint","Resource":"*"}]}`

// kumoStandIn matches a stand-in's ARN in kumo's answers, whatever account
// kumo's IAM names.
var kumoStandIn = regexp.MustCompile(`arn:aws:iam::[0-9]{12}:policy` + regexp.QuoteMeta(standInPath))

// attachRolePolicy attaches a known AWS managed policy's stand-in, made
// on first use, and forwards any other attachment as it is.
func attachRolePolicy(p *Proxy, c call, fwd []byte) (*answer, error) {
	form, err := url.ParseQuery(string(fwd))
	if err != nil {
		return p.forward(c.r, fwd)
	}
	rest, managed := strings.CutPrefix(form.Get("PolicyArn"), "arn:aws:iam::aws:policy/")
	if !managed || !awsManagedPolicies[rest] {
		return p.forward(c.r, fwd)
	}
	dir, name := "", rest
	if i := strings.LastIndex(rest, "/"); i >= 0 {
		dir, name = rest[:i+1], rest[i+1:]
	}
	create := url.Values{"Action": {"CreatePolicy"}, "Version": {form.Get("Version")}, "PolicyName": {name},
		"Path": {standInPath + dir}, "PolicyDocument": {standInDocument}}
	a, err := p.forward(c.r, []byte(create.Encode()))
	if err != nil {
		return nil, err
	}
	var arn string
	switch m := regexp.MustCompile(`<Arn>([^<]+)</Arn>`).FindSubmatch(a.body); {
	case a.status == http.StatusOK && m != nil:
		arn = string(m[1])
	case strings.Contains(string(a.body), "EntityAlreadyExists"):
		// Made by an earlier attachment: its ARN is kumo's for the path.
		arn = "arn:aws:iam::" + kumoIAMAccount + ":policy" + standInPath + rest
	default:
		return a, nil
	}
	form.Set("PolicyArn", arn)
	return p.forward(c.r, []byte(form.Encode()))
}

// listAttachedRolePolicies names the stand-ins by their AWS ARNs.
func listAttachedRolePolicies(p *Proxy, c call, fwd []byte) (*answer, error) {
	a, err := p.forward(c.r, fwd)
	if err == nil {
		a.body = kumoStandIn.ReplaceAll(a.body, []byte("arn:aws:iam::aws:policy/"))
	}
	return a, err
}

// detachRolePolicy detaches a known AWS managed policy's stand-in, and
// forwards any other detachment as it is.
func detachRolePolicy(p *Proxy, c call, fwd []byte) (*answer, error) {
	form, err := url.ParseQuery(string(fwd))
	if err != nil {
		return p.forward(c.r, fwd)
	}
	if rest, managed := strings.CutPrefix(form.Get("PolicyArn"), "arn:aws:iam::aws:policy/"); managed && awsManagedPolicies[rest] {
		form.Set("PolicyArn", "arn:aws:iam::"+kumoIAMAccount+":policy"+standInPath+rest)
		fwd = []byte(form.Encode())
	}
	return p.forward(c.r, fwd)
}
