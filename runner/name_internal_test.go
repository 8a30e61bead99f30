package runner

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLocalName(t *testing.T) {
	long := strings.Repeat("é", 200) + ".csv"
	tests := []struct {
		key, want string
		bad       bool
	}{
		{key: "in/a.txt", want: "a.txt"},
		{key: "a.txt", want: "a.txt"},
		{key: "in/a b+c.txt", want: "a b+c.txt"},
		{key: "../../etc/passwd", want: "passwd"},
		{key: "in/../../../root/.ssh/authorized_keys", want: "authorized_keys"},
		{key: "/abs/path", want: "path"},
		{key: "in/$(reboot).txt", want: "$(reboot).txt"},
		{key: "in/;rm -rf *", want: ";rm -rf *"},
		{key: "in/-rf", want: "-rf"},
		{key: "in/a\x00b\nc\x7f", want: "a_b_c_"},
		{key: "in/bad\xffutf8", want: "bad_utf8"},
		{key: "in/日本語.txt", want: "日本語.txt"},
		{key: "in/.hidden", want: ".hidden"},
		{key: "in/x/.", want: "x"},
		{key: "in/" + long, want: strings.Repeat("é", 78) + ".csv"},
		{key: "", bad: true},
		{key: "in/", bad: true},
		{key: "..", bad: true},
		{key: "a/..", bad: true},
		{key: ".", bad: true},
		{key: "/", bad: true},
	}
	for _, tt := range tests {
		got, err := localName(tt.key)
		switch {
		case tt.bad && err == nil:
			t.Errorf("localName(%q) = %q, want an error", tt.key, got)
		case !tt.bad && (err != nil || got != tt.want):
			t.Errorf("localName(%q) = %q, %v; want %q", tt.key, got, err, tt.want)
		case !tt.bad:
			// Whatever the key, the name stays one element inside the directory.
			if p := filepath.Join("/in", got); filepath.Dir(p) != "/in" || len(got) > maxNameBytes {
				t.Errorf("localName(%q) = %q escapes or is too long", tt.key, got)
			}
		}
	}
}

func FuzzLocalName(f *testing.F) {
	for _, k := range []string{"in/a.txt", "../x", "a/..", "\xff", "in/" + strings.Repeat("x", 300)} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		name, err := localName(key)
		if err != nil {
			return
		}
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > maxNameBytes {
			t.Errorf("localName(%q) = %q", key, name)
		}
		if p := filepath.Join("/in", name); filepath.Dir(p) != "/in" {
			t.Errorf("localName(%q) = %q leaves the directory", key, name)
		}
	})
}

func TestCommandArgs(t *testing.T) {
	tests := []struct {
		cmd, in, out string
		want         []string
	}{
		{"sort -o $output $input", "/in/a b.txt", "/out/r", []string{"sort", "-o", "/out/r", "/in/a b.txt"}},
		{"  tool   --in=$input\t--out=$output ", "/in/x", "/out/y", []string{"tool", "--in=/in/x", "--out=/out/y"}},
		// A path that holds the text "$output" is not substituted again.
		{"cp $input $output", "/in/$output", "/out/r", []string{"cp", "/in/$output", "/out/r"}},
		{"cat $input", "/in/$(reboot); x", "", []string{"cat", "/in/$(reboot); x"}},
		{"echo $inputs", "/in/x", "", []string{"echo", "/in/xs"}},
	}
	for _, tt := range tests {
		if got := commandArgs(tt.cmd, tt.in, tt.out); !slices.Equal(got, tt.want) {
			t.Errorf("commandArgs(%q, %q, %q) = %q, want %q", tt.cmd, tt.in, tt.out, got, tt.want)
		}
	}
}

// FuzzCommandArgs checks the argument substitution against hostile file
// names: the command keeps exactly its own fields, and each $input / $output
// becomes the path, unsplit and unexpanded, whatever the path holds.
func FuzzCommandArgs(f *testing.F) {
	f.Add("sort -o $output $input", "/in/a b.txt", "/out/Result-x-a b.txt")
	f.Add("sh /x.sh $input $output", "/in/$(reboot).txt", "/out/; rm -rf /")
	f.Add("cp $input $output", "/in/$output", "/out/$input")
	f.Add("tool --in=$input", "/in/a\tb\nc", "/out/o")
	f.Fuzz(func(t *testing.T, runCommand, in, out string) {
		argv := commandArgs(runCommand, in, out)
		fields := strings.Fields(runCommand)
		if len(argv) != len(fields) {
			t.Fatalf("%q gave %d arguments, want %d (one per field): %q", runCommand, len(argv), len(fields), argv)
		}
		for i, f := range fields {
			switch f {
			case "$input":
				if argv[i] != in {
					t.Fatalf("field $input became %q, want the path %q", argv[i], in)
				}
			case "$output":
				if argv[i] != out {
					t.Fatalf("field $output became %q, want the path %q", argv[i], out)
				}
			default:
				if !strings.Contains(f, "$input") && !strings.Contains(f, "$output") && argv[i] != f {
					t.Fatalf("field %q changed to %q", f, argv[i])
				}
			}
		}
	})
}
