package provision

import (
	"fmt"
	"testing"
)

func TestFargateSize(t *testing.T) {
	tests := []struct {
		cpu              float64
		mem              int
		wantCPU, wantMem int
		wantErr          bool
	}{
		{0, 0, 256, 512, false},
		{0.25, 512, 256, 512, false},
		{0.25, 600, 256, 1024, false},
		{0.25, 3000, 512, 3072, false}, // 256 tops out at 2 GiB
		{1, 0, 1024, 2048, false},      // vCPUs
		{1, 2048, 1024, 2048, false},
		{1.5, 1000, 2048, 4096, false},
		{256, 512, 256, 512, false},     // CPU units
		{1024, 9000, 2048, 9216, false}, // 1024 units tops out at 8 GiB
		{4, 8192, 4096, 8192, false},
		{8, 20000, 8192, 20480, false},
		{16, 122880, 16384, 122880, false},
		{16, 200000, 0, 0, true},
		{32, 0, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v cpu %d MiB", tt.cpu, tt.mem), func(t *testing.T) {
			cpu, mem, err := fargateSize(tt.cpu, tt.mem)
			if (err != nil) != tt.wantErr || cpu != tt.wantCPU || mem != tt.wantMem {
				t.Fatalf("fargateSize(%v, %d) = %d, %d, %v; want %d, %d, error %v", tt.cpu, tt.mem, cpu, mem, err, tt.wantCPU, tt.wantMem, tt.wantErr)
			}
		})
	}
}
