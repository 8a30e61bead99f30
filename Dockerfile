# syntax=docker/dockerfile:1
#
# The cloudpipe agent image: one static binary, /agent, on distroless static,
# running as nonroot. The same image is
#   - the agent itself (deploy/ecs-agent.json runs it with "run");
#   - every stage task's init container, which runs "runner install /cloudpipe"
#     to copy /agent into the task's shared volume, so the algorithm container
#     (any unmodified image) starts /cloudpipe/agent runner;
#   - the source of the stage Lambda code: the agent zips its own executable.
#
# Build:  docker build -t ghcr.io/cloudpipe/agent:TAG .
# Multi-arch (Fargate tasks default to X86_64; Graviton needs arm64):
#         docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/cloudpipe/agent:TAG --push .
#
# scripts/build-binary builds the same binary without Docker, with the same
# flags; deploy/dockerfile_test.go fails if the two go build lines differ.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Cross-compiled on the build platform (no emulation): the binary is pure Go.
# -tags lambda.norpc drops aws-lambda-go's RPC mode (only the retired go1.x
# runtime used it; stage functions run on provided.al2023). Its net/rpc pulls
# in html/template, whose reflective method calls make the linker keep every
# method of every SDK client: 64 MB instead of 22 MB, most of it EC2.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    CGO_ENABLED=0 go build -tags lambda.norpc -trimpath -ldflags='-s -w' -o /out/agent ./cmd/agent
# The mount point of the runner volume. On Fargate a bind-mount volume is
# root-owned 0755 unless the image declares the path as a VOLUME: then ECS
# copies the directory, owner and mode included, into the volume, which lets
# the nonroot init container write /cloudpipe/agent into it.
RUN mkdir -p /out/cloudpipe

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/agent /agent
COPY --from=build --chown=65532:65532 /out/cloudpipe /cloudpipe
VOLUME ["/cloudpipe"]
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/agent"]
CMD ["run"]
