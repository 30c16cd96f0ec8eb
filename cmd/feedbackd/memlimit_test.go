package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCgroupLimit(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr string
	}{
		{in: "805306368\n", want: 805306368},
		{in: "max\n", want: 0},
		{in: "9223372036854771712\n", want: 0}, // cgroup v1: no limit
		{in: "0\n", wantErr: "0 bytes"},
		{in: "-1\n", wantErr: "not a byte count"},
		{in: "768Mi\n", wantErr: "not a byte count"},
		{in: "", wantErr: "not a byte count"},
	} {
		got, err := parseCgroupLimit(tc.in)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseCgroupLimit(%q) = %d, %v; want an error with %q", tc.in, got, err, tc.wantErr)
			}
		case err != nil || got != tc.want:
			t.Errorf("parseCgroupLimit(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

// The soft limit is 90 % of the first file's limit; GOMEMLIMIT (even
// "off") or no limit leaves Go's default; a bad file is an error naming it.
func TestMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v2, v1 := file("memory.max", "805306368\n"), file("limit_in_bytes", "1073741824\n")
	unlimited, bad := file("unlimited", "max\n"), file("bad", "lots\n")
	missing := filepath.Join(dir, "missing")
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		name      string
		env       string
		files     []string
		soft      int64
		from      string
		wantError bool
	}{
		{name: "v2", files: []string{v2, v1}, soft: 724775731, from: v2},
		{name: "v1 when v2 is missing", files: []string{missing, v1}, soft: 966367641, from: v1},
		{name: "no limit", files: []string{unlimited, v1}, from: unlimited},
		{name: "no file", files: []string{missing}},
		{name: "GOMEMLIMIT set", env: "400MiB", files: []string{v2}},
		{name: "GOMEMLIMIT off", env: "off", files: []string{v2}},
		{name: "unreadable limit", files: []string{bad}, from: bad, wantError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			getenv := noEnv
			if tc.env != "" {
				getenv = func(k string) string { return map[string]string{"GOMEMLIMIT": tc.env}[k] }
			}
			soft, _, from, err := memoryLimit(getenv, tc.files)
			if (err != nil) != tc.wantError || soft != tc.soft || from != tc.from {
				t.Fatalf("memoryLimit = %d from %q, %v; want %d from %q (error %v)", soft, from, err, tc.soft, tc.from, tc.wantError)
			}
			if err != nil && !strings.Contains(err.Error(), bad) {
				t.Fatalf("error %q does not name the file", err)
			}
		})
	}
}
