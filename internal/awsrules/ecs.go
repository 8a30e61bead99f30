package awsrules

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
)

// Fargate's range of a task's ephemeral storage: "The minimum supported
// value is 21 GiB and the maximum supported value is 200 GiB."
// https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_EphemeralStorage.html
// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-task-storage.html
// kumo drops ephemeralStorage from a task definition, whatever its size.
const (
	minEphemeralStorageGiB = 21
	maxEphemeralStorageGiB = 200
)

// checkEphemeralStorage refuses RegisterTaskDefinition with an
// ephemeralStorage outside Fargate's range, as ECS does: a ClientException,
// the error ECS answers an invalid request with
// (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RegisterTaskDefinition.html#API_RegisterTaskDefinition_Errors).
// The message is the proxy's; ECS's wording is not documented.
func checkEphemeralStorage(_ *Proxy, c call) *faultproxy.APIError {
	var req struct {
		EphemeralStorage *struct {
			SizeInGiB *int `json:"sizeInGiB"`
		} `json:"ephemeralStorage"`
	}
	if json.Unmarshal(c.body, &req) != nil || req.EphemeralStorage == nil {
		return nil // kumo answers the malformed request; no storage asks for the default
	}
	size := 0
	if req.EphemeralStorage.SizeInGiB != nil {
		size = *req.EphemeralStorage.SizeInGiB
	}
	if size >= minEphemeralStorageGiB && size <= maxEphemeralStorageGiB {
		return nil
	}
	return &faultproxy.APIError{Status: http.StatusBadRequest, Code: "ClientException",
		Message: fmt.Sprintf("The ephemeral storage size must be between %d GiB and %d GiB; %d GiB was requested.", minEphemeralStorageGiB, maxEphemeralStorageGiB, size)}
}
