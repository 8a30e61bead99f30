package workflow_test

import (
	"bytes"
	"fmt"
	"testing"
	"testing/fstest"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// BenchmarkLoad loads a repository of 1000 workflows and 100 algorithms, the
// size the agent's validate step is budgeted for: at most 50 ms per load.
func BenchmarkLoad(b *testing.B) {
	wf, alg := fixedSeed(b)
	fsys := fstest.MapFS{}
	for i := range 100 {
		name := fmt.Sprintf("alg-%03d", i)
		fsys["algorithms/"+name+".json"] = &fstest.MapFile{Data: bytes.Replace(alg, []byte(`"change123-s3"`), []byte(`"`+name+`"`), 1)}
	}
	for i := range 1000 {
		name := fmt.Sprintf("wf-%04d", i)
		data := bytes.ReplaceAll(wf, []byte("container-clouds"), []byte(name))
		data = bytes.Replace(data, []byte(`"change123-s3"`), []byte(fmt.Sprintf(`"alg-%03d"`, i%100)), 1)
		fsys["workflows/"+name+".json"] = &fstest.MapFile{Data: data}
	}
	cfg, ps := workflow.Load(fsys)
	if len(ps) > 0 || len(cfg.Workflows) != 1000 || len(cfg.Algorithms) != 100 {
		b.Fatalf("%d workflows, %d algorithms, problems:\n%v", len(cfg.Workflows), len(cfg.Algorithms), ps)
	}
	b.ReportAllocs()
	for b.Loop() {
		workflow.Load(fsys)
	}
}
