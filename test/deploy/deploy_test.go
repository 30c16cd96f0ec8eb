// Package deploy checks the deployment files that cannot be run here (no
// Docker engine, no cluster): the Dockerfile's basics, the compose stack's
// wiring and the Kubernetes manifests (kubernetes_test.go). `make test`
// also validates docker-compose.yml with `docker-compose config`.
package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestDockerfileBasics(t *testing.T) {
	raw, err := os.ReadFile("../../config/docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 {
		t.Fatal("not a multi-stage build")
	}
	final := froms[len(froms)-1][1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("final stage %s is neither distroless static nor scratch", final)
	}
	if !strings.Contains(df, "CGO_ENABLED=0") {
		t.Error("binary is not built static (CGO_ENABLED=0)")
	}
	users := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1][1], "root") || strings.HasPrefix(users[len(users)-1][1], "0") {
		t.Errorf("image does not run as a non-root user: %v", users)
	}
	// Everything COPY'd from the build context must exist.
	for _, m := range regexp.MustCompile(`(?m)^COPY\s+([^-\s][^\n]*)\s+\S+$`).FindAllStringSubmatch(df, -1) {
		for _, src := range strings.Fields(m[1]) {
			if _, err := os.Stat(filepath.Join("../..", src)); err != nil {
				t.Errorf("COPY %s: %v", src, err)
			}
		}
	}
}

func TestComposeStack(t *testing.T) {
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Image   string   `yaml:"image"`
			Volumes []string `yaml:"volumes"`
			Build   struct {
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range c.Services {
		names = append(names, n)
	}
	for _, want := range []string{"kafka", "redis", "feedbackd", "prometheus", "grafana", "receiver", "setup"} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s service", want)
		}
	}
	if img := c.Services["kafka"].Image; !strings.HasPrefix(img, "apache/kafka:") {
		t.Errorf("kafka image %q is not apache/kafka", img)
	}
	if c.Services["feedbackd"].Environment["FEEDBACKD_KAFKA_BROKERS"] == "" {
		t.Error("feedbackd is not pointed at the kafka service")
	}
	for name, s := range c.Services {
		if s.Build.Dockerfile != "" {
			if _, err := os.Stat(filepath.Join("../..", s.Build.Dockerfile)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		for _, v := range s.Volumes {
			if src, _, ok := strings.Cut(v, ":"); ok && strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join("../..", src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			}
		}
	}
}
