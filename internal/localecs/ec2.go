package localecs

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
)

// InstanceType is one EC2 instance type the proxy describes: kumo has no
// DescribeInstanceTypes, which the agent asks about an algorithm's
// instance_type missing from its own table.
type InstanceType struct {
	Name      string // "g5.xlarge"
	VCPUs     int
	MemoryMiB int
	// GPUs of one model, as EC2's GpuInfo lists them: count, maker, model.
	GPUs            int
	GPUManufacturer string // "NVIDIA"
	GPUName         string // "A10G"
	// NeuronDevices of one model (AWS Inferentia2, Trainium), as EC2's
	// NeuronInfo lists them.
	NeuronDevices int
	NeuronName    string // "Inferentia2"
	Architecture  string // "x86_64" (default) or "arm64"
}

// ec2Namespace is the XML namespace of EC2's query-protocol answers.
const ec2Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

// serveEC2 answers EC2's DescribeInstanceTypes from Options.InstanceTypes
// and reports whether it did; any other request is left as it was (its body
// restored), to be forwarded. It reads only form-encoded bodies signed for
// EC2.
func (p *Proxy) serveEC2(w http.ResponseWriter, r *http.Request) bool {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") ||
		!strings.Contains(r.Header.Get("Authorization"), "/ec2/aws4_request") {
		return false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return false // the forward fails on the same broken body
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if faultproxy.Operation(r, body) != "EC2.DescribeInstanceTypes" {
		return false
	}
	p.record(Request{Op: "DescribeInstanceTypes", Time: p.opts.Now()})
	form, err := url.ParseQuery(string(body))
	if err != nil {
		faultproxy.WriteError(w, r, faultproxy.APIError{Status: http.StatusBadRequest, Code: "InvalidParameterValue", Message: err.Error()}, "localecs")
		return true
	}
	p.describeInstanceTypes(w, r, form)
	return true
}

// describeInstanceTypes answers the types named InstanceType.N, or every
// type without one (EC2 lists all then; the proxy's few fit one page). A
// name EC2 does not know fails the whole call with InvalidInstanceType:
// "The following supplied instance types do not exist: [m5.lrage]", as
// EC2 answers it (HTTP 400; its error codes:
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
func (p *Proxy) describeInstanceTypes(w http.ResponseWriter, r *http.Request, form url.Values) {
	byName := make(map[string]InstanceType, len(p.opts.InstanceTypes))
	for _, t := range p.opts.InstanceTypes {
		byName[t.Name] = t
	}
	var asked []string
	for k, vs := range form {
		if strings.HasPrefix(k, "InstanceType.") && len(vs) > 0 {
			asked = append(asked, vs[0])
		}
	}
	sort.Strings(asked)
	if len(asked) == 0 {
		for name := range byName {
			asked = append(asked, name)
		}
		sort.Strings(asked)
	}
	var missing []string
	out := describeInstanceTypesResponse{Xmlns: ec2Namespace, RequestID: "localecs"}
	for _, name := range asked {
		t, ok := byName[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		out.Types = append(out.Types, instanceTypeItem(t))
	}
	if len(missing) > 0 {
		faultproxy.WriteError(w, r, faultproxy.APIError{Status: http.StatusBadRequest, Code: "InvalidInstanceType",
			Message: "The following supplied instance types do not exist: [" + strings.Join(missing, ", ") + "]"}, "localecs")
		return
	}
	b, err := xml.Marshal(out)
	if err != nil {
		faultproxy.WriteError(w, r, faultproxy.APIError{Status: http.StatusInternalServerError, Code: "InternalError", Message: err.Error()}, "localecs")
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(b)))
	_, _ = io.WriteString(w, xml.Header)
	_, _ = w.Write(b)
}

// The XML of a DescribeInstanceTypes answer, with the fields the agent reads.
type describeInstanceTypesResponse struct {
	XMLName   xml.Name     `xml:"DescribeInstanceTypesResponse"`
	Xmlns     string       `xml:"xmlns,attr"`
	RequestID string       `xml:"requestId"`
	Types     []ec2TypeXML `xml:"instanceTypeSet>item"`
}

type ec2TypeXML struct {
	InstanceType string   `xml:"instanceType"`
	DefaultVCpus int      `xml:"vCpuInfo>defaultVCpus"`
	SizeInMiB    int      `xml:"memoryInfo>sizeInMiB"`
	Arches       []string `xml:"processorInfo>supportedArchitectures>item"`
	// Pointers, so a type without GPUs or Neuron devices has no such
	// element at all, as EC2 answers it.
	GPUs   *ec2GPUInfo    `xml:"gpuInfo"`
	Neuron *ec2NeuronInfo `xml:"neuronInfo"`
}

type ec2GPUInfo struct {
	GPUs []ec2Device `xml:"gpus>item"`
}

type ec2NeuronInfo struct {
	Devices []ec2Device `xml:"neuronDevices>item"`
}

type ec2Device struct {
	Count        int    `xml:"count"`
	Manufacturer string `xml:"manufacturer,omitempty"`
	Name         string `xml:"name"`
}

func instanceTypeItem(t InstanceType) ec2TypeXML {
	arch := t.Architecture
	if arch == "" {
		arch = "x86_64"
	}
	item := ec2TypeXML{InstanceType: t.Name, DefaultVCpus: t.VCPUs, SizeInMiB: t.MemoryMiB, Arches: []string{arch}}
	if t.GPUs > 0 {
		item.GPUs = &ec2GPUInfo{GPUs: []ec2Device{{Count: t.GPUs, Manufacturer: t.GPUManufacturer, Name: t.GPUName}}}
	}
	if t.NeuronDevices > 0 {
		item.Neuron = &ec2NeuronInfo{Devices: []ec2Device{{Count: t.NeuronDevices, Name: t.NeuronName}}}
	}
	return item
}
